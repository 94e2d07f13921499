"""Exact rescaling of the token path, so that training can go on from weights whose activations drifted.

IMF_D demodulates every modulated convolution, so the network's output does not change when the token
path's activations are scaled; gradients orthogonal to a scale-free input make those activations grow, and
the shipped weights reached ~1e6 inside E_T and in the style vector. Adam's steps are about lr in absolute
size, so a parameter that is 1e-9 or 1e6 after such drift is either thrown about or frozen. Leaky ReLU is
positively homogeneous, so each stage can be rescaled to unit RMS activations with the next stage
compensating: the function is unchanged up to rounding and every parameter is back at a trainable scale.
"""
from __future__ import annotations

import torch

from .imf import IMF
from .layers import Down


def _rms(x: torch.Tensor) -> float:
    return float(x.float().pow(2).mean().sqrt().clamp_min(1e-30))


@torch.no_grad()
def normalize_token_path(model: IMF, frames: torch.Tensor) -> dict[str, float]:
    """Rescale E_T's trunk, MLP and tokens and IMF_D's mapping and style affines in place so that their
    activations on ``frames`` (B, 3, H, W) have unit RMS; frames and flows are unchanged, tokens are
    scaled. Returns the RMS found before rescaling."""
    enc, dec = model.token_encoder, model.token_decoder
    found: dict[str, float] = {}

    # E_T trunk: stage k's input arrives divided by a_prev; make its output divided by a_k.
    h = enc.stem_features(frames)
    a_prev = 1.0
    for k, stage in enumerate(enc.trunk):
        assert isinstance(stage, Down)
        h = stage(h)  # original function on the original-scale input
        a = _rms(h)
        found[f"trunk.{k}"] = a
        stage.conv.weight.mul_(a_prev / a)
        for bias in (stage.conv.bias, stage.res.c1.bias, stage.res.c2.bias):
            bias.div_(a)
        a_prev = a
    if hasattr(enc, "mlp"):  # keypoint heads standardise their maps: blind to the trunk's scale
        lin1, lin2 = enc.mlp[1], enc.mlp[3]
        b = _rms(lin1(enc.mlp[0](h)))
        found["mlp"] = b
        lin1.weight.mul_(a_prev / b)
        lin1.bias.div_(b)
        lin2.weight.mul_(b)

        # The tokens themselves to unit RMS, every consumer compensating: the token flow's MLP reads them
        # unnormalised, and at ~0.02 its Adam steps could not make a flow of useful size in thousands of steps.
        r = _rms(enc(frames))
        found["token"] = r
        lin2.weight.div_(r)
        lin2.bias.div_(r)
        dec.mapping[0].weight.mul_(r)
        if model.flow is not None:
            model.flow.mlp[0].weight.mul_(r)

    # IMF_D mapping: the style may be scaled freely as long as every affine's bias follows.
    tokens = enc(frames)
    m0, m2 = dec.mapping[0], dec.mapping[2]
    h0 = m0(tokens)
    g1 = _rms(h0)
    g2 = _rms(m2(dec.mapping[1](h0)))
    found["style"] = g2
    m0.weight.div_(g1)
    m0.bias.div_(g1)
    m2.weight.mul_(g1 / g2)
    m2.bias.div_(g2)
    style = dec.mapping(tokens)
    for i, layer in enumerate([*dec.to16, *dec.to8]):
        aff = layer.conv.affine
        d = _rms(aff(style * g2))  # the modulation as the original weights made it
        found[f"affine.{i}"] = d
        aff.weight.mul_(g2 / d)
        aff.bias.div_(d)
    return found


@torch.no_grad()
def restore_modulation_bias(model: IMF, lost: float = 1e-3) -> int:
    """Set IMF_D's modulation biases back to 1 (StyleGAN2's value) where drift made them negligible.

    With those biases ~0 the whole token path is positively homogeneous (Leaky ReLU, no bias), so scaling
    a token scales every modulation, which demodulation then cancels: tokens that differ mostly in scale
    give the same motion features (measured on the 4,400-step weights: 3% modulation change, 0.01%
    output change). A bias of 1 breaks that symmetry. Not exact, but the weights it applies to ignore the
    token anyway (eval PSNR 20.51 -> 20.50 dB on the shipped weights). Returns how many layers changed."""
    n = 0
    dec = model.token_decoder
    for layer in [*dec.to16, *dec.to8]:
        bias = layer.conv.affine.bias
        if float(bias.abs().mean()) < lost:
            bias.fill_(1.0)
            n += 1
    return n
