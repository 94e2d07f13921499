"""Decoder adaptation: the ADPT code, fitting offsets, and files that carry them."""
import struct

import numpy as np
import pytest
import torch

from imfcodec import adapt
from imfcodec import bitstream as bs
from imfcodec.codec import DecodeOptions, EncodeOptions, decode_file, decode_tokens, encode_file, read_info
from imfcodec.errors import BitstreamError
from imfcodec.model import IMF, TINY
from tests.conftest import with_version


@pytest.mark.parametrize("scale", [0.0, 0.4, 3.0, 300.0])
def test_rice_code_round_trips(scale):
    q = np.rint(np.random.default_rng(0).laplace(0, scale, 200) if scale else np.zeros(200)).astype(np.int64)
    scheme, back, step = bs.unpack_adapt(bs.pack_adapt(q, 0.01))
    assert scheme == adapt.FLOW_BIASES and np.array_equal(back, q) and step == np.float32(0.01)


def test_rice_code_is_near_the_entropy():
    q = np.rint(np.random.default_rng(1).laplace(0, 4.0, 1536)).astype(np.int64)
    _, counts = np.unique(q, return_counts=True)
    p = counts / counts.sum()
    entropy_bytes = -(counts * np.log2(p)).sum() / 8
    assert len(bs.pack_adapt(q, 0.01)) < 1.1 * entropy_bytes + 16


def test_dequantize_is_float32_product():
    q = np.array([-3, 0, 7], np.int64)
    assert adapt.dequantize(q, 0.01).tolist() == [np.float32(-3) * np.float32(0.01), 0.0,
                                                  np.float32(7) * np.float32(0.01)]


def hostile_payloads():
    good = bs.pack_adapt(np.arange(-20, 20), 0.01)
    head = struct.calcsize("<BIfB")
    yield good[:3]                                                   # too short
    yield bytes([9]) + good[1:]                                      # unknown scheme
    for step in (float("nan"), 0.0, -1.0, 2.0, float("inf")):
        yield good[:5] + struct.pack("<f", step) + good[9:]          # impossible step
    yield good[:9] + bytes([16]) + good[10:]                         # k too large
    yield good[:-1]                                                  # truncated
    yield good + b"\x00"                                             # data after the offsets
    one = bs.pack_adapt(np.zeros(1, np.int64), 0.01)                   # one bit of data, seven of padding
    assert bs.unpack_adapt(one)[1].tolist() == [0] and one[-1] == 0
    yield one[:-1] + b"\x01"                                         # padding not zero
    yield struct.pack("<BIfB", 1, 4, 0.01, 0) + b"\xff" * 40         # unary run too long
    yield struct.pack("<BIfB", 1, 1 << 30, 0.01, 0) + b"\x00" * 64   # count far past the payload
    yield struct.pack("<BIfB", 1, 1 << 20, 0.01, 0) + b"\x00" * (1 << 17)  # count above any scheme
    yield good[:head]                                                # no offsets at all


@pytest.mark.parametrize("payload", list(hostile_payloads()))
def test_hostile_payloads_are_bitstream_errors(payload):
    with pytest.raises(BitstreamError):
        bs.unpack_adapt(payload)


def test_random_payloads_never_crash():
    rng = np.random.default_rng(2)
    for _ in range(300):
        data = struct.pack("<BIfB", 1, int(rng.integers(0, 300)), 0.01, int(rng.integers(0, 16))) + \
            rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
        try:
            bs.unpack_adapt(data)
        except BitstreamError:
            pass


