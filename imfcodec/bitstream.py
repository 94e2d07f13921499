"""The .imf container (see bitstream_spec.md, which this module mirrors field for field).

    file   = magic "IMFC" | major u8 | minor u8 | chunk* | END chunk
    chunk  = type (4 ASCII bytes) | length u32 | payload | crc32 u32   (CRC-32 over type, length, payload)

All integers little-endian. The first chunk is HEAD; KEYF chunks start reference segments; TOKN chunks
carry coded tokens; ADPT chunks (3.x) carry decoder offsets for the frames after them; HOLD chunks (6.x)
show frames as their segment's keyframe, with no tokens; END closes
the file (a file without it is truncated). A 4.x file may be a stream written as it was coded: its header
may say the frame count is unknown, and its END chunk holds the count.
"""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO, Iterator

import numpy as np

from entropy import rice

from .errors import BitstreamError

MAGIC = b"IMFC"
VERSION = (2, 0)        # what files without decoder adaptation are written as, so 2.x decoders read them
ADAPT_VERSION = (3, 0)  # files with ADPT chunks
STREAM_VERSION = (4, 0)  # streams written to a pipe: the header's frame count may be unknown, END holds it
INTER_VERSION = (5, 0)  # files whose keyframes are one inter-coded stream (keyframe codec hevc-inter)
HOLD_VERSION = (6, 0)  # files that may hold HOLD chunks: frames shown as their segment's keyframe
READS = (1, 2, 3, 4, 5, 6)  # major versions this decoder reads: each adds to the one before (bitstream_spec.md)
UNKNOWN_FRAMES = 0xFFFFFFFF  # a 4.x header's frame count when the stream's length was not known
HEAD, KEYF, TOKN, ADPT, HOLD, END = b"HEAD", b"KEYF", b"TOKN", b"ADPT", b"HOLD", b"END "
CHUNK_TYPES = (HEAD, KEYF, TOKN, ADPT, HOLD, END)
#: The first major version of each chunk type that not every version has.
SINCE = {ADPT: ADAPT_VERSION[0], HOLD: HOLD_VERSION[0]}
MAX_CHUNK = 1 << 28       # 256 MiB: no legitimate chunk is larger
MAX_DIM = 16384
MAX_FRAMES = 1 << 30

KEYFRAME_CODECS = {"hevc": 0, "av1": 1, "png": 2, "hevc-inter": 3}
INTER_CODECS = (3,)  # keyframe codec ids whose pictures decode only in order, from 5.x on
#: Decoder adaptation schemes (which parameters an ADPT chunk's offsets go to): 1 = the flow MLP's biases.
ADAPT_FLOW_BIASES = 1
ADAPT_SCHEMES = (ADAPT_FLOW_BIASES,)
_ADPT_FMT = "<BIfB"  # scheme, count, step (float32), Rice parameter, then the offsets
ADAPT_HEAD = struct.calcsize(_ADPT_FMT)
_HEAD_FMT = "<IIIHHHHBH32sBBIBH"
_HEAD_FIXED = struct.calcsize(_HEAD_FMT)


@dataclass
class Header:
    frames: int
    fps: Fraction
    src_width: int
    src_height: int
    width: int              # coded (model) size
    height: int
    resize: int             # video_io.RESIZE_POLICIES value
    dm: int
    model_id: bytes         # SHA-256 of the weights file (32 bytes)
    keyframe_codec: int     # KEYFRAME_CODECS value
    keyframe_quality: int
    keyframe_interval: int  # 0: only the first frame is a keyframe
    token_codec: int        # entropy.CODEC_IDS value
    token_params: bytes

    def pack(self) -> bytes:
        return struct.pack(_HEAD_FMT, self.frames, self.fps.numerator, self.fps.denominator,
                           self.src_width, self.src_height, self.width, self.height, self.resize, self.dm,
                           self.model_id, self.keyframe_codec, self.keyframe_quality, self.keyframe_interval,
                           self.token_codec, len(self.token_params)) + self.token_params

    @classmethod
    def unpack(cls, data: bytes) -> "Header":
        if len(data) < _HEAD_FIXED:
            raise BitstreamError("header chunk too short")
        (frames, fn, fd, sw, sh, w, h, resize, dm, mid, kc, kq, ki, tc, plen) = struct.unpack_from(_HEAD_FMT, data)
        if len(data) != _HEAD_FIXED + plen:
            raise BitstreamError("header chunk length does not match its token-codec parameters")
        if fn == 0 or fd == 0:
            raise BitstreamError("header has a zero frame rate")
        if not (0 < w <= MAX_DIM and 0 < h <= MAX_DIM and 0 < sw <= MAX_DIM and 0 < sh <= MAX_DIM):
            raise BitstreamError("header has an impossible frame size")
        if not 0 < dm <= 1024 or (frames > MAX_FRAMES and frames != UNKNOWN_FRAMES):
            raise BitstreamError("header has an impossible token size or frame count")
        return cls(frames, Fraction(fn, fd), sw, sh, w, h, resize, dm, mid, kc, kq, ki, tc,
                   bytes(data[_HEAD_FIXED:]))


