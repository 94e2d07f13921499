import binascii
import io
import zlib
from fractions import Fraction

import pytest

from imfcodec import bitstream as bs
from imfcodec.errors import BitstreamError

OLD, NEW = bs.HOLD_VERSION, bs.COMPACT_VERSION  # the last version with 4-byte types and CRC-32, and 7.0
BOTH = pytest.mark.parametrize("version", [OLD, NEW], ids=["6.0", "7.0"])


def header(**kw):
    base = dict(frames=10, fps=Fraction(30000, 1001), src_width=640, src_height=360, width=256, height=256,
                resize=1, dm=32, model_id=bytes(range(32)), keyframe_codec=0, keyframe_quality=32,
                keyframe_interval=0, token_codec=0, token_params=b"\x00\x00\x00A")
    base.update(kw)
    return bs.Header(**base)


def make_file(h=None, version=NEW) -> bytes:
    f = io.BytesIO()
    w = bs.Writer(f, version)
    w.chunk(bs.HEAD, (h or header()).pack(w.compact))
    w.chunk(bs.KEYF, bs.pack_keyframe(0, b"keyframe-bytes", w.compact))
    w.chunk(bs.TOKN, bs.pack_tokens(1, 9, b"t" * 40, w.compact))
    w.close(10)
    return f.getvalue()


def parse(data: bytes):
    return list(bs.read_chunks(io.BytesIO(data), len(data)))


@BOTH
def test_write_read_round_trip(version):
    data = make_file(version=version)
    chunks = parse(data)
    small = bs.compact(version)
    assert [c.ctype for c in chunks] == [bs.HEAD, bs.KEYF, bs.TOKN, bs.END]
    h = bs.Header.unpack(chunks[0].payload, small)
    assert h.model_id == bytes(range(bs.ID_BYTES if small else 32))
    assert h == header(model_id=h.model_id)
    assert bs.unpack_keyframe(chunks[1].payload, small) == (0, b"keyframe-bytes")
    assert bs.unpack_tokens(chunks[2].payload, small, nxt=1) == (1, 9, b"t" * 40)
    assert bs.unpack_end(chunks[3].payload, version[0]) == 10
    assert chunks[-1].end == len(data)


def test_compact_framing_is_smaller_and_as_specified():
    """7.0 chunks: a one-byte type, a varint length and a CRC-16 (CCITT-FALSE) over both and the payload; a
    token chunk carries its count but not its first frame."""
    old, new = make_file(version=OLD), make_file(version=NEW)
    # per chunk 12 -> 4 framing bytes; model id 32 -> 8; key index 4 -> 1; token fields 6 -> 1; END's count 4 -> 1
    assert len(old) - len(new) == 8 * 4 + 24 + 3 + 5 + 3
    tok = parse(new)[2]
    raw = new[tok.offset:tok.end]
    assert raw[0] == bs.TYPE_CODES[bs.TOKN] and raw[1] == 41 and raw[2] == 9  # length 41: count, 40 bytes
    assert int.from_bytes(raw[-2:], "little") == binascii.crc_hqx(raw[:-2], 0xFFFF)


@BOTH
def test_header_rewrite_in_place(version):
    f = io.BytesIO()
    w = bs.Writer(f, version)
    w.chunk(bs.HEAD, header(frames=0).pack(w.compact))
    w.chunk(bs.KEYF, bs.pack_keyframe(0, b"k", w.compact))
    w.rewrite_header(header(frames=1))
    w.close(1)
    assert w.tell() == len(f.getvalue())
    chunks = parse(f.getvalue())
    assert bs.Header.unpack(chunks[0].payload, w.compact).frames == 1 and chunks[-1].ctype == bs.END


@BOTH
@pytest.mark.parametrize("pos", [10, 30, 80, 110])
def test_flipped_byte_detected_and_chunk_named(pos, version):
    data = bytearray(make_file(version=version))
    data[pos] ^= 0x40
    with pytest.raises(BitstreamError) as e:
        parse(bytes(data))
    assert "chunk" in str(e.value)


@BOTH
def test_flipped_byte_in_token_chunk_names_it(version):
    data = make_file(version=version)
    tok = parse(data)[2]
    bad = bytearray(data)
    bad[tok.offset + 20] ^= 1
    with pytest.raises(BitstreamError, match=r"CRC mismatch in chunk 2 \(TOKN"):
        parse(bytes(bad))


