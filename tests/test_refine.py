"""Encoder-side token refinement: it lowers the decoder's error, never raises it, and leaves the model alone."""
import numpy as np
import torch

from imfcodec.codec import EncodeOptions, decode_file, DecodeOptions, encode_file
from imfcodec.model import IMF, TINY
from imfcodec.presets import ignored, preset_options
from imfcodec.refine import mse, refine_tokens, token_rate
from imfcodec.video_io import read_frames, to_model


def _frames(n: int = 4, size: int = 64) -> torch.Tensor:
    """A bright square moving over a ramp: frame 0 is the reference."""
    x = torch.zeros(n, 3, size, size)
    x[:, 0] = torch.linspace(0, 1, size)[None, None, :]
    for t in range(n):
        x[t, :, 10 + 3 * t:30 + 3 * t, 12 + 2 * t:32 + 2 * t] = 1.0
    return x


def _err(model, tokens, ref, target):
    with torch.no_grad():
        return (model.synthesize(tokens, ref) - target).pow(2).mean(dim=(1, 2, 3))


def test_refinement_finds_the_token_that_made_the_frame_and_leaves_the_model_alone():
    """Targets made by the decoder from known tokens; refinement from perturbed tokens must close most of the
    gap. (The flow's last layer starts at zero, an identity warp; a random one makes the token matter.)"""
    torch.manual_seed(0)
    model = IMF(TINY).train()
    torch.nn.init.normal_(model.flow.mlp[-1].weight, std=0.05)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frames = _frames()
    with torch.no_grad():
        ref, t_true = model.reference(frames[:1]), model.encode_tokens(frames[1:])
        target = model.synthesize(t_true, ref)
    t0 = t_true + 0.3 * torch.randn_like(t_true)
    e0 = _err(model, t0, ref, target)
    for bf16 in (False, True):  # bfloat16 autocast (what the fast encoder uses) finds it too
        t = refine_tokens(model, ref, target, t0, steps=30, lr=0.05, loss=mse, bf16=bf16)
        e1 = _err(model, t, ref, target)
        assert (e1 <= e0).all() and e1.sum() < 0.5 * e0.sum()
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert refine_tokens(model, ref, target, t0, steps=0) is t0


def test_encoder_refines_tokens_and_the_file_decodes_closer_to_the_source(tmp_path, clip, tiny):
    opts = dict(weights=str(tiny), allow_untrained=True, keep_tokens=True, keyframe_psnr=0, keyframe_candidates=1,
                adapt_steps=0)
    src = np.stack([to_model(f, 64, 64, "crop") for f in read_frames(str(clip))]).astype(np.float64)
    res, calls = {}, []
    for steps in (0, 10):
        out = tmp_path / f"r{steps}.imf"
        r = encode_file(str(clip), str(out), EncodeOptions(refine_steps=steps, batch=4, **opts),
                        progress=lambda done, total: calls.append((steps, done, total)))
        rec = decode_file(str(out), None, DecodeOptions(weights=str(tiny), allow_untrained=True), keep_frames=True)
        res[steps] = (r.tokens, r.bytes_total, np.mean((np.stack(rec.frames_rgb) - src) ** 2))
    assert not np.array_equal(res[0][0], res[10][0])
    assert res[0][1] == res[10][1]  # ZFP is fixed-rate: refinement costs no bits
    assert res[10][2] < res[0][2]
    # the progress bar counts coded frames: the keyframe (frame 5), then each refined batch before and after it
    assert [(d, t) for s, d, t in calls if s == 10] == [(1, 12), (5, 12), (6, 12), (10, 12), (12, 12)]


def test_token_rate_is_each_tokens_distance_from_the_one_before():
    t = torch.tensor([[1.0, 0.0], [1.5, -1.0], [1.5, -1.0]])
    assert token_rate(t, None).tolist() == [0.0, 1.5, 0.0]
    assert token_rate(t, torch.tensor([[0.0, 0.0]])).tolist() == [1.0, 1.5, 0.0]
    assert token_rate(t[:1], None).tolist() == [0.0]


def test_a_rate_term_keeps_refined_tokens_closer_together():
    torch.manual_seed(0)
    model = IMF(TINY).eval()
    torch.nn.init.normal_(model.flow.mlp[-1].weight, std=0.05)
    frames = _frames(5)
    with torch.no_grad():
        ref, t0 = model.reference(frames[:1]), model.encode_tokens(frames[1:])
    prev = t0[:1] + 0.1
    free = refine_tokens(model, ref, frames[1:], t0, steps=20, loss=mse)
    cheap = refine_tokens(model, ref, frames[1:], t0, steps=20, loss=mse, rate=0.05, prev=prev)
    assert token_rate(cheap, prev).sum() < token_rate(free, prev).sum()


def test_refine_lambda_spends_fewer_token_bits_in_low_delay(tmp_path, clip, tiny):
    opts = dict(weights=str(tiny), allow_untrained=True, keyframe_psnr=0, keyframe_position="start",
                keyframe_interval=12, token_codec="predictive", refine_steps=4, synthesis="fast")
    sizes = {}
    for lam in (0.0, 0.05):
        r = encode_file(str(clip), str(tmp_path / f"l{lam}.imf"), EncodeOptions(refine_lambda=lam, **opts))
        sizes[lam] = r.bytes_tokens
    assert sizes[0.05] < sizes[0.0]


def test_refine_lambda_without_its_rate_term_says_so():
    assert any(line.startswith("--refine-lambda has no effect")
               for line in ignored(preset_options("balanced", refine_lambda=0.01), {"refine_lambda"}))
    assert not ignored(preset_options("realtime", refine_steps=10, refine_lambda=0.01), {"refine_lambda"})