_KEYF_FMT = "<I"   # frame index, then the intra-coded picture
_TOKN_FMT = "<IH"  # first frame, count, then the coded tokens
_KEYF_HEAD, _TOKN_HEAD = struct.calcsize(_KEYF_FMT), struct.calcsize(_TOKN_FMT)
#: The most bytes a keyframe or token chunk adds to its coded data: type, length and CRC, plus the token
#: chunk's first frame and count (a keyframe chunk's frame index is smaller).
CHUNK_OVERHEAD = 4 + 4 + 4 + _TOKN_HEAD


def pack_keyframe(frame_index: int, data: bytes) -> bytes:
    return struct.pack(_KEYF_FMT, frame_index) + data


def unpack_keyframe(payload: bytes) -> tuple[int, bytes]:
    if len(payload) <= _KEYF_HEAD:
        raise BitstreamError("keyframe chunk too short")
    return struct.unpack_from(_KEYF_FMT, payload)[0], payload[_KEYF_HEAD:]


def pack_tokens(first_frame: int, count: int, data: bytes) -> bytes:
    return struct.pack(_TOKN_FMT, first_frame, count) + data


def unpack_tokens(payload: bytes) -> tuple[int, int, bytes]:
    if len(payload) < _TOKN_HEAD:
        raise BitstreamError("token chunk too short")
    first, count = struct.unpack_from(_TOKN_FMT, payload)
    if count == 0:
        raise BitstreamError("token chunk with no frames")
    return first, count, payload[_TOKN_HEAD:]


def pack_hold(first_frame: int, count: int) -> bytes:
    return struct.pack(_TOKN_FMT, first_frame, count)


def unpack_hold(payload: bytes) -> tuple[int, int]:
    """A HOLD chunk's first frame and count (at least 1): frames shown as their segment's keyframe."""
    if len(payload) != _TOKN_HEAD:
        raise BitstreamError(f"corrupt HOLD chunk: {len(payload)} bytes, a HOLD chunk has {_TOKN_HEAD}")
    first, count = struct.unpack(_TOKN_FMT, payload)
    if count == 0:
        raise BitstreamError("corrupt HOLD chunk: it holds no frames")
    return first, count


def coded_size(c: "Chunk") -> int:
    """Bytes of coded data a KEYF, TOKN or ADPT chunk carries (its payload less its own fields); 0 for others."""
    return len(c.payload) - {KEYF: _KEYF_HEAD, TOKN: _TOKN_HEAD, ADPT: 0}.get(c.ctype, len(c.payload))


def keyframe_codec_name(codec_id: int) -> str:
    """The keyframe codec a header's id names."""
    names = {v: k for k, v in KEYFRAME_CODECS.items()}
    if codec_id not in names:
        raise BitstreamError(f"unknown keyframe codec id {codec_id}")
    return names[codec_id]


def pack_adapt(q: np.ndarray, step: float, scheme: int = ADAPT_FLOW_BIASES) -> bytes:
    """An ADPT payload: scheme, count, step and Rice parameter, then the integer offsets q Rice-coded."""
    k, body = rice.encode(q)
    return struct.pack(_ADPT_FMT, scheme, len(q), step, k) + body


def unpack_adapt(payload: bytes) -> tuple[int, np.ndarray, float]:
    """(scheme, integer offsets, step) of an ADPT payload; BitstreamError on anything malformed."""
    size = ADAPT_HEAD
    if len(payload) < size:
        raise BitstreamError("adaptation chunk too short")
    scheme, n, step, k = struct.unpack_from(_ADPT_FMT, payload)
    if scheme not in ADAPT_SCHEMES:
        raise BitstreamError(f"adaptation chunk: unknown scheme {scheme}")
    if not (math.isfinite(step) and 0 < step <= 1) or k > rice.MAX_K:
        raise BitstreamError("adaptation chunk: impossible step or Rice parameter")
    try:
        return scheme, rice.decode(payload[size:], n, k), step
    except ValueError as e:
        raise BitstreamError(f"adaptation chunk: {e}") from None


