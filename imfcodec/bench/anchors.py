"""Standard codecs encoded live through PyAV: x264, x265 and SVT-AV1 in low-delay mode, and x265 with B-frames.

Low delay here means no B-frames and a single keyframe (the first frame), like imfcodec's `--keyframe-position
start` stream. `x265-ra` lets x265 use its B-frames (up to 4, adaptive), which delay frames as imfcodec's default
(a keyframe in the middle of each segment) does; it too has a single keyframe. Each CRF sweep ends at the
encoder's lowest rate (x264 and x265: CRF 51, SVT-AV1: CRF 63). Streams are written as
raw elementary streams (Annex-B H.264/H.265, AV1 OBUs), so bits are the stream's own, with no container
around them. Encoders and decoders run single-threaded so that fps compare across machines.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from ..errors import UserError
from ..svt import own_scheduling
from .clip import Yuv420


@dataclass(frozen=True)
class Codec:
    """An anchor: a PyAV encoder with fixed low-delay options and a CRF sweep."""
    name: str
    encoder: str  # PyAV / FFmpeg encoder name
    fmt: str  # raw elementary stream muxer
    options: tuple[tuple[str, str], ...]  # everything but the CRF
    crfs: tuple[int, ...]  # the default sweep, best quality first, ending at the encoder's lowest rate

    def encode(self, frames: Yuv420, fps: Fraction, setting: int) -> bytes:
        """The elementary stream of the frames at CRF `setting`."""
        buf = io.BytesIO()
        try:
            with own_scheduling(), av.open(buf, "w", format=self.fmt) as c:
                s = c.add_stream(self.encoder, rate=Fraction(fps))
                s.width, s.height, s.pix_fmt = frames.width, frames.height, "yuv420p"
                s.codec_context.thread_count = 1
                s.options = {**dict(self.options), "crf": str(setting)}
                for i, f in enumerate(frames.frames()):
                    f.pts = i
                    c.mux(s.encode(f))
                c.mux(s.encode())
        except av.error.FFmpegError as e:
            raise UserError(f"{self.name} failed at crf {setting} on {frames.width}x{frames.height}: {e}") from None
        return buf.getvalue()

    def decode(self, data: bytes) -> Yuv420:
        with av.open(io.BytesIO(data), format=self.fmt) as c:
            c.streams.video[0].codec_context.thread_count = 1
            return Yuv420(np.stack([f.reformat(format="yuv420p").to_ndarray() for f in c.decode(video=0)]))

    def encode_decode(self, frames: Yuv420, fps: Fraction, setting: int) -> tuple[Yuv420, int, float, float]:
        """Encode the frames at CRF `setting` and decode them again: (decoded, bits, encode s, decode s)."""
        t0 = time.perf_counter()
        data = self.encode(frames, fps, setting)
        t1 = time.perf_counter()
        decoded = self.decode(data)
        return decoded, len(data) * 8, t1 - t0, time.perf_counter() - t1


def _x265(name: str, bframes: int) -> Codec:
    """x265 at preset slow, one thread, with bframes B-frames (0: low delay)."""
    params = f"bframes={bframes}:keyint=-1:pools=1:frame-threads=1:log-level=error"
    return Codec(name, "libx265", "hevc", (("preset", "slow"), ("x265-params", params)), (32, 37, 42, 47, 51))


ANCHORS = {c.name: c for c in (
    Codec("x264", "libx264", "h264",
          (("preset", "veryslow"), ("x264-params", "bframes=0:keyint=infinite")),
          (35, 39, 43, 47, 51)),
    _x265("x265", 0),
    _x265("x265-ra", 4),
    Codec("svtav1", "libsvtav1", "obu",
          (("preset", "6"), ("svtav1-params", "pred-struct=1:keyint=-1:lp=1")),
          (43, 48, 53, 58, 63)),
)}
