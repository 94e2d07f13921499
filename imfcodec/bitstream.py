"""The .imf container (see bitstream_spec.md, which this module mirrors field for field).

    file   = magic "IMFC" | major u8 | minor u8 | chunk* | END chunk
    chunk  = type u8 | length varint | payload | crc16 u16           (7.x: CRC-16 over type, length, payload)
    chunk  = type (4 ASCII bytes) | length u32 | payload | crc32 u32   (1.x-6.x: CRC-32 likewise)

All integers little-endian; a varint is unsigned LEB128 (7 bits a byte, low first, minimal). 7.x also drops
the fields a reader already knows (a run's first frame) and writes counts as varints: at a few kbit/s the
6.x framing took a fifth of a file. The first chunk is HEAD; KEYF chunks start reference segments; TOKN chunks
carry coded tokens; ADPT chunks (3.x) carry decoder offsets for the frames after them; HOLD chunks (6.x)
show frames as their segment's keyframe, with no tokens; END closes
the file (a file without it is truncated). A 4.x file may be a stream written as it was coded: its header
may say the frame count is unknown, and its END chunk holds the count.
"""
from __future__ import annotations

import binascii
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
COMPACT_VERSION = (7, 0)  # every file this encoder writes: 6.x's chunks in the compact framing
READS = (1, 2, 3, 4, 5, 6, 7)  # major versions this decoder reads: each adds to the one before (bitstream_spec.md)
UNKNOWN_FRAMES = 0xFFFFFFFF  # a 4.x header's frame count when the stream's length was not known
HEAD, KEYF, TOKN, ADPT, HOLD, END = b"HEAD", b"KEYF", b"TOKN", b"ADPT", b"HOLD", b"END "
CHUNK_TYPES = (HEAD, KEYF, TOKN, ADPT, HOLD, END)
#: The first major version of each chunk type that not every version has.
SINCE = {ADPT: ADAPT_VERSION[0], HOLD: HOLD_VERSION[0]}
#: 7.x's one-byte chunk types.
TYPE_CODES = {HEAD: 1, KEYF: 2, TOKN: 3, ADPT: 4, HOLD: 5, END: 6}
CODE_TYPES = {v: k for k, v in TYPE_CODES.items()}
#: 7.x headers carry the first ID_BYTES bytes of the weights' SHA-256 (earlier ones all 32).
ID_BYTES = 8
MAX_RUN = 0xFFFF  # frames in one token or HOLD chunk (a u16 count before 7.x)
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
_HEAD_FMT_7 = _HEAD_FMT.replace("32s", f"{ID_BYTES}s")


def compact(version: tuple[int, int]) -> bool:
    """Whether files of this version use the 7.x framing and field encodings."""
    return version[0] >= COMPACT_VERSION[0]


def pack_varint(n: int) -> bytes:
    """n >= 0 as unsigned LEB128: 7 bits a byte, least significant first, the high bit set on all but the last."""
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def read_varint(data: bytes, at: int = 0, max_bytes: int = 4) -> tuple[int, int]:
    """The varint at data[at:] and the position after it; BitstreamError if it is cut short, longer than
    max_bytes or not minimal (a last byte of 0 after others)."""
    n = 0
    for i in range(max_bytes):
        if at + i >= len(data):
            raise BitstreamError("truncated varint")
        b = data[at + i]
        n |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            if b == 0 and i:
                raise BitstreamError("varint not in its shortest form")
            return n, at + i + 1
    raise BitstreamError(f"varint longer than {max_bytes} bytes")


