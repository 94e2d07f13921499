"""Per-window decoder adaptation: a few hundred offsets to the decoder's flow biases, fitted by the encoder.

The shipped network is the same for every video, but the encoder holds each window's frames, tokens and
references, so it can fit small offsets to a few decoder parameters for that window and send them (an
`ADPT` chunk, bitstream_spec.md). The flow MLP's biases are the cheapest parameters that help most: they
let the coarse flow follow the window's own motion (MODEL_CARD.md has the measurements). The offsets are
quantized with a uniform step and Rice-coded (entropy/rice.py), so decoding them is integer arithmetic and
one float32 multiply: exact on every machine.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from . import bitstream as bs
from .model import IMF
from .model.imf import Reference
from .refine import cosine, frozen, mse_msssim

#: The flow MLP's biases, in this order (the only scheme).
FLOW_BIASES = bs.ADAPT_FLOW_BIASES
SCHEMES = {FLOW_BIASES: ("flow.mlp.0.bias", "flow.mlp.2.bias", "flow.mlp.4.bias")}
#: Adam steps `imfcodec encode` takes per window by default; 0 = no adaptation (see the model card).
DEFAULT_ADAPT_STEPS = 100
DEFAULT_STEP = 0.01       # quantization step of the offsets, in bias units
#: Under a rate cap, offsets that do not fit are tried again at 2, 4, ... times the step, this many steps in all.
COARSER_STEPS = 4
#: About what an offset costs at DEFAULT_STEP, in bits (MODEL_CARD.md, "Decoder adaptation"): the room a
#: rate cap keeps for a window's offsets before any window has been fitted.
EXPECTED_BITS = 4


def parameters(model: IMF, scheme: int = FLOW_BIASES) -> list[torch.nn.Parameter]:
    """The parameters a scheme adapts, in coding order (ValueError when the model lacks them)."""
    named = dict(model.named_parameters())
    missing = [n for n in SCHEMES[scheme] if n not in named]
    if missing:
        raise ValueError(f"the model has no {', '.join(missing)} to adapt")
    return [named[n] for n in SCHEMES[scheme]]


def count(model: IMF, scheme: int = FLOW_BIASES) -> int:
    return sum(p.numel() for p in parameters(model, scheme))


def expected_bytes(model: IMF, scheme: int = FLOW_BIASES) -> int:
    """About what a window's ADPT payload takes at DEFAULT_STEP (a prior; the real size depends on the window)."""
    return bs.ADAPT_HEAD + count(model, scheme) * EXPECTED_BITS // 8


@contextmanager
def adaptable(model: IMF, scheme: int = FLOW_BIASES) -> Iterator["Adapter"]:
    """Within the block, offsets may be applied to model; on leaving it, the weights are as they were."""
    ps = parameters(model, scheme)
    base = [p.detach().clone() for p in ps]
    try:
        yield Adapter(ps, base)
    finally:
        with torch.no_grad():
            for p, b in zip(ps, base):
                p.copy_(b)


