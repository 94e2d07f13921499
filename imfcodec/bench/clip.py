"""The reference clips every method is measured against, held as 8-bit YUV 4:2:0 planes with their RGB view.

A source already stored as 8-bit 4:2:0 at the benchmark size is used exactly as stored, so the encoders read
those planes and PSNR-Y is taken on the Y plane as stored. Anything else (another size, pixel format or a
rotation) goes through video_io's "crop" policy to the benchmark size and is converted to 4:2:0 once, here.
All YUV <-> RGB conversions use swscale with BT.601 limited range, the same for the source and every decode.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import av
import numpy as np

from ..video_io import probe, read_frames, to_model


class Yuv420:
    """Frames as PyAV packs yuv420p: (T, H*3/2, W) uint8, the Y rows first, then U, then V."""

    def __init__(self, packed: np.ndarray):
        if packed.ndim != 3 or packed.dtype != np.uint8 or packed.shape[1] % 3:
            raise ValueError(f"not packed 8-bit yuv420p frames: {packed.shape} {packed.dtype}")
        self.packed = packed

    @classmethod
    def from_rgb(cls, rgb: np.ndarray) -> "Yuv420":
        """(T, H, W, 3) uint8 RGB with even H and W -> 4:2:0 planes."""
        frames = (av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24") for f in rgb)
        return cls(np.stack([f.reformat(format="yuv420p", dst_colorspace="itu601").to_ndarray() for f in frames]))

    def __len__(self) -> int:
        return self.packed.shape[0]

    @property
    def height(self) -> int:
        return self.packed.shape[1] * 2 // 3

    @property
    def width(self) -> int:
        return self.packed.shape[2]

    @property
    def y(self) -> np.ndarray:
        return self.packed[:, :self.height]

    def frames(self) -> Iterator[av.VideoFrame]:
        for p in self.packed:
            yield av.VideoFrame.from_ndarray(p, format="yuv420p")

    def rgb(self) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB."""
        return np.stack([f.reformat(format="rgb24", src_colorspace="itu601").to_ndarray() for f in self.frames()])


@dataclass
class Clip:
    """One source as the benchmark sees it."""
    name: str  # the source's file name without extension: bitstreams and results match it by prefix
    fps: Fraction
    yuv: Yuv420  # what the encoders read
    rgb: np.ndarray  # (T, H, W, 3) uint8: the reference for PSNR-RGB and MS-SSIM
    yuv_as_stored: bool  # True when yuv holds the source's own planes (PSNR-Y is then taken on them)

    @property
    def width(self) -> int:
        return self.yuv.width

    @property
    def height(self) -> int:
        return self.yuv.height

    def __len__(self) -> int:
        return len(self.yuv)


def _stored_planes(path: str, size: int, max_frames: int | None) -> Yuv420 | None:
    """The source's own planes when they are 8-bit 4:2:0, unrotated, of even size and, unless size is 0,
    exactly size x size; None otherwise."""
    out = []
    with av.open(path) as c:
        try:
            for f in c.decode(video=0):
                rotated = round(getattr(f, "rotation", 0) or 0) % 360
                if f.format.name != "yuv420p" or f.width % 2 or f.height % 2 or rotated:
                    return None
                if size and (f.width, f.height) != (size, size):
                    return None
                out.append(f.to_ndarray())
                if max_frames is not None and len(out) >= max_frames:
                    break
        except av.error.FFmpegError:
            pass  # a damaged tail: keep what decoded, as video_io.read_frames does
    return Yuv420(np.stack(out)) if out else None


def mapped_rgb(path: str, size: int, max_frames: int | None) -> np.ndarray:
    """RGB frames mapped to size x size (centre crop, area resize), or cropped to even sizes when size is 0."""
    frames = []
    for img in read_frames(path, max_frames=max_frames):
        if size:
            img = to_model(img, size, size, "crop")
        else:
            img = img[:img.shape[0] // 2 * 2, :img.shape[1] // 2 * 2]
        frames.append(img)
    return np.stack(frames)


def read_clip(path: str, size: int = 256, max_frames: int | None = None) -> Clip:
    """Load a source as a reference clip of size x size pixels (size 0: the source's own size)."""
    info = probe(path)  # raises UserError for a missing, unreadable or non-video file
    name = os.path.splitext(os.path.basename(path))[0]
    yuv = _stored_planes(path, size, max_frames)
    if yuv is not None:
        return Clip(name, info.fps, yuv, yuv.rgb(), True)
    rgb = mapped_rgb(path, size, max_frames)
    yuv = Yuv420.from_rgb(rgb)
    return Clip(name, info.fps, yuv, rgb, False)


def write_y4m(yuv: Yuv420, fps: Fraction, path: str) -> None:
    """Raw 8-bit 4:2:0 y4m, byte for byte the planes given (what imfcodec and VTM's encoder read)."""
    fps = Fraction(fps)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{yuv.width} H{yuv.height} F{fps.numerator}:{fps.denominator} Ip A1:1 C420jpeg\n"
                .encode())
        for p in yuv.packed:
            f.write(b"FRAME\n")
            f.write(p.tobytes())
