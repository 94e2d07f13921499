import io
import zlib
from fractions import Fraction

import pytest

from imfcodec import bitstream as bs
from imfcodec.errors import BitstreamError


def header(**kw):
    base = dict(frames=10, fps=Fraction(30000, 1001), src_width=640, src_height=360, width=256, height=256,
                resize=1, dm=32, model_id=bytes(range(32)), keyframe_codec=0, keyframe_quality=32,
                keyframe_interval=0, token_codec=0, token_params=b"\x00\x00\x00A")
    base.update(kw)
    return bs.Header(**base)


def make_file(h=None) -> bytes:
    f = io.BytesIO()
    w = bs.Writer(f)
    w.chunk(bs.HEAD, (h or header()).pack())
    w.chunk(bs.KEYF, bs.pack_keyframe(0, b"keyframe-bytes"))
    w.chunk(bs.TOKN, bs.pack_tokens(1, 9, b"t" * 40))
    w.close()
    return f.getvalue()


def parse(data: bytes):
    return list(bs.read_chunks(io.BytesIO(data), len(data)))


def test_write_read_round_trip():
    data = make_file()
    chunks = parse(data)
    assert [c.ctype for c in chunks] == [bs.HEAD, bs.KEYF, bs.TOKN, bs.END]
    assert bs.Header.unpack(chunks[0].payload) == header()
    assert bs.unpack_keyframe(chunks[1].payload) == (0, b"keyframe-bytes")
    assert bs.unpack_tokens(chunks[2].payload) == (1, 9, b"t" * 40)


def test_header_rewrite_in_place():
    f = io.BytesIO()
    w = bs.Writer(f)
    w.chunk(bs.HEAD, header(frames=0).pack())
    w.chunk(bs.KEYF, bs.pack_keyframe(0, b"k"))
    w.rewrite_header(header(frames=1))
    w.close()
    chunks = parse(f.getvalue())
    assert bs.Header.unpack(chunks[0].payload).frames == 1 and chunks[-1].ctype == bs.END


@pytest.mark.parametrize("pos", [10, 30, 80, 120])
def test_flipped_byte_detected_and_chunk_named(pos):
    data = bytearray(make_file())
    data[pos] ^= 0x40
    with pytest.raises(BitstreamError) as e:
        parse(bytes(data))
    assert "chunk" in str(e.value)


def test_flipped_byte_in_token_chunk_names_it():
    data = make_file()
    chunks = parse(data)
    tok = chunks[2]
    bad = bytearray(data)
    bad[tok.offset + 20] ^= 1
    with pytest.raises(BitstreamError, match=r"CRC mismatch in chunk 2 \(TOKN"):
        parse(bytes(bad))


@pytest.mark.parametrize("cut", [3, 5, 7, 20, 100])
def test_truncation_detected(cut):
    data = make_file()
    with pytest.raises(BitstreamError, match="truncated|bad magic"):
        parse(data[:len(data) - cut] if cut < len(data) else data[:cut])


def test_truncated_at_chunk_boundary_without_end():
    data = make_file()
    with pytest.raises(BitstreamError, match="without an END"):
        parse(data[:-12])  # the END chunk is 12 bytes


def test_unknown_version_and_magic():
    data = bytearray(make_file())
    data[4] = 7
    with pytest.raises(BitstreamError, match="unsupported .imf version 7.0"):
        parse(bytes(data))
    for major in (1, 3, 4, 5, 6):  # keyframes start segments, decoder offsets, streams, inter keyframes, holds
        data[4] = major
        parse(bytes(data))
    with pytest.raises(BitstreamError, match="bad magic"):
        parse(b"RIFF" + bytes(data[4:]))


def test_hostile_length_does_not_allocate_or_hang():
    body = bs.HEAD + (0xFFFFFFF0).to_bytes(4, "little")
    data = bs.MAGIC + bytes(bs.VERSION) + body + zlib.crc32(body).to_bytes(4, "little")
    with pytest.raises(BitstreamError):
        parse(data)


def test_header_sanity_checks():
    with pytest.raises(BitstreamError):
        bs.Header.unpack(header(width=0).pack())
    with pytest.raises(BitstreamError):
        bs.Header.unpack(header().pack()[:-1])
    with pytest.raises(BitstreamError):
        bs.Header.unpack(header(dm=0).pack())
