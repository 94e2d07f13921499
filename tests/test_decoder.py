"""The decoder: frames from cached references, tokens as the encoder coded them, the chunk order rules, and
damaged files (every one refused in one line or decoded to its header's frame count)."""
import io
import os
import time

import numpy as np
import pytest
import torch

from imfcodec import bitstream as bs
from imfcodec.codec import decode_file, decode_tokens, encode_file, read_info
from imfcodec.decoder import _Ordered
from imfcodec.errors import BitstreamError, UserError
from imfcodec.model.weights import load_weights

from imfcodec.reader import Segments
from tests.conftest import dec_opts, enc_opts, reframe


def test_decoder_tokens_equal_encoder_dequantized_tokens(encoded):
    imf, r = encoded
    dec = decode_tokens(str(imf))
    key = np.isnan(dec).all(1)
    assert key.nonzero()[0].tolist() == [5]  # one segment of 12 frames, its keyframe in the middle
    assert dec[~key].tobytes() == r.tokens.tobytes()


def test_decoded_frames_use_cached_reference(encoded, tiny):
    """The codec path (reference cached once, tokens batched) equals the plain forward pass."""
    imf, r = encoded
    res = decode_file(str(imf), None, dec_opts(tiny, batch=3), keep_frames=True)
    lm = load_weights(str(tiny))
    key = torch.from_numpy(res.frames_rgb[5]).permute(2, 0, 1)[None].float() / 255  # the middle keyframe
    with torch.no_grad():
        ref = lm.model.reference(key)
        direct = lm.model.synthesize(torch.from_numpy(r.tokens[:3]), ref)
    got = np.stack(res.frames_rgb[0:3]).astype(np.float32) / 255
    want = direct.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert np.abs(got - want).max() <= 1 / 255 + 1e-6


def test_info_json_keys(encoded):
    imf, r = encoded
    info = read_info(str(imf))
    for k in ("frames", "width", "height", "fps", "dm", "token_codec", "bytes_total", "bytes_keyframe",
              "bytes_tokens", "bpp_total", "bpp_tokens"):
        assert k in info
    assert info["bytes_total"] == os.path.getsize(imf)
    assert info["bytes_keyframe"] == r.bytes_keyframe and info["bytes_tokens"] == r.bytes_tokens
    assert info["bpp_total"] == pytest.approx(info["bytes_total"] * 8 / (12 * 64 * 64))
    assert info["bpp_tokens"] == pytest.approx(r.bytes_tokens * 8 / (12 * 64 * 64))


def test_api_errors_are_bitstream_errors(tmp_path, encoded, tiny):
    imf, _ = encoded
    bad = tmp_path / "b.imf"
    bad.write_bytes(imf.read_bytes()[:20])
    with pytest.raises(BitstreamError):
        decode_file(str(bad), None, dec_opts(tiny))


@pytest.mark.parametrize("major", [7, 6])
def test_keyframe_order_rules(tmp_path, encoded, tiny, major):
    """A segment's keyframe chunk comes first and may serve frames before its own; a file that breaks the
    order (a keyframe before the last one's frame was reached, one past the end, tokens running over a
    keyframe; before 7.x, tokens that say they start elsewhere) is refused, naming the chunk."""
    imf, _ = encoded
    data = reframe(imf.read_bytes(), major, tiny)
    small = major >= 7
    head, key, *toks, end = list(bs.read_chunks(io.BytesIO(data), len(data)))
    assert bs.unpack_keyframe(key.payload, small)[0] == 5 and bs.unpack_tokens(toks[0].payload, small)[:2] == (0, 4)

    def rebuilt(*chunks):
        path = tmp_path / "r.imf"
        with open(path, "wb") as f:
            w = bs.Writer(f, (major, 0))
            for ctype, payload in chunks:
                w.chunk(ctype, payload)
            w.chunk(bs.END, end.payload)
        return str(path)

    c = [(x.ctype, x.payload) for x in (head, key, *toks)]
    assert np.isnan(decode_tokens(rebuilt(*c))[5]).all()
    _, kdata = bs.unpack_keyframe(key.payload, small)
    cases = {
        "a keyframe before frame 5": c[:2] + [c[1]] + c[2:],
        "keyframe for frame 12, expected 0 to 11": [c[0], (bs.KEYF, bs.pack_keyframe(12, kdata, small))] + c[2:],
        "tokens run past the keyframe at frame 3": [c[0], (bs.KEYF, bs.pack_keyframe(3, kdata, small))] + c[2:],
    }
    if not small:
        cases["tokens for frame 0, expected 1"] = [c[0], (bs.KEYF, bs.pack_keyframe(0, kdata))] + c[2:]
    for message, chunks in cases.items():
        with pytest.raises(BitstreamError, match=message):
            decode_tokens(rebuilt(*chunks))


def outcome(path, tiny) -> str:
    """'refused' (a one-line user error) or 'decoded' (to the frame count its header states)."""
    try:
        frames = decode_file(str(path), None, dec_opts(tiny)).frames
    except UserError as e:
        assert "\n" not in str(e) and str(e)
        return "refused"
    data = path.read_bytes()
    header = bs.Header.unpack(next(bs.read_chunks(io.BytesIO(data), len(data))).payload, bs.compact((data[4], 0)))
    assert frames == header.frames
    return "decoded"