def _exact_varint(payload: bytes, what: str, max_bytes: int = 3) -> int:
    """A payload that is one varint and nothing else."""
    try:
        n, at = read_varint(payload, 0, max_bytes)
    except BitstreamError as e:
        raise BitstreamError(f"corrupt {what}: {e}") from None
    if at != len(payload):
        raise BitstreamError(f"corrupt {what}: {len(payload)} bytes, it holds one varint")
    return n


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
    model_id: bytes         # SHA-256 of the weights file (32 bytes; a 7.x header keeps its first ID_BYTES)
    keyframe_codec: int     # KEYFRAME_CODECS value
    keyframe_quality: int
    keyframe_interval: int  # 0: only the first frame is a keyframe
    token_codec: int        # entropy.CODEC_IDS value
    token_params: bytes

    def pack(self, compact: bool = False) -> bytes:
        fmt, mid = (_HEAD_FMT_7, self.model_id[:ID_BYTES]) if compact else (_HEAD_FMT, self.model_id)
        return struct.pack(fmt, self.frames, self.fps.numerator, self.fps.denominator,
                           self.src_width, self.src_height, self.width, self.height, self.resize, self.dm,
                           mid, self.keyframe_codec, self.keyframe_quality, self.keyframe_interval,
                           self.token_codec, len(self.token_params)) + self.token_params

    @classmethod
    def unpack(cls, data: bytes, compact: bool = False) -> "Header":
        fmt = _HEAD_FMT_7 if compact else _HEAD_FMT
        fixed = struct.calcsize(fmt)
        if len(data) < fixed:
            raise BitstreamError("header chunk too short")
        (frames, fn, fd, sw, sh, w, h, resize, dm, mid, kc, kq, ki, tc, plen) = struct.unpack_from(fmt, data)
        if len(data) != fixed + plen:
            raise BitstreamError("header chunk length does not match its token-codec parameters")
        if fn == 0 or fd == 0:
            raise BitstreamError("header has a zero frame rate")
        if not (0 < w <= MAX_DIM and 0 < h <= MAX_DIM and 0 < sw <= MAX_DIM and 0 < sh <= MAX_DIM):
            raise BitstreamError("header has an impossible frame size")
        if not 0 < dm <= 1024 or (frames > MAX_FRAMES and frames != UNKNOWN_FRAMES):
            raise BitstreamError("header has an impossible token size or frame count")
        return cls(frames, Fraction(fn, fd), sw, sh, w, h, resize, dm, mid, kc, kq, ki, tc,
                   bytes(data[fixed:]))


_KEYF_FMT = "<I"   # frame index, then the intra-coded picture
_TOKN_FMT = "<IH"  # first frame, count, then the coded tokens
_KEYF_HEAD, _TOKN_HEAD = struct.calcsize(_KEYF_FMT), struct.calcsize(_TOKN_FMT)
#: A bound on the bytes a chunk of the files this encoder writes (7.x) adds to its coded data, for estimates:
#: type, length (at most 4 bytes) and CRC, plus a run's count or a keyframe's index (up to 2^21: 3 bytes).
#: Budgets use the exact sizes below.
CHUNK_OVERHEAD = 1 + 4 + 2 + 3


def chunk_size(payload: int) -> int:
    """Bytes a 7.x chunk with a payload of that many bytes takes as stored: type, length, payload and CRC."""
    return 1 + len(pack_varint(payload)) + payload + 2


def keyframe_chunk_size(data: int) -> int:
    """Bytes a 7.x KEYF chunk of data bytes of picture takes, at most (its frame index below 2^21)."""
    return chunk_size(3 + data)


def token_chunk_size(data: int, count: int) -> int:
    """Bytes a 7.x TOKN chunk of count frames and data bytes of coded tokens takes."""
    return chunk_size(len(pack_varint(count)) + data)


#: The most bytes a 7.x END chunk takes (its frame count below 2^30).
END_CHUNK_SIZE = chunk_size(5)


def pack_keyframe(frame_index: int, data: bytes, compact: bool = False) -> bytes:
    return (pack_varint(frame_index) if compact else struct.pack(_KEYF_FMT, frame_index)) + data


