"""The encoder's token guess: its file, one training step through the frozen decoder, and the encoder using
it without the decoder needing it."""
import numpy as np
import pytest
import torch

from imfcodec.codec import decode_file, decode_tokens
from imfcodec.encoder import encode_file
from imfcodec.errors import UserError
from imfcodec.model.guess import guess_from, load_guess, save_guess
from imfcodec.model.weights import load_weights
from imfcodec.train.guess import GuessOptions, GuessTrainer, compare
from imfcodec.train.data import FrameCache, find_videos, load_clip
from tests.conftest import TINY, dec_opts, enc_opts, make_clip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("gdata")
    make_clip(d / "a.mp4", frames=6)
    make_clip(d / "b.mp4", frames=5, w=64, h=96)
    return d


def _shifted_guess(tiny, path, scale=3.0) -> None:
    """A guess for the tiny weights that differs from their E_T (sharper heatmaps)."""
    lm = load_weights(str(tiny))
    g = guess_from(lm.model)
    with torch.no_grad():
        g.et.log_temp += np.log(scale)
    save_guess(g, lm.model.cfg, lm.model_id, str(path))


def test_guess_starts_as_et_and_round_trips(tiny, other_tiny, tmp_path):
    """An untrained guess is E_T whatever the keyframe (its stem on the keyframe starts at zero)."""
    lm = load_weights(str(tiny))
    g = guess_from(lm.model)
    x, ref = torch.rand(2, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(g(x, ref), lm.model.encode_tokens(x))
    path = tmp_path / "g.safetensors"
    with torch.no_grad():
        g.ref_stem.weight.normal_()
    save_guess(g, lm.model.cfg, lm.model_id, str(path))
    back = load_guess(str(path), lm.model_id)
    with torch.no_grad():
        assert torch.equal(back(x, ref), g(x, ref)) and not torch.equal(back(x, ref), back(x, 1 - ref))
    assert load_guess(str(path), load_weights(str(other_tiny)).model_id) is None  # made for other weights
    with pytest.raises(UserError, match="not an imfcodec token guess"):
        load_guess(str(tiny), lm.model_id)  # a weights file is not a guess


def test_one_step_trains_the_guess_only(tiny, data_dir, tmp_path):
    torch.manual_seed(0)
    t = GuessTrainer(GuessOptions(str(tiny), [str(data_dir)], str(tmp_path / "run"), batch=2, steps=4,
                                  cache_dir=str(tmp_path / "cache")))
    model_before = {k: v.clone() for k, v in t.model.state_dict().items()}
    guess_before = {k: v.clone() for k, v in t.guess.state_dict().items()}
    loss = t.train_step()
    assert np.isfinite(loss)
    assert all(torch.equal(v, model_before[k]) for k, v in t.model.state_dict().items())
    assert any(not torch.equal(v, guess_before[k]) for k, v in t.guess.state_dict().items())
    assert all(not p.requires_grad for p in t.model.parameters())


def test_refined_targets_are_made_and_pull_the_guess(tiny, other_tiny, data_dir, tmp_path):
    """guess_targets stores refined tokens of cached pairs (appending on a rerun); a trainer given them
    draws those pairs and its token term keeps the guess nearer them than the decoder's loss alone does
    (a comparison, not a fall over three steps: on some CPUs the decoder's gradient outweighs the pull there)."""
    from imfcodec.train import guess_targets
    out, cache = tmp_path / "t.npz", str(tmp_path / "cache")
    args = [str(tiny), "--data", str(data_dir), "--cache-dir", cache, "--out", str(out), "--batch", "2",
            "--steps", "3", "--distance", "2"]
    guess_targets.main(args + ["--pairs", "2"])
    guess_targets.main(args + ["--pairs", "4"])
    with np.load(out) as z:
        rows, tokens, et = z["rows"], z["tokens"], z["et"]
        assert bytes(z["weights_id"]) == load_weights(str(tiny)).model_id
    assert rows.shape == (4, 2) and tokens.shape == et.shape == (4, TINY.dm)
    assert np.all(np.abs(rows[:, 0] - rows[:, 1]) <= 2) and not np.array_equal(tokens, et)

    def distance_after_steps(weight: float) -> torch.Tensor:
        """The guess's distance from the refined tokens after 3 steps with that target weight (same start,
        same batches)."""
        torch.manual_seed(0)
        t = GuessTrainer(GuessOptions(str(tiny), [str(data_dir)], str(tmp_path / f"run{weight:g}"), batch=4,
                                      steps=4, cache_dir=cache, targets=str(out), target_weight=weight, lr=1e-4))
        t.sampler.rng = np.random.default_rng(1)
        ref, cur, target = t._target_batch()
        t.sampler.rng = np.random.default_rng(0)
        for _ in range(3):
            assert np.isfinite(t.train_step())
        with torch.no_grad():
            return (t.guess(cur, ref) - target).pow(2).mean()

    assert distance_after_steps(100.0) < distance_after_steps(0.0)  # the pull, beside the decoder's loss
    with pytest.raises(ValueError, match="other weights"):
        GuessTrainer(GuessOptions(str(other_tiny), [str(data_dir)], str(tmp_path / "r2"),
                                  cache_dir=cache, targets=str(out)))


def test_compare_reports_both(tiny, data_dir, tmp_path):
    lm = load_weights(str(tiny))
    cache = FrameCache(find_videos([str(data_dir)]), 64, str(tmp_path))
    clips = [load_clip(cache, i) for i in range(len(cache.clips))]
    r = compare(lm.model, guess_from(lm.model), clips)
    assert r["et_psnr"] == pytest.approx(r["guess_psnr"]) and r["et_loss"] == pytest.approx(r["guess_loss"])


def test_encoder_uses_the_guess_and_the_decoder_does_not_need_it(tiny, other_tiny, clip, tmp_path):
    gpath = tmp_path / "g.safetensors"
    _shifted_guess(tiny, gpath)
    a, b = tmp_path / "et.imf", tmp_path / "guess.imf"
    ra = encode_file(str(clip), str(a), enc_opts(tiny, keep_tokens=True, token_guess="et", refine_steps=0))
    rb = encode_file(str(clip), str(b), enc_opts(tiny, keep_tokens=True, token_guess=str(gpath), refine_steps=0))
    assert not np.allclose(ra.tokens, rb.tokens)
    tb = decode_tokens(str(b))
    sent = ~np.isnan(tb[:, 0])
    assert np.array_equal(tb[sent], rb.tokens)  # the non-key frames' tokens, as the encoder coded them
    d = decode_file(str(b), None, dec_opts(tiny), keep_frames=True)  # the plain decoder, no guess
    assert d.frames == len(d.frames_rgb) == rb.frames
    with pytest.raises(UserError, match="trained for other weights"):
        encode_file(str(clip), str(tmp_path / "x.imf"), enc_opts(other_tiny, token_guess=str(gpath)))
    with pytest.raises(UserError, match="not found"):
        encode_file(str(clip), str(tmp_path / "y.imf"), enc_opts(tiny, token_guess=str(tmp_path / "none")))