@BOTH
@pytest.mark.parametrize("cut", [2, 3, 5, 7, 20, 100])
def test_truncation_detected(cut, version):
    data = make_file(version=version)
    with pytest.raises(BitstreamError, match="truncated|bad magic"):
        parse(data[:len(data) - cut] if cut < len(data) else data[:cut])


@BOTH
def test_truncated_at_chunk_boundary_without_end(version):
    data = make_file(version=version)
    with pytest.raises(BitstreamError, match="without an END"):
        parse(data[:parse(data)[-1].offset])


def test_unknown_version_and_magic():
    data = bytearray(make_file(version=OLD))
    data[4] = 8
    with pytest.raises(BitstreamError, match="unsupported .imf version 8.0"):
        parse(bytes(data))
    for major in (1, 3, 4, 5, 6):  # keyframes start segments, decoder offsets, streams, inter keyframes, holds
        data[4] = major
        parse(bytes(data))
    with pytest.raises(BitstreamError, match="bad magic"):
        parse(b"RIFF" + bytes(data[4:]))


def test_hostile_length_does_not_allocate_or_hang():
    body = bs.HEAD + (0xFFFFFFF0).to_bytes(4, "little")
    data = bs.MAGIC + bytes(OLD) + body + zlib.crc32(body).to_bytes(4, "little")
    with pytest.raises(BitstreamError):
        parse(data)
    body = bytes([1]) + bs.pack_varint(bs.MAX_CHUNK - 1)
    with pytest.raises(BitstreamError, match="runs past the end"):
        parse(bs.MAGIC + bytes(NEW) + body + binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "little"))


@pytest.mark.parametrize("length, message", [
    (b"\x80\x80\x80\x80\x01", "longer than 4 bytes"),  # five length bytes
    (b"\x85\x00", "shortest form"),                     # 5 written in two bytes
    (b"\x85", "cut short"),                             # the file ends inside the length
])
def test_hostile_compact_lengths_are_refused(length, message):
    body = bytes([1]) + length
    with pytest.raises(BitstreamError, match=message):
        parse(bs.MAGIC + bytes(NEW) + body)


def test_unknown_compact_type_is_refused_after_its_crc():
    data = make_file()
    end = parse(data)[-1]
    body = bytes([9]) + bs.pack_varint(1) + b"x"
    bad = data[:end.offset] + body + binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "little") + data[end.offset:]
    with pytest.raises(BitstreamError, match=r"unknown chunk type in chunk 3 \(#9"):
        parse(bad)


@pytest.mark.parametrize("payload", [b"", b"\x80", b"\x05\x00", b"\x85\x00", b"\x80\x80\x80\x80\x80\x01"])
def test_compact_counts_that_are_not_one_varint_are_refused(payload):
    with pytest.raises(BitstreamError):
        bs.unpack_hold(payload, True)
    with pytest.raises(BitstreamError):
        bs.unpack_end(payload, NEW[0])


def test_compact_runs_are_bounded():
    with pytest.raises(BitstreamError, match="no frames"):
        bs.unpack_tokens(bs.pack_varint(0) + b"t", True)
    with pytest.raises(BitstreamError, match="too many frames"):
        bs.unpack_tokens(bs.pack_varint(bs.MAX_RUN + 1) + b"t", True)
    with pytest.raises(BitstreamError, match="too many frames"):
        bs.unpack_hold(bs.pack_varint(bs.MAX_RUN + 1), True)
    assert bs.unpack_hold(bs.pack_varint(300), True, nxt=7) == (7, 300)


def test_varints_round_trip():
    for n in (0, 1, 127, 128, 300, 16383, 16384, 2 ** 21 - 1, 2 ** 28 - 1):
        data = bs.pack_varint(n)
        assert bs.read_varint(data + b"rest") == (n, len(data))
        assert len(data) == max(1, -(-n.bit_length() // 7))


@BOTH
def test_header_sanity_checks(version):
    small = bs.compact(version)
    with pytest.raises(BitstreamError):
        bs.Header.unpack(header(width=0).pack(small), small)
    with pytest.raises(BitstreamError):
        bs.Header.unpack(header().pack(small)[:-1], small)
    with pytest.raises(BitstreamError):
        bs.Header.unpack(header(dm=0).pack(small), small)
