"""bitstream_spec.md matches the code: a reader built from the spec's field tables parses real files."""
import math
import re
import struct
import zlib
from pathlib import Path

import constriction
import numpy as np
import pytest
import zfpy

from imfcodec.codec import DecodeOptions, EncodeOptions, decode_file, decode_tokens, encode_file
from imfcodec.decoder import repeat_keyframes
from imfcodec.model.weights import file_id
from tests.conftest import reframe

SPEC = Path(__file__).resolve().parents[1] / "bitstream_spec.md"
SIZES = {"u8": "B", "i8": "b", "u16": "H", "u32": "I", "f32": "f"}


def spec_varint(data: bytes, at: int) -> tuple[int, int]:
    """The spec's varint: 7 bits a byte, low group first, high bit on every byte but the last."""
    n = shift = 0
    while True:
        b = data[at]
        n, at, shift = n | (b & 0x7F) << shift, at + 1, shift + 7
        if not b & 0x80:
            return n, at


def spec_table(title: str, major: int = 6) -> list[tuple[str, str]]:
    """(field, type) rows of the table under the '## <title>' heading: its first, or for a 7.x file the one
    after a paragraph that says "In 7.x" where the section has one."""
    text = SPEC.read_text()
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    parts = [p.strip("\n") for p in section.split("\n\n")]
    tables = [i for i, p in enumerate(parts) if p.startswith("|")]
    seven = [i for i in tables if i and "In 7.x" in parts[i - 1]]
    table = parts[seven[0] if major >= 7 and seven else tables[0]]
    lines = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in table.splitlines()]
    cols = lines[0]
    fi, ti = cols.index("field"), cols.index("type")
    return [(r[fi], r[ti]) for r in lines[2:]]


def read_fields(rows, data: bytes, lengths: dict | None = None) -> dict:
    out, at = {}, 0
    for name, typ in rows:
        if typ == "varint":
            out[name], at = spec_varint(data, at)
        elif typ in SIZES:
            (out[name],) = struct.unpack_from("<" + SIZES[typ], data, at)
            at += struct.calcsize(SIZES[typ])
        else:
            m = re.fullmatch(r"bytes\[(\w+)\]", typ)
            n = len(data) - at if m.group(1) == "rest" else (int(m.group(1)) if m.group(1).isdigit()
                                                               else out[m.group(1)])
            out[name] = data[at:at + n]
            at += n
    assert at == len(data), "payload longer than the spec's fields"
    return out


