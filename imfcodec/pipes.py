"""Live input and output through pipes: "-" for standard input or output (and named pipes as paths).

* Video in: any stream PyAV can read without seeking (y4m, Matroska, NUT, MPEG-TS...), read as it arrives
  through the file descriptor (a read returns what the pipe holds, so a frame is decoded as soon as it is
  whole); its size and rate come from the stream itself, its length is unknown.
* Video out: y4m (4:2:0, as FFmpeg's yuv4mpegpipe muxer writes it and `VideoWriter` writes .y4m files),
  flushed after every frame, so a player shows each frame as it is decoded.
* .imf out: see bitstream.Writer(stream=True); .imf in: reader.open_chunks.
"""
from __future__ import annotations

import os
import stat
import sys
from fractions import Fraction
from typing import BinaryIO, Iterator

import av
import numpy as np

from .errors import UserError
from .video_io import VideoInfo, _rotation, rgb_frame

STDIO = "-"


def is_pipe(path: str) -> bool:
    """Standard input/output ("-") or a named pipe: read or written once, in order, never sought."""
    return path == STDIO or (os.path.exists(path) and stat.S_ISFIFO(os.stat(path).st_mode))


class _FdReader:
    """A file object over a descriptor whose read returns what is there (at least a byte, unless at the end):
    PyAV then decodes a frame as soon as its bytes have arrived instead of waiting for a full buffer."""

    def __init__(self, fd: int):
        self.fd = fd

    def read(self, n: int = -1) -> bytes:
        return os.read(self.fd, n if n and n > 0 else 1 << 20)

    def close(self) -> None:
        os.close(self.fd)


def open_input(path: str) -> tuple[int, bool]:
    """A descriptor to read path from ("-": a duplicate of standard input's) and whether to close it."""
    if path == STDIO:
        return os.dup(sys.stdin.fileno()), True
    return os.open(path, os.O_RDONLY), True


def read_stream(path: str, max_frames: int | None = None) -> tuple[VideoInfo, Iterator[np.ndarray]]:
    """The size and rate of the video arriving on path (a pipe) and its frames, RGB uint8 (H, W, 3), as they
    arrive (rotation applied). Its length is unknown (frames 0)."""
    fd, _ = open_input(path)
    reader = _FdReader(fd)
    name = "standard input" if path == STDIO else path
    try:
        # no probing ahead: a live source has only what it has sent so far
        c = av.open(reader, "r", options={"probesize": "32", "analyzeduration": "0", "fpsprobesize": "0"})
    except (av.error.FFmpegError, ValueError) as e:
        reader.close()
        raise UserError(f"cannot read {name} as video: {e}") from None
    if not c.streams.video:
        c.close()
        reader.close()
        raise UserError(f"no video stream in {name}")
    s = c.streams.video[0]
    frames = c.decode(s)
    try:
        first = next(frames)
    except (StopIteration, av.error.FFmpegError):
        c.close()
        reader.close()
        raise UserError(f"no decodable video frames in {name}") from None
    w, h = first.width, first.height
    if _rotation(first) in (90, 270):
        w, h = h, w
    fps = Fraction(s.average_rate or s.guessed_rate or 25)

    def gen() -> Iterator[np.ndarray]:
        n = 0
        try:
            frame = first
            while True:
                yield rgb_frame(frame)
                n += 1
                if max_frames is not None and n >= max_frames:
                    return
                try:
                    frame = next(frames)
                except StopIteration:
                    return
                except av.error.FFmpegError:
                    return  # a damaged tail: keep what decoded
        finally:
            c.close()
            reader.close()
    return VideoInfo(w, h, fps, 0), gen()


def output(path: str) -> BinaryIO:
    """A binary file object writing to path ("-": standard output), unbuffered beyond what flush() sends."""
    if path == STDIO:
        return os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    return open(path, "wb")


class Y4mWriter:
    """RGB frames to y4m 4:2:0 on a file object, flushed frame by frame (VideoWriter's interface)."""

    def __init__(self, f: BinaryIO, width: int, height: int, fps: Fraction):
        self.f = f
        self.width, self.height = width + width % 2, height + height % 2  # 4:2:0 needs even sizes
        fps = Fraction(fps) if fps else Fraction(25)
        f.write(f"YUV4MPEG2 W{self.width} H{self.height} F{fps.numerator}:{fps.denominator} Ip A0:0 "
                f"C420jpeg XYSCSS=420JPEG\n".encode())
        f.flush()

    def write(self, img: np.ndarray) -> None:
        if img.shape[0] != self.height or img.shape[1] != self.width:
            img = np.pad(img, ((0, self.height - img.shape[0]), (0, self.width - img.shape[1]), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").reformat(format="yuv420p")
        self.f.write(b"FRAME\n")
        for plane in frame.planes:  # each plane's rows without their padding
            w = plane.width
            data = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)[:, :w]
            self.f.write(data.tobytes())
        self.f.flush()

    def close(self) -> None:
        self.f.flush()

    def __enter__(self) -> "Y4mWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
