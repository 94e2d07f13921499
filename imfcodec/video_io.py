"""Reading and writing video through PyAV, and the policy that maps frames to the model size.

Frames travel through the project as uint8 RGB numpy arrays shaped (H, W, 3).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .errors import UserError

#: Resize policies, as stored in the .imf header (the number is the wire value).
RESIZE_POLICIES = {"stretch": 0, "crop": 1, "pad": 2}


@dataclass
class VideoInfo:
    width: int  # display width, after rotation
    height: int
    fps: Fraction
    frames: int  # as the container claims; 0 when unknown


def _open(path: str, **kw) -> av.container.InputContainer:
    if not os.path.exists(path):
        raise UserError(f"input not found: {path}")
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise UserError(f"input is not a readable file: {path}")
    try:
        return av.open(path, **kw)
    except (av.error.FFmpegError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path} as video: {e}") from None


def _rotation(frame: av.VideoFrame) -> int:
    """Clockwise display rotation in degrees (0, 90, 180, 270) from the frame's display matrix."""
    try:
        return (-int(round(frame.rotation))) % 360
    except (AttributeError, TypeError, ValueError):
        return 0


def probe(path: str, fmt: str | None = None) -> VideoInfo:
    """Size, frame rate and frame count of the first video stream. Where the container does not count
    frames (y4m, MPEG-PS), the count is the stream's duration times its frame rate, rounded down; 0 when
    neither is known (a pipe)."""
    with _open(path, format=fmt) as c:
        if not c.streams.video:
            raise UserError(f"no video stream in {path}")
        s = c.streams.video[0]
        fps = s.average_rate or s.guessed_rate or Fraction(25)
        w, h = s.codec_context.width, s.codec_context.height
        try:
            first = next(c.decode(s))
            w, h = first.width, first.height
            if _rotation(first) in (90, 270):
                w, h = h, w
        except (StopIteration, av.error.FFmpegError):
            raise UserError(f"no decodable video frames in {path}") from None
        frames = s.frames or (int(s.duration * s.time_base * fps) if s.duration and s.time_base else 0)
        return VideoInfo(w, h, Fraction(fps), int(frames))