class Adapter:
    """Sets a scheme's parameters to the shipped values plus offsets (a flat float32 array)."""

    def __init__(self, params: list[torch.nn.Parameter], base: list[torch.Tensor]):
        self.params, self.base = params, base

    def set(self, offsets: np.ndarray | None) -> None:
        with torch.no_grad():
            i = 0
            for p, b in zip(self.params, self.base):
                if offsets is None:
                    p.copy_(b)
                    continue
                d = torch.from_numpy(np.ascontiguousarray(offsets[i:i + p.numel()])).view_as(p)
                p.copy_(b + d.to(b))
                i += p.numel()

    def fit(self, model: IMF, refs: list[Reference], segment: list[int], tokens: torch.Tensor,
            frames: torch.Tensor, steps: int, lr: float = 0.01, batch: int = 8, seed: int = 0) -> np.ndarray:
        """Offsets (float32, flat) that lower the loss of frames (N, 3, H, W) rebuilt from tokens (N, dm),
        frame i from refs[segment[i]]: Adam on random batches with a cosine-decayed step size, the other
        weights fixed. The model's parameters are left at the fitted offsets."""
        self.set(None)
        if steps <= 0 or not len(tokens):
            return np.zeros(sum(p.numel() for p in self.params), np.float32)
        gen = torch.Generator().manual_seed(seed)
        seg = torch.tensor(segment)
        opt = torch.optim.Adam(self.params, lr=lr)
        with frozen(model, self.params):
            for s in range(steps):
                ids = torch.randperm(len(tokens), generator=gen)[:batch]
                for g in opt.param_groups:
                    g["lr"] = cosine(lr, s, steps)
                loss = mse_msssim(model.synthesize(tokens[ids], gather(refs, seg[ids].tolist())),
                                  frames[ids]).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return torch.cat([(p.detach() - b).flatten() for p, b in zip(self.params, self.base)]).cpu().numpy()


@torch.no_grad()
def loss(model: IMF, refs: list[Reference], segment: list[int], tokens: torch.Tensor, frames: torch.Tensor,
         batch: int = 8) -> float:
    """The summed loss of frames rebuilt from tokens, frame i from refs[segment[i]]: what fit lowers."""
    total = 0.0
    for b in range(0, len(tokens), batch):
        ids = list(range(b, min(len(tokens), b + batch)))
        total += mse_msssim(model.synthesize(tokens[ids], gather(refs, [segment[i] for i in ids])),
                            frames[ids]).sum().item()
    return total


def gather(refs: list[Reference], which: list[int]) -> Reference:
    """One Reference of batch len(which) whose row i is refs[which[i]] (each of batch 1)."""
    if len(set(which)) == 1:
        return refs[which[0]]
    cat = lambda get: torch.cat([get(refs[i]) for i in which])  # noqa: E731
    return Reference(token=cat(lambda r: r.token), keys8=cat(lambda r: r.keys8), keys16=cat(lambda r: r.keys16),
                     feats=[cat(lambda r, k=k: r.feats[k]) for k in range(len(refs[which[0]].feats))])


def quantize(offsets: np.ndarray, step: float = DEFAULT_STEP) -> np.ndarray:
    """Offsets as integer multiples of step (int64)."""
    return np.rint(np.asarray(offsets, np.float64) / np.float32(step)).astype(np.int64)


def dequantize(q: np.ndarray, step: float) -> np.ndarray:
    """What the decoder adds to the shipped parameters: q times step, in float32 (exact everywhere)."""
    return q.astype(np.float32) * np.float32(step)


def fit_window(model: IMF, refs: list[Reference], segment: list[int], tokens: torch.Tensor, frames: torch.Tensor,
               steps: int, step: float, batch: int, room: int | None) -> tuple[bytes | None, int]:
    """A window's ADPT payload, and what it takes at the configured step. Offsets are fitted to the window's
    frames and tokens (frame i from refs[segment[i]]) and quantized at step, or, when room (bytes under a rate
    cap) is given and they do not fit, at 2, 4, ... times it. The payload is None when even the coarsest
    offsets do not fit or, quantized, they do not lower the window's loss. The model is back at its weights
    afterwards."""
    with adaptable(model) as a:
        offsets = a.fit(model, refs, segment, tokens, frames, steps, batch=batch)
        sizes = []
        for s in (step * 2 ** i for i in range(COARSER_STEPS)):
            q = quantize(offsets, s)
            payload = bs.pack_adapt(q, s)
            sizes.append(len(payload))
            if room is None or len(payload) <= room:
                break
        if room is not None and sizes[-1] > room:
            return None, sizes[0]
        a.set(dequantize(q, s))
        after = loss(model, refs, segment, tokens, frames, batch)
        a.set(None)
        if after >= loss(model, refs, segment, tokens, frames, batch):
            return None, sizes[0]
    return payload, sizes[0]