class Writer:
    """Writes chunks to a file; on a seekable one the header can be rewritten in place at the end (frame
    count). With stream=True (a pipe: a 4.x file) every chunk is flushed as it is written and the END chunk
    carries the frame count."""

    def __init__(self, f: BinaryIO, version: tuple[int, int] = VERSION, stream: bool = False):
        self.f, self.version, self.stream = f, version, stream
        if stream and version[0] < STREAM_VERSION[0]:
            raise ValueError("a stream is a 4.x file")
        f.write(MAGIC + bytes(version))
        self.pos = 6
        self.head_pos = None

    def chunk(self, ctype: bytes, payload: bytes) -> None:
        if ctype == HEAD:
            self.head_pos = self.pos
        if len(payload) > MAX_CHUNK:
            raise ValueError("chunk too large")
        body = ctype + struct.pack("<I", len(payload)) + payload
        self.f.write(body + struct.pack("<I", zlib.crc32(body)))
        self.pos += len(body) + 4
        if self.stream:
            self.f.flush()

    def rewrite_header(self, header: Header) -> None:
        """Replace the HEAD chunk written earlier by one of the same length."""
        end = self.f.tell()
        self.f.seek(self.head_pos)
        self.chunk(HEAD, header.pack())
        self.f.seek(end)

    def tell(self) -> int:
        """Bytes written so far."""
        return self.pos

    def close(self, frames: int = 0) -> None:
        """The END chunk: empty before 4.x, the file's frame count from 4.x on (rewritten files pass it)."""
        self.chunk(END, pack_end(frames) if self.version[0] >= STREAM_VERSION[0] else b"")


def pack_end(frames: int) -> bytes:
    return struct.pack("<I", frames)


def unpack_end(payload: bytes, major: int) -> int | None:
    """The frame count an END chunk holds (4.x), None before 4.x (its payload is empty)."""
    if major < STREAM_VERSION[0]:
        if payload:
            raise BitstreamError("corrupt END chunk: it has a payload")
        return None
    if len(payload) != 4:
        raise BitstreamError("corrupt END chunk: a 4.x END chunk holds the frame count (4 bytes)")
    (frames,) = struct.unpack("<I", payload)
    if frames > MAX_FRAMES:
        raise BitstreamError("corrupt END chunk: impossible frame count")
    return frames


@dataclass
class Chunk:
    ctype: bytes
    payload: bytes
    offset: int  # file offset of the chunk's type field
    index: int   # position among the file's chunks
    version: tuple[int, int] = VERSION  # the file's


def chunk_name(c: Chunk) -> str:
    return f"chunk {c.index} ({c.ctype.decode('ascii', 'replace').strip()} at byte {c.offset})"


def read_version(f: BinaryIO) -> tuple[int, int]:
    """The magic and (major, minor) version at the start of a file; BitstreamError unless this decoder reads it."""
    magic = f.read(4)
    if magic != MAGIC:
        raise BitstreamError("not an .imf file (bad magic)")
    ver = f.read(2)
    if len(ver) < 2:
        raise BitstreamError("truncated .imf file (no version)")
    if ver[0] not in READS:
        raise BitstreamError(f"unsupported .imf version {ver[0]}.{ver[1]} "
                             f"(this decoder reads {' and '.join(f'{v}.x' for v in READS)})")
    return ver[0], ver[1]


def read_chunks(f: BinaryIO, size: int | None) -> Iterator[Chunk]:
    """Yield CRC-checked chunks; raise BitstreamError naming the chunk on any damage. size None: f is a
    stream (a pipe) of unknown length, read as it grows; a chunk is yielded once it is whole."""
    ver = read_version(f)
    index, offset = 0, 6
    while True:
        head = f.read(8)
        if len(head) == 0:
            raise BitstreamError(f"truncated .imf file: ends after {index} chunks without an END chunk")
        if len(head) < 8:
            raise BitstreamError(f"truncated .imf file: chunk {index} at byte {offset} is cut short")
        ctype, (length,) = head[:4], struct.unpack("<I", head[4:])
        name = f"chunk {index} ({ctype.decode('ascii', 'replace').strip()} at byte {offset})"
        if length > (MAX_CHUNK if size is None else min(MAX_CHUNK, size - offset - 12)):
            if size is not None and offset + 12 + length > size:
                raise BitstreamError(f"truncated .imf file or corrupt length: {name} runs past the end")
            raise BitstreamError(f"corrupt {name}: impossible length")
        payload = f.read(length)
        crc = f.read(4)
        if len(payload) < length or len(crc) < 4:
            raise BitstreamError(f"truncated .imf file: {name} is cut short")
        if zlib.crc32(head + payload) != struct.unpack("<I", crc)[0]:
            raise BitstreamError(f"CRC mismatch in {name}: the file is corrupt")
        if ctype not in CHUNK_TYPES or ver[0] < SINCE.get(ctype, 0):
            raise BitstreamError(f"unknown chunk type in {name}")
        chunk = Chunk(ctype, payload, offset, index, ver)
        if index == 0 and ctype != HEAD:
            raise BitstreamError("corrupt .imf file: the first chunk is not HEAD")
        yield chunk
        index += 1
        if ctype != END:
            offset += 12 + length
        if ctype == END:
            if f.read(1):
                raise BitstreamError(f"corrupt .imf file: data after the END chunk at byte {offset}")
            return
