"""Presets, ignored-option warnings, the batch quality check and the fast synthesis path (imfcodec/fast.py)."""
import dataclasses

import numpy as np
import pytest
import torch

from imfcodec import bitstream as bs, keyframe
from imfcodec.codec import DecodeOptions, EncodeOptions, decode_file, encode_file, read_info
from imfcodec.fast import FastSynthesis, LocalAlign
from imfcodec.metrics import psnr_rgb
from imfcodec.model import IMF, TINY
from imfcodec.presets import PRESETS, ignored, preset_options
from imfcodec.video_io import read_frames

from tests.conftest import SHARED, cli, eval_frames, keyframe_indices, write_clip

needs_shared = pytest.mark.skipif(not (SHARED / "data" / "eval").is_dir(), reason="needs ../shared/data/eval")


def chunks(path):
    with open(path, "rb") as f:
        return list(bs.read_chunks(f, path.stat().st_size))


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_encodes_and_decodes(tmp_path, clip, tiny, name):
    """Each preset with the tiny network (quality check off: untrained, it rebuilds noise): the file decodes
    to every frame, and its keyframes sit where the preset puts them."""
    out = tmp_path / f"{name}.imf"
    opts = preset_options(name, weights=str(tiny), allow_untrained=True, keyframe_psnr=0, keyframe_interval=5)
    r = encode_file(str(clip), str(out), opts)
    assert r.frames == 12 and read_info(str(out))["frames"] == 12
    dec = decode_file(str(out), None, DecodeOptions(weights=str(tiny), allow_untrained=True, synthesis="fast"),
                      keep_frames=True)
    assert len(dec.frames_rgb) == 12 and dec.frames_rgb[0].shape == (64, 64, 3)
    keys = keyframe_indices(out)
    if name == "realtime":
        assert keys == [0, 5, 10]
        # low delay: a token chunk per batch at most (nothing buffered beyond one batch)
        assert opts.chunk_frames == opts.batch
    else:
        assert len(keys) == 3 and keys[0] > 0  # keyframes inside their segments


def test_realtime_writes_a_token_chunk_per_batch(tmp_path, clip, tiny):
    out = tmp_path / "rt.imf"
    opts = preset_options("realtime", weights=str(tiny), allow_untrained=True, keyframe_psnr=0,
                          keyframe_interval=0, batch=4, hold=False)  # untrained, every frame would be held
    encode_file(str(clip), str(out), opts)
    counts = [bs.unpack_tokens(c.payload, True)[1] for c in chunks(out) if c.ctype == bs.TOKN]
    assert counts == [4, 4, 3]  # frame 0 is the keyframe, then batches of 4 as they fill


def test_preset_options_override_one_by_one():
    rt = preset_options("realtime")
    assert (rt.keyframe_position, rt.refine_steps, rt.adapt_steps, rt.plan_segments, rt.keyframe_candidates) == \
        ("start", 0, 0, 1, 1)
    assert rt.keyframe_psnr > 0 and rt.synthesis == "fast" and rt.keyframe_check == "batch"
    assert rt.token_codec == preset_options("balanced").token_codec == "predictive"
    assert preset_options("archive").token_codec == "zfp"
    assert preset_options("realtime", token_codec="zfp").token_codec == "zfp"
    assert preset_options("realtime", refine_steps=3, keyframe_position="middle").refine_steps == 3
    assert preset_options("archive") == dataclasses.replace(EncodeOptions())  # today's defaults, unchanged
    with pytest.raises(ValueError):
        preset_options("turbo")


def test_ignored_options_are_named():
    rt = preset_options("realtime", adapt_steps=50)
    assert ignored(rt, {"adapt_steps"}) == ["--adapt has no effect with --keyframe-position start (decoder "
                                            "adaptation needs keyframes mid-segment)"]
    assert ignored(rt, set()) == []  # what the preset itself sets is not the user's doing
    assert len(ignored(preset_options("archive", qstep=0.01), {"qstep"})) == 1
    assert ignored(rt, {"zfp_rate"}) == ["--rate has no effect with --token-codec predictive (it sets ZFP's rate; "
                                         "--qstep sets this codec's step)"]
    assert ignored(preset_options("archive", token_codec="learned", qstep=0.01), {"qstep", "token_codec"}) == []
    assert ignored(preset_options("balanced", keyframe_psnr=0, keyframe_check="batch"),
                   {"keyframe_psnr", "keyframe_check"}) == ["--keyframe-check has no effect with --keyframe-psnr 0 "
                                                            "(no quality check)"]


def test_cli_warns_of_an_ignored_option_in_one_line(tmp_path, clip, tiny):
    out = tmp_path / "w.imf"
    base = ["encode", clip, "-o", out, "--weights", tiny, "--allow-untrained", "--keyframe-psnr", "0", "-q"]
    p = cli(*base, "--preset", "realtime", "--adapt", "20")
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("warning:")]
    assert lines == ["warning: --adapt has no effect with --keyframe-position start (decoder adaptation needs "
                     "keyframes mid-segment)"]
    assert out.exists()
    p = cli(*base, "--preset", "realtime", "--keyframe-position", "middle", "--keyframe-candidates", "1")
    assert p.returncode == 0 and "warning" not in p.stderr
    assert keyframe_indices(out) == [5]  # the option overrode the preset's start