def rgb_frame(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as RGB uint8 (H, W, 3), its display rotation applied."""
    img = frame.to_ndarray(format="rgb24")
    rot = _rotation(frame)
    return np.ascontiguousarray(np.rot90(img, k=-rot // 90)) if rot else img


def read_frames(path: str, fmt: str | None = None, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield every frame of the first video stream as RGB uint8 (H, W, 3), rotation applied."""
    c = _open(path, format=fmt)
    try:
        if not c.streams.video:
            raise UserError(f"no video stream in {path}")
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        n = 0
        try:
            for frame in c.decode(s):
                yield rgb_frame(frame)
                n += 1
                if max_frames is not None and n >= max_frames:
                    return
        except av.error.FFmpegError as e:
            if n == 0:
                raise UserError(f"cannot decode video in {path}: {e}") from None
            # A damaged tail: keep what decoded, like other players do.
            return
        if n == 0:
            raise UserError(f"no decodable video frames in {path}")
    finally:
        c.close()


def _area_resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Resize with PyAV's swscale (area filter when shrinking, bicubic when growing)."""
    if img.shape[1] == w and img.shape[0] == h:
        return img
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
    shrinking = w * h < img.shape[0] * img.shape[1]
    interp = "AREA" if shrinking else "BICUBIC"
    return frame.reformat(width=w, height=h, format="rgb24", interpolation=interp).to_ndarray()


def crop_box(src_w: int, src_h: int, dst_w: int, dst_h: int) -> tuple[int, int, int, int]:
    """Centred box (x, y, w, h) of the source with the destination's aspect ratio."""
    if src_w * dst_h > src_h * dst_w:
        cw = max(1, round(src_h * dst_w / dst_h))
        return (src_w - cw) // 2, 0, cw, src_h
    ch = max(1, round(src_w * dst_h / dst_w))
    return 0, (src_h - ch) // 2, src_w, ch


def pad_box(src_w: int, src_h: int, dst_w: int, dst_h: int) -> tuple[int, int, int, int]:
    """Box (x, y, w, h) inside the destination where the whole source lands, letterboxed."""
    if src_w * dst_h > src_h * dst_w:
        ih = max(1, round(dst_w * src_h / src_w))
        return 0, (dst_h - ih) // 2, dst_w, ih
    iw = max(1, round(dst_h * src_w / src_h))
    return (dst_w - iw) // 2, 0, iw, dst_h


def to_model(img: np.ndarray, w: int, h: int, policy: str) -> np.ndarray:
    """Map a source frame to the model size: stretch, centre-crop, or letterbox (pad with black)."""
    sh, sw = img.shape[:2]
    if policy == "stretch":
        return _area_resize(img, w, h)
    if policy == "crop":
        x, y, cw, ch = crop_box(sw, sh, w, h)
        return _area_resize(img[y:y + ch, x:x + cw], w, h)
    if policy == "pad":
        x, y, iw, ih = pad_box(sw, sh, w, h)
        out = np.zeros((h, w, 3), np.uint8)
        out[y:y + ih, x:x + iw] = _area_resize(img, iw, ih)
        return out
    raise ValueError(f"unknown resize policy {policy!r}")


def source_size(src_w: int, src_h: int, w: int, h: int, policy: str) -> tuple[int, int]:
    """Output size of :func:`to_source`: the source's, except that a crop gives back only the cropped
    box at source scale (the borders were never coded, so there is nothing honest to show there)."""
    if policy == "crop":
        return crop_box(src_w, src_h, w, h)[2:]
    return src_w, src_h


def to_source(img: np.ndarray, src_w: int, src_h: int, policy: str) -> np.ndarray:
    """Inverse of :func:`to_model` as far as it goes; see :func:`source_size` for the output size."""
    h, w = img.shape[:2]
    if policy == "stretch":
        return _area_resize(img, src_w, src_h)
    if policy == "crop":
        return _area_resize(img, *source_size(src_w, src_h, w, h, policy))
    if policy == "pad":
        x, y, iw, ih = pad_box(src_w, src_h, w, h)
        return _area_resize(img[y:y + ih, x:x + iw], src_w, src_h)
    raise ValueError(f"unknown resize policy {policy!r}")


class VideoWriter:
    """Writes RGB frames to a file whose codec follows the extension.

    .mp4 -> H.264 (crf 12, yuv420p: high quality), .mkv -> FFV1 (lossless, rgb via bgr0),
    .y4m -> raw yuv420p. Width and height must be even for the 4:2:0 outputs; odd sizes are
    padded by one pixel on write for mp4/y4m only where the format requires it.
    """

    def __init__(self, path: str, width: int, height: int, fps: Fraction, fmt_hint: str | None = None):
        ext = (fmt_hint or os.path.splitext(path)[1]).lower().lstrip(".")
        if ext not in ("mp4", "mkv", "y4m"):
            raise UserError(f"unsupported output extension .{ext}: use .mp4, .mkv or .y4m")
        self.ext = ext
        self.container = av.open(path, "w", format={"mp4": "mp4", "mkv": "matroska", "y4m": "yuv4mpegpipe"}[ext])
        if ext == "mp4":
            s = self.container.add_stream("libx264", rate=fps)
            s.pix_fmt = "yuv420p"
            s.options = {"crf": "12", "preset": "medium"}
        elif ext == "mkv":
            s = self.container.add_stream("ffv1", rate=fps)
            s.pix_fmt = "bgr0"
        else:
            s = self.container.add_stream("rawvideo", rate=fps)
            s.pix_fmt = "yuv420p"
        self.even = ext != "mkv"
        self.width = width + (width % 2 if self.even else 0)
        self.height = height + (height % 2 if self.even else 0)
        s.width, s.height = self.width, self.height
        s.time_base = Fraction(1, 1) / fps if fps else Fraction(1, 25)
        self.stream = s
        self.pts = 0
        # one conversion context for the whole stream: a frame's own reformat() sets up swscale anew each
        # time, about three quarters of the conversion's cost at 256x256 (the same pixels either way)
        self.reformatter = VideoReformatter()

    def write(self, img: np.ndarray) -> None:
        if img.shape[0] != self.height or img.shape[1] != self.width:
            img = np.pad(img, ((0, self.height - img.shape[0]), (0, self.width - img.shape[1]), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        frame = self.reformatter.reformat(frame, format=self.stream.pix_fmt)
        frame.pts = self.pts
        self.pts += 1
        for pkt in self.stream.encode(frame):
            self.container.mux(pkt)

    def close(self) -> None:
        for pkt in self.stream.encode():
            self.container.mux(pkt)
        self.container.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            try:
                self.container.close()
            except Exception:
                pass