def spec_chunks(data: bytes):
    """(type name, payload) of every chunk, framed as the spec's "Every chunk" table for the file's version."""
    layout = spec_table("File layout")
    assert layout[:3] == [("magic", "bytes[4]"), ("major version", "u8"), ("minor version", "u8")]
    assert data[:4] == b"IMFC" and data[4] in (2, 3, 4, 5, 6, 7)
    seven = data[4] >= 7
    text = SPEC.read_text().split("Every chunk, 7.x:" if seven else "Every chunk, 1.x to 6.x:", 1)[1]
    text = text.split("\n\n", 2)[1]
    if seven:
        assert "| type | u8 | 1 `HEAD`, 2 `KEYF`, 3 `TOKN`, 4 `ADPT`, 5 `HOLD`, 6 `END `" in text
        assert "| length | varint |" in text and "| crc | u16 | CRC-16/CCITT-FALSE" in text
    else:
        assert "| type | bytes[4] |" in text and "| length | u32 |" in text and "| crc | u32 |" in text
    names = [b"HEAD", b"KEYF", b"TOKN", b"ADPT", b"HOLD", b"END "]
    at = 6
    while True:
        if seven:
            ctype = names[data[at] - 1]
            length, start = spec_varint(data, at + 1)
            (crc,) = struct.unpack_from("<H", data, start + length)
            assert crc == crc16_ccitt_false(data[at:start + length])
            end = start + length + 2
        else:
            ctype, (length,), start = data[at:at + 4], struct.unpack_from("<I", data, at + 4), at + 8
            (crc,) = struct.unpack_from("<I", data, start + length)
            assert crc == zlib.crc32(data[at:start + length])
            end = start + length + 4
        yield ctype, data[start:start + length]
        at = end
        if ctype == b"END ":
            assert at == len(data)
            return


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16 with polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR, bit by bit."""
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


@pytest.mark.parametrize("major", [7, 6])
def test_spec_reader_parses_encoded_file(tmp_path, clip, tiny, major):
    """A file as imfcodec writes it (7.0), and the same chunks framed as 6.0."""
    out = tmp_path / "a.imf"
    r = encode_file(str(clip), str(out), EncodeOptions(weights=str(tiny), allow_untrained=True, chunk_frames=5,
                                                       zfp_rate=6.0, keep_tokens=True, keyframe_psnr=0,
                                                       keyframe_candidates=1, adapt_steps=0))
    data = out.read_bytes()
    assert data[4:6] == bytes([7, 0])
    if major == 6:
        data = reframe(data, 6, tiny)
    chunks = list(spec_chunks(data))
    assert [c[0] for c in chunks] == [b"HEAD", b"KEYF", b"TOKN", b"TOKN", b"TOKN", b"END "]
    head = read_fields(spec_table("HEAD payload", major), chunks[0][1])
    assert head["model_id"] == file_id(str(tiny))[:8 if major == 7 else 32]
    assert head["frames"] == 12 and head["fps_num"] == 30000 and head["fps_den"] == 1001
    assert (head["src_width"], head["src_height"], head["width"], head["height"]) == (80, 60, 64, 64)
    assert head["dm"] == 16 and head["token_codec"] == 0 and head["resize"] == 1
    (rate,) = struct.unpack("<f", head["token_params"])
    assert rate == 6.0
    key = read_fields(spec_table("KEYF payload", major), chunks[1][1])
    assert key["frame"] == 5 and len(key["data"]) == r.bytes_keyframe  # the middle of the 12 frames
    toks, nxt = [], 0
    for _, payload in chunks[2:-1]:
        t = read_fields(spec_table("TOKN payload", major), payload)
        assert t.get("first_frame", nxt) == nxt and (nxt > 5 or nxt + t["count"] <= 5)  # tokens skip the keyframe
        nxt += t["count"] + (nxt + t["count"] == 5)
        arr = zfpy._decompress(t["data"], zfpy.type_float, [t["count"], head["dm"]], rate=rate)
        toks.append(np.asarray(arr).reshape(t["count"], head["dm"]))
    assert nxt == 12 and read_fields(spec_table("END payload", major), chunks[-1][1])["frames"] == 12
    spec_tokens = np.concatenate(toks)
    assert np.array_equal(spec_tokens, r.tokens)
    assert np.array_equal(np.delete(decode_tokens(str(out)), 5, axis=0), spec_tokens)


def spec_rice(data: bytes, count: int, k: int) -> list[int]:
    """The ADPT offsets as the spec's prose describes them, decoded bit by bit."""
    bits = [(b >> (7 - i)) & 1 for b in data for i in range(8)]
    out, at = [], 0
    for _ in range(count):
        quot = 0
        while bits[at]:
            quot, at = quot + 1, at + 1
        at += 1
        z = quot
        for b in bits[at:at + k]:
            z = z << 1 | b
        at += k
        out.append(z // 2 if z % 2 == 0 else -(z + 1) // 2)
    assert len(bits) - at < 8 and not any(bits[at:])
    return out


def test_spec_reader_parses_adapt_chunk(tmp_path, clip, tiny):
    from imfcodec import bitstream as bs
    out = tmp_path / "a.imf"
    encode_file(str(clip), str(out), EncodeOptions(weights=str(tiny), allow_untrained=True, keyframe_psnr=0,
                                                   keyframe_candidates=1, refine_steps=0, adapt_steps=3,
                                                   adapt_step=0.001))
    data = out.read_bytes()
    assert data[4:6] == bytes([7, 0])
    chunks = list(spec_chunks(data))
    assert [c[0] for c in chunks][:3] == [b"HEAD", b"ADPT", b"KEYF"]
    a = read_fields(spec_table("ADPT payload"), chunks[1][1])
    assert a["scheme"] == 1 and a["step"] == np.float32(0.001) and a["count"] == 3 * 32  # TINY: flow_hidden 32
    q = spec_rice(a["offsets"], a["count"], a["rice_k"])
    assert q == bs.unpack_adapt(chunks[1][1])[1].tolist() and any(q)


def spec_predictive_tokens(params: dict, dm: int, chunks: list[bytes], n: list[int]) -> np.ndarray:
    """A segment's predictive TOKN data decoded as the spec's prose says, in plain Python integers (the
    frequency rows are the learned codec's, pinned by tests/test_entropy_learned.py)."""
    from entropy.laplace import laplace_rows
    mant = (16, 19, 23, 27)
    s = [mant[i % 4] << (i // 4) for i in range(41)]
    thresholds = [math.isqrt(a * b) for a, b in zip(s, s[1:])]
    cat, uni = constriction.stream.model.Categorical(perfect=False), constriction.stream.model.Uniform()
    hist, S, out, M, qmax = [], [256] * dm, [], params["momentum"], 2 ** 20 - 1
    for data, count in zip(chunks, n):
        dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))
        for _ in range(count):
            if not hist:
                m = [0] * dm
            elif len(hist) == 1:
                m = [32 * v for v in hist[-1]]
            else:
                m = [max(-32 * qmax, min(32 * qmax, 32 * a + 4 * M * (a - b))) for a, b in zip(hist[-1], hist[-2])]
            syms, a = [], []
            for d in range(dm):
                if not hist:
                    j = params["first_scale"]
                else:
                    b = S[d] * (512 + 256 * sum(a)) // (512 + sum(S[:d]))
                    j = max(6, min(40, sum(t <= b for t in thresholds)))
                syms.append(int(dec.decode(cat, laplace_rows(np.array([j]), np.array([m[d] & 31])))[0]))
                a.append(min(abs(syms[-1] - 129), 129))
            q = []
            for d, sym in enumerate(syms):
                r = sym - 129
                if sym in (0, 258):
                    length = int(dec.decode(uni, np.array([32], np.int32))[0])
                    e = length if length < 2 else (1 << (length - 1)) + int(
                        dec.decode(uni, np.array([1 << (length - 1)], np.int32))[0])
                    r = -(129 + e) if sym == 0 else 129 + e
                q.append((m[d] >> 5) + r)
            if hist:
                S = [x + ((256 * y - x) >> 2) for x, y in zip(S, a)]
            hist = (hist + [q])[-2:]
            out.append(q)
    return np.array(out, np.float32) * np.float32(params["qstep"])


def test_spec_reader_decodes_predictive_tokens(tmp_path, clip, tiny):
    """A start-keyed file with two segments: the spec's header table and its prose decode the tokens."""
    out = tmp_path / "p.imf"
    r = encode_file(str(clip), str(out), EncodeOptions(weights=str(tiny), allow_untrained=True, chunk_frames=4,
                                                       token_codec="predictive", qstep=0.004, keep_tokens=True,
                                                       keyframe_position="start", keyframe_interval=6,
                                                       keyframe_psnr=0, refine_steps=0, adapt_steps=0))
    chunks = list(spec_chunks(out.read_bytes()))
    assert [c[0] for c in chunks] == [b"HEAD"] + [b"KEYF", b"TOKN", b"TOKN"] * 2 + [b"END "]
    head = read_fields(spec_table("HEAD payload", 7), chunks[0][1])
    assert head["token_codec"] == 2
    params = read_fields(spec_table("Predictive token stream (`token_codec` = 2, `predictive`)"),
                         head["token_params"])
    assert params["version"] == 1 and params["qstep"] == np.float32(0.004) and params["momentum"] == 0
    toks = []
    for seg in (chunks[1:4], chunks[4:7]):
        t = [read_fields(spec_table("TOKN payload", 7), c[1]) for c in seg[1:]]
        toks.append(spec_predictive_tokens(params, head["dm"], [x["data"] for x in t], [x["count"] for x in t]))
    assert np.array_equal(np.concatenate(toks), r.tokens) and np.abs(r.tokens).max() > 0
    decoded = decode_tokens(str(out))
    assert np.array_equal(decoded[~np.isnan(decoded[:, 0])], r.tokens)  # and so does the codec's own decoder


def test_spec_reader_parses_a_stream(tmp_path, clip, tiny):
    """`encode -o -` writes a stream: the header does not know the frame count, the END chunk does, and the
    realtime preset's token chunks hold a batch each. Its keyframes are hevc-inter's (without holding frames:
    the untrained network would have every one held)."""
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-m", "cli.main", "encode", str(clip), "-o", "-", "--preset", "realtime",
                        "--weights", str(tiny), "--allow-untrained", "--keyframe-psnr", "0", "--batch", "4", "-q",
                        "--no-hold"],
                       capture_output=True)
    assert p.returncode == 0, p.stderr
    data = p.stdout
    assert data[4:6] == bytes([7, 0])
    chunks = list(spec_chunks(data))
    assert [c[0] for c in chunks] == [b"HEAD", b"KEYF", b"TOKN", b"TOKN", b"TOKN", b"END "]
    head = read_fields(spec_table("HEAD payload", 7), chunks[0][1])
    assert head["frames"] == 0xFFFFFFFF and head["keyframe_codec"] == 3
    assert read_fields(spec_table("END payload", 7), chunks[-1][1])["frames"] == 12
    counts = [read_fields(spec_table("TOKN payload", 7), c[1])["count"] for c in chunks[2:-1]]
    assert counts == [4, 4, 3]


