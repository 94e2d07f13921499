"""Encoder-side token refinement: analysis by synthesis.

The token encoder E_T gives a fast, amortised guess of each frame's token. The encoder also holds the
decoder and the decoded keyframe, so it can do better: descend the decoder's own reconstruction error
with respect to the few numbers of the token. The decoder and the bitstream do not change, a refined
token is simply a better token; only encoding gets slower (one forward and backward pass of the
synthesis per frame and step).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch

from .metrics import msssim_t
from .model import IMF
from .model.imf import Reference

#: Steps `imfcodec encode` takes by default (see the model card for what they buy and cost).
DEFAULT_REFINE_STEPS = 30


def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (out - target).pow(2).mean(dim=(1, 2, 3))


def mse_msssim(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """50 MSE + (1 - MS-SSIM): near 24 dB the two terms are about equal, so refinement serves both metrics
    (MODEL_CARD.md, "Token refinement", compares the losses)."""
    return 50 * mse(out, target) + 1 - msssim_t(out.clamp(0, 1), target).to(out.dtype)


@contextmanager
def frozen(model: IMF, trainable: Sequence[torch.nn.Parameter] = ()) -> Iterator[None]:
    """Within the block model is in eval mode and only trainable get gradients; on leaving it, both are
    as they were. The encoder descends the decoder's error with respect to a few numbers, never all."""
    params = list(model.parameters())
    was_training, needs = model.training, [p.requires_grad for p in params]
    model.eval()
    for p in params:
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            yield
    finally:
        for p, r in zip(params, needs):
            p.requires_grad_(r)
        model.train(was_training)


def cosine(lr: float, step: int, steps: int) -> float:
    """The step size at step of steps, decayed from lr to 0 along a half cosine."""
    return lr * 0.5 * (1 + math.cos(math.pi * step / steps))


Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (output, target) -> per-frame loss (B,)


def token_rate(tokens: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
    """Each token's L1 distance (B,) from the token coded before it: the previous one in the batch, prev
    (1, dm) for the first (0 without prev, where nothing is known to predict from). The predictive coder
    predicts a token by the last one and codes the difference under a Laplace model, so its bits grow
    about linearly with this distance (log2(e) / (scale x step) bits per unit)."""
    first = tokens.new_zeros(1) if prev is None else (tokens[:1] - prev.to(tokens)).abs().sum(1)
    return torch.cat([first, (tokens[1:] - tokens[:-1]).abs().sum(1)])


def refine_tokens(model: IMF, ref: Reference, frames: torch.Tensor, tokens: torch.Tensor, steps: int,
                  lr: float = 0.05, loss: Loss = mse_msssim, bf16: bool = False, rate: float = 0.0,
                  prev: torch.Tensor | None = None) -> torch.Tensor:
    """Tokens (B, dm) that reconstruct frames (B, 3, H, W) in [0, 1] from ref with a lower loss (per frame).

    Adam on the tokens with a cosine-decayed step size; each frame keeps the best token any step
    reached, so the result is never worse than the input tokens. Frames are independent: Adam is
    element-wise and the loss is a sum over frames. With bf16 the synthesis runs under bfloat16 autocast
    (the loss in float32): only the encoder refines, so its arithmetic need not match any decoder's. With
    rate > 0 each frame's loss adds rate x :func:`token_rate` (prev: the token coded before the batch), so
    refinement prefers tokens that are cheap to code; the frames are then coupled through their neighbours.
    """
    if steps <= 0:
        return tokens
    target = frames.detach()
    t = tokens.detach().clone().requires_grad_(True)
    best, best_err = tokens.detach().clone(), torch.full((len(tokens),), math.inf, device=tokens.device)
    opt = torch.optim.Adam([t], lr=lr)
    with frozen(model):
        for step in range(steps + 1):
            with torch.autocast(device_type=t.device.type, dtype=torch.bfloat16, enabled=bf16):
                out = model.synthesize(t, ref)
            err = loss(out.float(), target)
            if rate:
                err = err + rate * token_rate(t, prev)
            better = err.detach() < best_err
            best[better] = t.detach()[better]
            best_err = torch.where(better, err.detach(), best_err)
            if step == steps:
                break
            for g in opt.param_groups:
                g["lr"] = cosine(lr, step, steps)
            opt.zero_grad(set_to_none=True)
            err.sum().backward()
            opt.step()
    return best