def test_fit_lowers_the_loss_and_adaptable_restores_the_weights():
    torch.manual_seed(0)
    model = IMF(TINY).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frames = torch.rand(6, 3, 64, 64)
    with torch.no_grad():
        refs = [model.reference(frames[:1]), model.reference(frames[3:4])]
        tokens = model.encode_tokens(frames)
    which = [0, 0, 0, 1, 1, 1]

    def loss() -> float:
        with torch.no_grad():
            return adapt.mse_msssim(model.synthesize(tokens, adapt.gather(refs, which)), frames).mean().item()

    start = loss()
    with adapt.adaptable(model) as a:
        offsets = a.fit(model, refs, which, tokens, frames, steps=15, lr=0.05, batch=6)
        assert offsets.shape == (adapt.count(model),) and np.abs(offsets).max() > 0
        assert loss() < start
        a.set(None)
        assert loss() == pytest.approx(start)
        a.set(offsets)
        assert loss() < start
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any(p.requires_grad is False for p in model.parameters())


# ---- files --------------------------------------------------------------------------------------------

def opts(tiny, **kw):
    kw.setdefault("adapt_steps", 0)
    return EncodeOptions(weights=str(tiny), allow_untrained=True, keyframe_psnr=0, keyframe_candidates=1,
                         keyframe_interval=6, chunk_frames=4, refine_steps=0, keep_tokens=True, **kw)


def dec(tiny):
    return DecodeOptions(weights=str(tiny), allow_untrained=True)


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, clip, tiny):
    out = tmp_path_factory.mktemp("adapt") / "a.imf"
    return out, encode_file(str(clip), str(out), opts(tiny, adapt_steps=4, adapt_step=0.001))


def chunks(path):
    with open(path, "rb") as f:
        return list(bs.read_chunks(f, path.stat().st_size))


def test_adapted_file_has_one_chunk_per_window(adapted):
    imf, r = adapted
    data = imf.read_bytes()
    assert data[4:6] == bytes(bs.COMPACT_VERSION)
    types = [c.ctype for c in chunks(imf)]
    assert types.count(bs.ADPT) == 1 and types.index(bs.ADPT) == 1  # 12 frames: one window of two segments
    assert types.count(bs.KEYF) == 2
    info = read_info(str(imf))
    assert info["version"] == "7.0" and info["bytes_adapt"] == r.bytes_adapt > 0
    assert info["bytes_total"] == r.bytes_total


def test_unadapted_files_have_no_offsets(tmp_path, clip, tiny):
    out = tmp_path / "b.imf"
    encode_file(str(clip), str(out), opts(tiny))
    assert bs.ADPT not in [c.ctype for c in chunks(out)]
    out2 = tmp_path / "c.imf"  # low delay cannot look ahead: no adaptation
    encode_file(str(clip), str(out2), opts(tiny, adapt_steps=3, keyframe_position="start"))
    assert bs.ADPT not in [c.ctype for c in chunks(out2)]


def strip_adpt(src, dst):
    rewrite(src, dst, lambda c: [] if c.ctype == bs.ADPT else [(c.ctype, c.payload)])


def test_decoder_applies_the_offsets_and_restores_the_weights(tmp_path, adapted, tiny):
    imf, r = adapted
    (payload,) = [c.payload for c in chunks(imf) if c.ctype == bs.ADPT]
    _, q, _ = bs.unpack_adapt(payload)
    assert np.any(q != 0)
    plain = tmp_path / "plain.imf"
    strip_adpt(imf, plain)
    a = decode_file(str(imf), None, dec(tiny), keep_frames=True).frames_rgb
    b = decode_file(str(plain), None, dec(tiny), keep_frames=True).frames_rgb
    assert np.array_equal(decode_tokens(str(imf)), decode_tokens(str(plain)), equal_nan=True)
    keys = {bs.unpack_keyframe(c.payload, True)[0] for c in chunks(imf) if c.ctype == bs.KEYF}
    for i, (x, y) in enumerate(zip(a, b)):
        assert np.array_equal(x, y) == (i in keys)  # keyframes as sent; every other frame moved by the offsets
    assert all(np.array_equal(x, y) for x, y in zip(a, decode_file(str(imf), None, dec(tiny),
                                                                   keep_frames=True).frames_rgb))


def test_adpt_in_a_version_2_file_is_refused(tmp_path, adapted, tiny):
    imf, _ = adapted
    bad = with_version(imf, tmp_path / "v2.imf", 2, tiny)
    with pytest.raises(BitstreamError, match="unknown chunk type"):
        decode_file(str(bad), None, dec(tiny))