def unpack_keyframe(payload: bytes, compact: bool = False) -> tuple[int, bytes]:
    """A keyframe chunk's frame index and coded picture."""
    if compact:
        idx, at = read_varint(payload, 0, 5)
    elif len(payload) >= _KEYF_HEAD:
        idx, at = struct.unpack_from(_KEYF_FMT, payload)[0], _KEYF_HEAD
    else:
        at = len(payload)
    if len(payload) <= at:
        raise BitstreamError("keyframe chunk too short")
    return idx, payload[at:]


def pack_tokens(first_frame: int, count: int, data: bytes, compact: bool = False) -> bytes:
    """A token chunk's payload; in 7.x without the first frame (the reader's next frame)."""
    return (pack_varint(count) if compact else struct.pack(_TOKN_FMT, first_frame, count)) + data


def unpack_tokens(payload: bytes, compact: bool = False, nxt: int = 0) -> tuple[int, int, bytes]:
    """A token chunk's first frame (in 7.x nxt, the frame the reader expects), count and coded tokens."""
    if compact:
        count, at = read_varint(payload, 0, 3)
        first = nxt
    elif len(payload) < _TOKN_HEAD:
        raise BitstreamError("token chunk too short")
    else:
        (first, count), at = struct.unpack_from(_TOKN_FMT, payload), _TOKN_HEAD
    if count == 0 or count > MAX_RUN:
        raise BitstreamError("token chunk with no frames" if count == 0 else "token chunk with too many frames")
    return first, count, payload[at:]


def pack_hold(first_frame: int, count: int, compact: bool = False) -> bytes:
    return pack_varint(count) if compact else struct.pack(_TOKN_FMT, first_frame, count)


def unpack_hold(payload: bytes, compact: bool = False, nxt: int = 0) -> tuple[int, int]:
    """A HOLD chunk's first frame (in 7.x nxt) and count (1 to MAX_RUN): frames shown as their segment's
    keyframe."""
    if compact:
        first, count = nxt, _exact_varint(payload, "HOLD chunk")
    elif len(payload) != _TOKN_HEAD:
        raise BitstreamError(f"corrupt HOLD chunk: {len(payload)} bytes, a HOLD chunk has {_TOKN_HEAD}")
    else:
        first, count = struct.unpack(_TOKN_FMT, payload)
    if count == 0:
        raise BitstreamError("corrupt HOLD chunk: it holds no frames")
    if count > MAX_RUN:
        raise BitstreamError("corrupt HOLD chunk: it holds too many frames")
    return first, count


def coded_size(c: "Chunk") -> int:
    """Bytes of coded data a KEYF, TOKN or ADPT chunk carries (its payload less its own fields); 0 for others."""
    small = compact(c.version)
    if c.ctype == KEYF:
        return len(unpack_keyframe(c.payload, small)[1])
    if c.ctype == TOKN:
        return len(unpack_tokens(c.payload, small)[2])
    return len(c.payload) if c.ctype == ADPT else 0


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

    def __init__(self, f: BinaryIO, version: tuple[int, int] = COMPACT_VERSION, stream: bool = False):
        self.f, self.version, self.stream = f, version, stream
        self.compact = compact(version)
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
        data = frame_chunk(ctype, payload, self.compact)
        self.f.write(data)
        self.pos += len(data)
        if self.stream:
            self.f.flush()

    def rewrite_header(self, header: Header) -> None:
        """Replace the HEAD chunk written earlier by one of the same length."""
        end = self.f.tell()
        self.f.seek(self.head_pos)
        self.f.write(frame_chunk(HEAD, header.pack(self.compact), self.compact))
        self.f.seek(end)

    def tell(self) -> int:
        """Bytes written so far."""
        return self.pos

    def close(self, frames: int = 0) -> None:
        """The END chunk: empty before 4.x, the file's frame count from 4.x on (rewritten files pass it)."""
        self.chunk(END, pack_end(frames, self.version))


