"""Held frames: frames the keyframe shows better than the synthesis are sent as HOLD chunks (no tokens), in
low delay and around mid-segment keyframes; a decoder shows them as their keyframe, and refuses HOLD chunks
that break the rules."""
import io

import numpy as np
import pytest

from imfcodec import bitstream as bs
from imfcodec.codec import DecodeOptions, EncodeOptions, decode_file, encode_file, read_info
from imfcodec.decoder import decode_tokens
from imfcodec.errors import BitstreamError
from imfcodec.presets import ignored, preset_options
from tests.conftest import reframe, with_version


def _opts(tiny, **kw) -> EncodeOptions:
    kw = {"keyframe_psnr": 0, "keyframe_position": "start", "keyframe_interval": 5, "refine_steps": 0,
          "chunk_frames": 4, **kw}
    return EncodeOptions(weights=str(tiny), allow_untrained=True, **kw)


@pytest.fixture
def held(tmp_path, clip, tiny):
    out = tmp_path / "held.imf"
    encode_file(str(clip), str(out), _opts(tiny, hold=True))
    return out


def _decode(path, tiny) -> np.ndarray:
    return np.stack(decode_file(str(path), None, DecodeOptions(weights=str(tiny), allow_untrained=True),
                                keep_frames=True).frames_rgb)


def _rebuild(src, dst, edit, major, tiny) -> None:
    """dst: src's chunks framed as a major.0 file, each (type, payload, compact) passed through edit, written
    afresh."""
    data = reframe(src.read_bytes(), major, tiny)
    f = io.BytesIO()
    w = bs.Writer(f, (major, 0))
    for c in bs.read_chunks(io.BytesIO(data), len(data)):
        if c.ctype == bs.END:
            w.chunk(bs.END, c.payload)
            break
        for ctype, payload in edit(c.ctype, c.payload, w.compact):
            w.chunk(ctype, payload)
    dst.write_bytes(f.getvalue())


def test_held_frames_cost_no_tokens_and_decode_as_their_keyframe(held, tmp_path, clip, tiny):
    plain = tmp_path / "plain.imf"
    p = encode_file(str(clip), str(plain), _opts(tiny))
    info = read_info(str(held))
    assert info["version"] == read_info(str(plain))["version"] == "7.0"
    assert info["bytes_tokens"] == 0 < p.bytes_tokens and info["frames"] == 12
    out = _decode(held, tiny)
    for k, frames in ((0, range(1, 5)), (5, range(6, 10)), (10, range(11, 12))):
        for i in frames:
            assert np.array_equal(out[i], out[k])


@pytest.mark.parametrize("codec", ["zfp", "predictive"])
def test_frames_around_a_mid_segment_keyframe_are_held_as_it(tmp_path, clip, tiny, codec, monkeypatch):
    """With keyframes mid-segment, frames before and after the keyframe are held frame by frame; they decode
    as their segment's keyframe and the others do not, and the decoder reads the tokens the encoder coded
    (the coders' context runs on across held frames).
    The untrained network loses to its keyframe everywhere, so the rule is replaced by one that holds the
    first frame of every batch (the rule itself: test_hold_rule_weighs_structure_as_well_as_error)."""
    from imfcodec.analysis import Analysis
    monkeypatch.setattr(Analysis, "shown_better", lambda self, x, t, ref: [True] + [False] * (len(x) - 1))
    kw = {"keyframe_position": "middle", "keyframe_candidates": 1, "adapt_steps": 0, "plan_segments": 1,
          "keyframe_interval": 6, "batch": 2, "token_codec": codec}
    held = tmp_path / "held.imf"
    h = encode_file(str(clip), str(held), _opts(tiny, hold=True, keep_tokens=True, **kw))
    assert not ignored(preset_options("balanced", hold=True), {"hold"})
    assert preset_options("balanced").hold and preset_options("realtime").hold
    keys = [bs.unpack_keyframe(c.payload, True)[0] for c in _chunks(held) if c.ctype == bs.KEYF]
    assert keys == [2, 8]  # frames before and after each
    is_held = np.isnan(h.tokens[:, 0])
    out = _decode(held, tiny)
    # batches of 2 from each segment's first frame and from the frame after its keyframe
    assert is_held.tolist() == [True, False, True, False, True] * 2
    assert sum(c.ctype == bs.HOLD for c in _chunks(held)) == 6
    coded = [i for i in range(12) if i not in keys]
    np.testing.assert_array_equal(decode_tokens(str(held))[coded], h.tokens)
    for row, i in zip(is_held, coded, strict=True):
        key = keys[0] if i < 6 else keys[1]
        assert np.array_equal(out[i], out[key]) == bool(row)


def _chunks(path):
    data = path.read_bytes()
    return list(bs.read_chunks(io.BytesIO(data), len(data)))


def test_hold_chunk_before_6x_is_an_unknown_chunk(held, tmp_path, tiny):
    bad = with_version(held, tmp_path / "v5.imf", 5, tiny)
    with pytest.raises(BitstreamError, match="unknown chunk type"):
        _decode(bad, tiny)


def _first(p, c):
    return bs.unpack_hold(p, c)[0]


@pytest.mark.parametrize("major, edit, message", [
    (6, lambda t, p, c: [(t, p + b"x")] if t == bs.HOLD else [(t, p)], "HOLD chunk: 7 bytes"),
    (7, lambda t, p, c: [(t, p + b"x")] if t == bs.HOLD else [(t, p)], "HOLD chunk: 2 bytes, it holds one varint"),
    (7, lambda t, p, c: [(t, bytes([p[0] | 0x80, 0]))] if t == bs.HOLD else [(t, p)], "HOLD chunk: varint not in"),
    (6, lambda t, p, c: [(t, bs.pack_hold(_first(p, c) + 1, bs.unpack_hold(p, c)[1], c))] if t == bs.HOLD
     else [(t, p)], "held frames for frame"),
] + [(major, edit, message) for major in (6, 7) for edit, message in [
    (lambda t, p, c: [(t, bs.pack_hold(_first(p, c), 0, c))] if t == bs.HOLD else [(t, p)], "holds no frames"),
    (lambda t, p, c: [(t, bs.pack_hold(_first(p, c), 60000, c))] if t == bs.HOLD else [(t, p)], "run past"),
    (lambda t, p, c: [(bs.HOLD, bs.pack_hold(0, 1, c)), (t, p)] if t == bs.KEYF and bs.unpack_keyframe(p, c)[0] == 0
     else [(t, p)], "held frames for frame 0"),
]])
def test_hostile_hold_chunks_are_refused(held, tmp_path, tiny, major, edit, message):
    bad = tmp_path / "bad.imf"
    _rebuild(held, bad, edit, major, tiny)
    with pytest.raises(BitstreamError, match=message):
        _decode(bad, tiny)


def test_hold_rule_weighs_structure_as_well_as_error():
    """The rule is the refinement's loss: a keyframe off by a uniform shift (lower PSNR, intact structure)
    is held over a blurred synthesis (higher PSNR, lost detail); a synthesis equal to the frame is kept."""
    import torch
    import torch.nn.functional as F

    from imfcodec.analysis import _psnr, _shows_better
    x = F.avg_pool2d(torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)), 3, 1, 1) * 0.8 + 0.1
    shifted, blurred = x + 0.07, F.avg_pool2d(x, 5, 1, 2)
    assert _psnr(shifted, x)[0] < _psnr(blurred, x)[0]
    assert _shows_better(shifted, blurred, x) == [True]
    assert _shows_better(shifted, x, x) == [False]