def test_spec_reader_parses_held_frames(tmp_path, clip, tiny):
    """--hold in low delay: the untrained network rebuilds noise, so every frame but the keyframes is held
    (the keyframe shows it better); HOLD chunks carry the runs, and they decode as the keyframes."""
    out = tmp_path / "h.imf"
    r = encode_file(str(clip), str(out), EncodeOptions(weights=str(tiny), allow_untrained=True, keyframe_psnr=0,
                                                       keyframe_position="start", keyframe_interval=5, hold=True,
                                                       refine_steps=0, keep_tokens=True, chunk_frames=4))
    data = out.read_bytes()
    assert data[4] == 7
    chunks = list(spec_chunks(data))
    kinds = [c[0] for c in chunks]
    assert b"TOKN" not in kinds and r.bytes_tokens == 0
    held, keys, nxt = [], [], 0
    for ctype, payload in chunks:
        if ctype == b"HOLD":
            h = read_fields(spec_table("HOLD payload", 7), payload)
            held += range(nxt, nxt + h["count"])
            nxt += h["count"]
        elif ctype == b"KEYF":
            keys.append(read_fields(spec_table("KEYF payload", 7), payload)["frame"])
            nxt += keys[-1] == nxt
    assert keys == [0, 5, 10] and sorted(held + keys) == list(range(12))
    rep = repeat_keyframes(str(out))
    dec = np.stack(decode_file(str(out), None, DecodeOptions(weights=str(tiny), allow_untrained=True),
                               keep_frames=True).frames_rgb)
    assert np.array_equal(dec, rep) and np.array_equal(dec[1], dec[0])
    assert np.isnan(decode_tokens(str(out))).all() and np.isnan(r.tokens).all()
