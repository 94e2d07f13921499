"""Keyframes: one RGB frame through a standard intra codec via PyAV, and back.

AV1 (SVT-AV1, 4:2:0) at CRF 40 is the default: past a point a better keyframe barely improves the frames
synthesised from it, so its bits buy more as more frequent keyframes (MODEL_CARD.md, "Keyframes").
HEVC (libx265, all-intra, 4:4:4) is the alternative. Both decoders are bit-exact by specification, so the
encoder and every decoder see the same keyframe. `quality` is the codec's CRF (lower is better); PNG is
lossless and ignores it.
"""
from __future__ import annotations

import io
import os
from fractions import Fraction

import av
import numpy as np

from .errors import BitstreamError

CODECS = ("hevc", "av1", "png")
DEFAULT_CODEC = "av1"
DEFAULT_QUALITY = 40
#: The highest CRF of each lossy codec: where a rate cap stops raising it.
MAX_QUALITY = {"av1": 63, "hevc": 51}

# SVT-AV1 prints its whole configuration to stderr for every picture unless told to report errors only.
os.environ.setdefault("SVT_LOG", "1")


def _encode_video(img: np.ndarray, codec: str, pix_fmt: str, options: dict) -> bytes:
    h, w = img.shape[:2]
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, pix_fmt
    ctx.time_base = Fraction(1, 25)
    ctx.framerate = 25
    ctx.options = options
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").reformat(format=pix_fmt)
    frame.pts = 0
    out = b"".join(bytes(p) for p in ctx.encode(frame))
    out += b"".join(bytes(p) for p in ctx.encode(None))
    return out


def _decode_video(data: bytes, codec: str) -> np.ndarray:
    ctx = av.CodecContext.create(codec, "r")
    frames = []
    try:
        frames += ctx.decode(av.Packet(data))
        frames += ctx.decode(None)
    except (av.error.FFmpegError, ValueError) as e:
        raise BitstreamError(f"keyframe cannot be decoded: {e}") from None
    if not frames:
        raise BitstreamError("keyframe chunk holds no decodable picture")
    return frames[0].to_ndarray(format="rgb24")


def encode(img: np.ndarray, codec: str = DEFAULT_CODEC, quality: int = DEFAULT_QUALITY) -> bytes:
    """Intra-code one RGB uint8 frame (H, W, 3)."""
    if codec == "hevc":
        return _encode_video(img, "libx265", "yuv444p",
                             {"crf": str(quality), "preset": "slow",
                              "x265-params": "log-level=error:keyint=1:info=0"})
    if codec == "av1":
        return _encode_video(img, "libsvtav1", "yuv420p", {"crf": str(quality), "preset": "4"})
    if codec == "png":
        buf = io.BytesIO()
        with av.open(buf, "w", format="image2pipe") as c:
            s = c.add_stream("png")
            s.width, s.height, s.pix_fmt = img.shape[1], img.shape[0], "rgb24"
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                c.mux(p)
            for p in s.encode():
                c.mux(p)
        return buf.getvalue()
    raise ValueError(f"unknown keyframe codec {codec!r} (known: {', '.join(CODECS)})")


def decode(data: bytes, codec: str, width: int, height: int) -> np.ndarray:
    """Decode a keyframe payload to RGB uint8 and check it has the coded size."""
    img = _decode_video(data, {"hevc": "hevc", "av1": "libdav1d", "png": "png"}[codec])
    if img.shape[:2] != (height, width):
        raise BitstreamError(f"keyframe is {img.shape[1]}x{img.shape[0]}, header says {width}x{height}")
    return img