def test_encode_help_groups_search_options():
    p = cli("encode", "--help")
    assert p.returncode == 0
    common, advanced = p.stdout.split("Advanced: the encoder's search")
    assert "--preset" in common and "--dm" in common and "--refine" not in common
    for opt in ("--refine", "--adapt", "--plan-segments", "--keyframe-candidates", "--keyframe-check"):
        assert opt in advanced


@needs_shared
def test_batch_check_finds_the_scene_cut_every_frame_check_finds(tmp_path):
    src = write_clip(tmp_path / "cut.y4m", eval_frames(("lia-vox-driving2", 11), ("videoretalking-face-3", 9)))
    out = tmp_path / "cut.imf"
    for check in ("every", "batch"):
        encode_file(src, str(out), preset_options("realtime", keyframe_check=check))
        assert keyframe_indices(out) == [0, 11], check


def test_local_attention_equals_full_attention_where_it_is_local(tiny):
    """The tiny network starts with identity-like attention (local): float32 fast path = plain path; with
    attention made global (every key alike) the locality check falls back to full attention."""
    from imfcodec.model.weights import load_weights
    model = load_weights(str(tiny)).model.eval()
    x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, t = model.reference(x[:1]), model.encode_tokens(x[1:])
        fast = FastSynthesis(model, bf16=False)
        assert isinstance(fast.model.align8, LocalAlign)
        assert torch.allclose(fast.synthesize(t, ref), model.synthesize(t, ref), atol=1e-5)
        for p in (model.align8.pos_q, model.align8.pos_k, model.align8.q.weight, model.align8.k.weight):
            p.zero_()  # uniform attention: nothing local about it
        ref = model.reference(x[:1])
        fast = FastSynthesis(model, bf16=False)
        assert torch.allclose(fast.synthesize(t, ref), model.synthesize(t, ref), atol=1e-5)


@pytest.mark.parametrize("pixel_path", [False, True])
def test_fast_path_shares_the_flow_and_stays_close(pixel_path):
    torch.manual_seed(0)
    model = IMF(dataclasses.replace(TINY, pixel_path=pixel_path)).eval()
    fast = FastSynthesis(model)
    assert fast.model.flow is model.flow  # decoder offsets (ADPT) set on the plain model reach the fast one
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        ref, t = model.reference(x[:1]), model.encode_tokens(x)
        a, b = model.synthesize(t, ref), fast.synthesize(t, ref)
    assert b.dtype == torch.float32 and (a - b).abs().max() < 0.02


@needs_shared
def test_fast_decoder_within_005_db_of_the_plain_one(tmp_path):
    """The stated tolerance, on real frames with the shipped weights: a realtime encode of 24 frames of two
    eval clips decoded by both paths; PSNR against the source moves by at most 0.05 dB."""
    frames = eval_frames(("lia-vox-driving2", 12), ("videoretalking-face-3", 12))
    src = write_clip(tmp_path / "two.y4m", frames)
    out = tmp_path / "two.imf"
    encode_file(src, str(out), preset_options("realtime"))
    ref = np.stack(list(read_frames(src)))
    got = {}
    for mode in ("exact", "fast"):
        rec = tmp_path / f"{mode}.y4m"
        decode_file(str(out), str(rec), DecodeOptions(synthesis=mode))
        got[mode] = np.stack(list(read_frames(str(rec))))
    p = {m: float(psnr_rgb(v, ref).mean()) for m, v in got.items()}
    assert abs(p["fast"] - p["exact"]) <= 0.05, p
    assert float(psnr_rgb(got["fast"], got["exact"]).mean()) > 40  # the two outputs barely differ


def test_realtime_keyframes_are_one_inter_stream_unless_overridden():
    """The realtime preset's keyframes are hevc-inter at CRF 34; another codec given alone gets its own default
    CRF, and keyframes moved mid-segment fall back to intra ones."""
    o = preset_options("realtime")
    assert (o.keyframe_codec, o.keyframe_quality) == ("hevc-inter", 34)
    o = preset_options("realtime", keyframe_codec="av1")
    assert (o.keyframe_codec, o.keyframe_quality) == ("av1", keyframe.DEFAULT_QUALITY)
    o = preset_options("realtime", keyframe_position="middle")
    assert (o.keyframe_codec, o.keyframe_quality) == (keyframe.DEFAULT_CODEC, keyframe.DEFAULT_QUALITY)
    assert preset_options("realtime", keyframe_quality=30).keyframe_quality == 30
    for name in ("balanced", "archive"):  # a CRF given with the default codec is kept
        assert preset_options(name, keyframe_quality=44).keyframe_quality == 44
    assert preset_options("realtime", keyframe_position="middle", keyframe_quality=44).keyframe_quality == 44
