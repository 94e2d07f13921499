"""The network: shapes for every dm, identity-like alignment at start, cached reference == forward."""

import pytest
import torch

from imfcodec.model import IMF, TINY, ModelConfig
from imfcodec.model.alignment import CrossAttentionAlign, fold_fine, unfold_fine
from imfcodec.model.layers import ModulatedConv2d
from imfcodec.model.weights import load_weights, save_weights


@pytest.mark.parametrize("dm", [16, 32, 64, 128])
def test_shapes_for_every_dm(dm):
    cfg = ModelConfig(**{**TINY.__dict__, "dm": dm})
    m = IMF(cfg).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        t = m.encode_tokens(x)
        assert t.shape == (2, dm)
        assert m(x[:1], x).shape == (2, 3, 64, 64)


def test_synthesize_with_cached_reference_matches_forward():
    torch.manual_seed(0)
    m = IMF(TINY).eval()
    ref, cur = torch.rand(1, 3, 64, 64), torch.rand(5, 3, 64, 64)
    with torch.no_grad():
        cache = m.reference(ref)
        a = m.synthesize(m.encode_tokens(cur), cache)
        b = m(ref.expand(5, -1, -1, -1), cur)
    assert torch.allclose(a, b, atol=1e-5)


def test_fresh_alignment_attends_to_itself():
    torch.manual_seed(0)
    align = CrossAttentionAlign(motion_dim=8, attn_dim=16, grid=8, sigma=0.35)
    m = torch.randn(1, 8, 8, 8)
    values = torch.randn(1, 64, 4)
    out = align(m, align.keys(m), values)
    # same motion features for both frames: each position takes >= 90% from itself
    assert (out - values).abs().mean() < 0.1 * values.abs().mean()


def test_fold_unfold_inverse():
    feats = [torch.randn(2, 3, 32, 32), torch.randn(2, 5, 16, 16), torch.randn(2, 7, 8, 8)]
    back = unfold_fine(fold_fine(feats), [3, 5, 7])
    assert all(torch.equal(a, b) for a, b in zip(feats, back))


def test_modulated_conv_demodulates():
    conv = ModulatedConv2d(8, 6, 3, style_dim=4)
    x = torch.randn(3, 8, 16, 16)
    y = conv(x, torch.randn(3, 4) * 10)
    # demodulation keeps the output scale independent of the style's magnitude
    assert 0.3 < y.std().item() < 3


def test_weights_round_trip_is_safetensors(tmp_path):
    torch.manual_seed(0)
    m = IMF(TINY)
    path = tmp_path / "w.safetensors"
    mid = save_weights(m, str(path), steps=3)
    assert path.read_bytes()[8:9] == b"{"  # safetensors: u64 header length, then a JSON header
    lm = load_weights(str(path))
    assert lm.model_id == mid and lm.trained and lm.model.cfg == TINY
    for k, v in m.state_dict().items():
        assert torch.allclose(lm.model.state_dict()[k], v.half().float())


def test_warp_moves_content_by_the_flow():
    from imfcodec.model.flow import warp
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(warp(x, torch.zeros(2, 2, 4, 4)), x.expand(2, -1, -1, -1))
    right = torch.zeros(1, 2, 4, 4)
    right[:, 0] = 2 / 16  # every point of the output comes from one pixel to its right
    assert torch.allclose(warp(x, right)[..., :-1], x[..., 1:], atol=1e-6)


def test_token_flow_starts_as_identity_and_moves_frames_once_trained():
    torch.manual_seed(0)
    m = IMF(TINY).eval()
    ref, cur = torch.rand(1, 3, 64, 64), torch.rand(2, 3, 64, 64)
    cache = m.reference(ref)
    tokens = m.encode_tokens(cur)
    with torch.no_grad():
        assert torch.count_nonzero(m.flow(tokens, cache.token)) == 0
        before = m.synthesize(tokens, cache)
        m.flow.mlp[-1].bias.fill_(0.25)
        after = m.synthesize(tokens, cache)
    assert (after - before).abs().mean() > 1e-3


@pytest.mark.parametrize("upsample", [False, True])
def test_modulated_conv_unfused_is_the_same_function(upsample):
    """The fast path's form (input scaled by the style, output by the demodulation, one convolution of the
    batch) gives the grouped form's output to float rounding."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(8, 12, 3, 16, upsample=upsample)
    x, style = torch.randn(3, 8, 6, 6), torch.randn(3, 16)
    with torch.no_grad():
        grouped = conv(x, style)
        conv.fused = False
        batched = conv(x, style)
    assert batched.shape == grouped.shape and torch.allclose(batched, grouped, atol=1e-5)