def rewrite(src, dst, edit):
    """dst: src's chunks, each passed through edit (a list of (type, payload) in its place), in src's framing."""
    with open(dst, "wb") as f:
        w = bs.Writer(f, bs.COMPACT_VERSION)
        for c in chunks(src):
            for ctype, payload in edit(c):
                w.chunk(ctype, payload)


def test_misplaced_or_mismatched_offsets_are_refused(tmp_path, adapted, tiny):
    imf, _ = adapted
    (payload,) = [c.payload for c in chunks(imf) if c.ctype == bs.ADPT]
    short = bs.pack_adapt(np.zeros(3, np.int64), 0.01)
    bad = tmp_path / "count.imf"
    rewrite(imf, bad, lambda c: [(c.ctype, short if c.ctype == bs.ADPT else c.payload)])
    with pytest.raises(BitstreamError, match="3 values"):
        decode_file(str(bad), None, dec(tiny))
    # the second KEYF's frame is ahead of the frames that precede it: offsets may not come in between
    late = tmp_path / "late.imf"
    seen = []

    def move(c):
        if c.ctype == bs.ADPT:
            return []
        seen.append(c.ctype)
        return [(c.ctype, c.payload)] + ([(bs.ADPT, payload)] if c.ctype == bs.KEYF and seen.count(bs.KEYF) == 2
                                         else [])
    rewrite(imf, late, move)
    assert [c.ctype for c in chunks(late)].count(bs.ADPT) >= 1
    with pytest.raises(BitstreamError, match="before frame"):
        decode_file(str(late), None, dec(tiny))


def test_offsets_that_do_not_help_are_left_out(tmp_path, clip, tiny):
    out = tmp_path / "z.imf"
    r = encode_file(str(clip), str(out), opts(tiny, adapt_steps=2, adapt_step=1.0))  # offsets round to zero
    assert r.bytes_adapt == 0 and bs.ADPT not in [c.ctype for c in chunks(out)]
    assert len(decode_file(str(out), None, dec(tiny), keep_frames=True).frames_rgb) == 12


def test_rate_cap_keeps_room_for_offsets_and_coarsens_them_to_fit(tmp_path, clip, tiny):
    loose, tight = tmp_path / "loose.imf", tmp_path / "tight.imf"
    kw = dict(adapt_steps=4, adapt_step=0.001, keyframe_codec="av1")
    free = encode_file(str(clip), str(loose), opts(tiny, max_bpp=1.0, **kw))
    assert free.bytes_adapt > 0 and free.bpp_total <= 1.0
    cap = free.bpp_total * 0.9
    r = encode_file(str(clip), str(tight), opts(tiny, max_bpp=cap, **kw))
    steps = [bs.unpack_adapt(c.payload)[2] for c in chunks(tight) if c.ctype == bs.ADPT]
    assert r.bpp_total <= cap and r.bytes_keyframe < free.bytes_keyframe  # the keyframes made room
    assert r.bytes_adapt > 0 and len(steps) == 1 and steps[0] > kw["adapt_step"]  # at a coarser step
    assert len(decode_file(str(tight), None, dec(tiny), keep_frames=True).frames_rgb) == 12


def test_rate_cap_leaves_out_offsets_when_no_room_is_left(tmp_path, clip, tiny):
    kw = dict(adapt_step=0.001, keyframe_codec="av1")
    smallest = encode_file(str(clip), str(tmp_path / "s.imf"), opts(tiny, keyframe_quality=63, **kw))
    out = tmp_path / "capped.imf"  # the highest CRF alone just fits: nothing is left for offsets
    r = encode_file(str(clip), str(out), opts(tiny, adapt_steps=4, max_bpp=smallest.bpp_total, **kw))
    assert r.bytes_adapt == 0 and bs.ADPT not in [c.ctype for c in chunks(out)]
    assert r.bytes_total == smallest.bytes_total