def frame_chunk(ctype: bytes, payload: bytes, compact: bool) -> bytes:
    """A chunk as stored: type, length, payload and CRC, in the 7.x framing or the one before."""
    if compact:
        body = bytes([TYPE_CODES[ctype]]) + pack_varint(len(payload)) + payload
        return body + struct.pack("<H", binascii.crc_hqx(body, 0xFFFF))
    body = ctype + struct.pack("<I", len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def pack_end(frames: int, version: tuple[int, int]) -> bytes:
    """An END payload: empty before 4.x, the frame count from 4.x on (a varint from 7.x on)."""
    if compact(version):
        return pack_varint(frames)
    return struct.pack("<I", frames) if version[0] >= STREAM_VERSION[0] else b""


def unpack_end(payload: bytes, major: int) -> int | None:
    """The frame count an END chunk holds (4.x), None before 4.x (its payload is empty)."""
    if major < STREAM_VERSION[0]:
        if payload:
            raise BitstreamError("corrupt END chunk: it has a payload")
        return None
    if major >= COMPACT_VERSION[0]:
        frames = _exact_varint(payload, "END chunk", 5)
    elif len(payload) != 4:
        raise BitstreamError("corrupt END chunk: a 4.x END chunk holds the frame count (4 bytes)")
    else:
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
    end: int = 0  # file offset just after the chunk (its CRC)


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
    small = compact(ver)
    index, offset = 0, 6
    while True:
        head, ctype, length = _chunk_head(f, index, offset, small)
        name = f"chunk {index} ({ctype.decode('ascii', 'replace').strip()} at byte {offset})"
        framing = len(head) + (2 if small else 4)
        if length > (MAX_CHUNK if size is None else min(MAX_CHUNK, size - offset - framing)):
            if size is not None and offset + framing + length > size:
                raise BitstreamError(f"truncated .imf file or corrupt length: {name} runs past the end")
            raise BitstreamError(f"corrupt {name}: impossible length")
        payload = f.read(length)
        crc = f.read(framing - len(head))
        if len(payload) < length or len(crc) < framing - len(head):
            raise BitstreamError(f"truncated .imf file: {name} is cut short")
        if (binascii.crc_hqx(head + payload, 0xFFFF) if small else zlib.crc32(head + payload)) != \
                int.from_bytes(crc, "little"):
            raise BitstreamError(f"CRC mismatch in {name}: the file is corrupt")
        if ctype not in CHUNK_TYPES or ver[0] < SINCE.get(ctype, 0):
            raise BitstreamError(f"unknown chunk type in {name}")
        chunk = Chunk(ctype, payload, offset, index, ver, offset + framing + length)
        if index == 0 and ctype != HEAD:
            raise BitstreamError("corrupt .imf file: the first chunk is not HEAD")
        yield chunk
        index += 1
        if ctype == END:
            if f.read(1):
                raise BitstreamError(f"corrupt .imf file: data after the END chunk at byte {chunk.end}")
            return
        offset = chunk.end


def _chunk_head(f: BinaryIO, index: int, offset: int, small: bool) -> tuple[bytes, bytes, int]:
    """The type and length fields of the chunk at offset as read (for the CRC), its type name and its
    payload's length."""
    head = f.read(1 if small else 8)
    if len(head) == 0:
        raise BitstreamError(f"truncated .imf file: ends after {index} chunks without an END chunk")
    if not small:
        if len(head) < 8:
            raise BitstreamError(f"truncated .imf file: chunk {index} at byte {offset} is cut short")
        return head, head[:4], struct.unpack("<I", head[4:])[0]
    ctype = CODE_TYPES.get(head[0], b"#%d" % head[0])
    while len(head) == 1 or head[-1] & 0x80:  # the length's varint, a byte at a time
        if len(head) == 5:
            raise BitstreamError(f"corrupt chunk {index} at byte {offset}: its length is longer than 4 bytes")
        b = f.read(1)
        if not b:
            raise BitstreamError(f"truncated .imf file: chunk {index} at byte {offset} is cut short")
        head += b
    try:
        length = read_varint(head, 1)[0]
    except BitstreamError as e:
        raise BitstreamError(f"corrupt chunk {index} at byte {offset}: its length's {e}") from None
    return head, ctype, length