def with_payload(data: bytes, c: bs.Chunk, payload: bytes) -> bytes:
    """data with chunk c's payload replaced and its CRC recomputed."""
    return data[:c.offset] + bs.frame_chunk(c.ctype, payload, bs.compact(c.version)) + data[c.end:]


def test_damaged_files_are_refused_or_decode_to_their_frame_count(encoded, tiny, tmp_path):
    """Truncations and bit flips are all refused (CRC, END); random damage behind recomputed CRCs is refused
    or decodes, and either outcome keeps its promise."""
    imf, _ = encoded
    data = imf.read_bytes()
    chunks = list(bs.read_chunks(io.BytesIO(data), len(data)))
    rng = np.random.default_rng(0)
    counts = {"refused": 0, "decoded": 0}
    damaged = [data[:int(n)] for n in rng.integers(0, len(data), 10)]
    for at in rng.integers(6, len(data), 10):
        flipped = bytearray(data)
        flipped[at] ^= 1 << int(rng.integers(8))
        damaged.append(bytes(flipped))
    for i, d in enumerate(damaged):
        path = tmp_path / f"plain{i}.imf"
        path.write_bytes(d)
        assert outcome(path, tiny) == "refused"
    for trial in range(30):
        c = chunks[trial % (len(chunks) - 1)]
        payload = bytearray(c.payload)
        for _ in range(1 + trial % 4):
            payload[rng.integers(len(payload))] = rng.integers(256)
        path = tmp_path / f"fuzz{trial}.imf"
        path.write_bytes(with_payload(data, c, bytes(payload)))
        counts[outcome(path, tiny)] += 1
    assert sum(counts.values()) == 30 and counts["refused"] > 0 and counts["decoded"] > 0, counts


def test_a_file_finds_the_zoo_weights_it_was_made_with(tmp_path, clip, monkeypatch):
    """Without --weights the decoder takes the installed weights whose id the header names, not only the
    current release's; with none installed it says so in one line."""
    from imfcodec import runtime
    from imfcodec.codec import DecodeOptions, encode_file
    from imfcodec.model.weights import find_shipped
    from tests.conftest import enc_opts, tiny_weights
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    old = tiny_weights(zoo / "imf-dm16-64-r1.safetensors", seed=3, steps=5)
    tiny_weights(zoo / "imf-dm16-64.safetensors", seed=4, steps=5)
    out = tmp_path / "old.imf"
    encode_file(str(clip), str(out), enc_opts(old))
    want = decode_file(str(out), None, dec_opts(old), keep_frames=True).frames_rgb
    monkeypatch.setattr(runtime, "shipped_path", lambda dm, size=256: str(zoo / "imf-dm16-64.safetensors"))
    monkeypatch.setattr(runtime, "find_shipped", lambda model_id: find_shipped(model_id, str(zoo)))
    got = decode_file(str(out), None, DecodeOptions(), keep_frames=True).frames_rgb
    assert all(np.array_equal(a, b) for a, b in zip(want, got)) and len(got) == len(want)
    os.remove(old)
    with pytest.raises(UserError, match="no installed weights have its id"):
        decode_file(str(out), None, DecodeOptions(), keep_frames=True)


@pytest.mark.parametrize("kw, kinds", [
    (dict(keyframe_position="start", keyframe_interval=5, refine_steps=0), {"key", "tokens"}),
    (dict(keyframe_position="start", keyframe_interval=5, hold=True, refine_steps=0), {"key", "hold"}),
    (dict(adapt_steps=2, adapt_step=0.001), {"key", "tokens", "adapt"})], ids=["tokens", "held", "offsets"])
def test_decoder_workers_give_the_frames_one_thread_gives(tmp_path, clip, tiny, kw, kinds):
    """Batches synthesised at once on worker threads come out in order, identical to one thread's: around
    keyframes, held frames and decoder offsets (which wait for every batch before them)."""
    out = tmp_path / "a.imf"
    encode_file(str(clip), str(out), enc_opts(tiny, **kw))
    assert kinds <= {kind for kind, _, _ in Segments(str(out))}
    frames = [np.stack(decode_file(str(out), None, dec_opts(tiny, batch=2, synthesis=s, workers=n),
                                   keep_frames=True).frames_rgb) for s in ("fast", "exact") for n in (1, 3)]
    assert frames[0].tobytes() == frames[1].tobytes() and frames[2].tobytes() == frames[3].tobytes()
    assert len(frames[0]) == 12


class _Slow:
    """A synthesis whose earlier batches take longest: workers finish them out of order."""

    def synthesize(self, tokens, ref):
        time.sleep(0.05 * float(tokens[0, 0]))
        return tokens[:, :1, None, None].expand(-1, 3, 2, 2) / 10


def test_ordered_emits_in_file_order_and_raises_what_emitting_raised():
    got = []
    out = _Ordered(lambda images: got.extend(int(im[0, 0, 0]) for im in images), 3)
    try:
        for i in range(4):
            out.synthesize(_Slow(), torch.full((1, 4), float(4 - i)), None)  # 4 / 10 of white, then 3 / 10, ...
            out.put([np.full((2, 2, 3), 250 + i, np.uint8)])
        out.drain()
    finally:
        out.close()
    assert got == [102, 250, 76, 251, 51, 252, 26, 253]

    def fail(images):
        raise BrokenPipeError("reader went away")
    out = _Ordered(fail, 2)
    try:
        with pytest.raises(BrokenPipeError):
            for i in range(4):
                out.synthesize(_Slow(), torch.ones(1, 4), None)
            out.drain()
    finally:
        out.close()
