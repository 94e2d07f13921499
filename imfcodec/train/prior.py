"""Fitting the learned coder's prior: a float network trained on token sequences to minimise the exact
coding cost of the quantized tokens, then exported to the integer network that the coder runs.

One call does it all from a weights file: ``train_prior_from_weights(weights, ["data/train"])``, or
``python -m imfcodec.train.prior WEIGHTS DATA_DIR...``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
import zfpy
from safetensors.numpy import save as save_safetensors

from entropy import learned as L

from ..frames import to_tensor
from ..model.weights import file_id, load_weights
from ..runtime import shipped_prior_path
from ..video_io import read_frames, to_model
from .data import FrameCache, find_videos

#: The coder's scale table spans log2(scale / qstep) in [-4, 6]; training sees the same clamp.
LOG2_SCALE_RANGE = (-(L.SCALE_ZERO / 4), (L.NUM_SCALES - 1 - L.SCALE_ZERO) / 4)


class FloatPrior(nn.Module):
    """The prior in float: normalised previous token and a first-token flag -> MLP plus a linear skip ->
    mean and log2 scale in token units. It exports exactly to :class:`entropy.learned.IntPrior`'s form."""

    def __init__(self, dm: int, hidden: int, layers: int, mu: np.ndarray, sigma: np.ndarray):
        super().__init__()
        self.dm = dm
        self.register_buffer("mu", torch.as_tensor(mu, dtype=torch.float32))
        self.register_buffer("sigma", torch.as_tensor(sigma, dtype=torch.float32))
        widths = [dm + 1] + [hidden] * layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.out = nn.Linear(widths[-1], 2 * dm)
        self.skip = nn.Linear(dm + 1, 2 * dm, bias=False)
        with torch.no_grad():  # start as "same as the previous token, spread sigma / 4"
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()
            self.out.bias[dm:] = -2.0
            self.skip.weight.zero_()
            self.skip.weight[:dm, :dm] = torch.eye(dm)

    def forward(self, prev: torch.Tensor, first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log2 scale) for previous tokens (B, dm) (zeros where first) and flags (B,) in {0, 1}."""
        f = first[:, None]
        z = torch.cat([(prev - self.mu) / self.sigma * (1 - f), f], 1)
        h = z
        for layer in self.hidden:
            h = torch.relu(layer(h))
        o = self.out(h) + self.skip(z)
        return self.mu + self.sigma * o[:, :self.dm], torch.log2(self.sigma) + o[:, self.dm:]

    def unit_exponents(self) -> np.ndarray:
        """Per dimension, the integer network counts token values in units of 2**exp, exp = ceil(log2 sigma)."""
        return np.ceil(np.log2(self.sigma.double().numpy())).astype(np.int64)

    def folded(self) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The affine maps on the integer network's input [x / 2**exp, flag] (x = 0 where first), float64,
        with the normalisation folded in: the hidden layers' (weight, bias), then the output's (weight,
        skip, bias), whose mean rows are in units of 2**exp too."""
        dm = self.dm
        mu, sigma = self.mu.double().numpy(), self.sigma.double().numpy()
        unit = np.ldexp(1.0, self.unit_exponents())
        a = np.zeros((dm + 1, dm + 1))  # z = a @ [x / unit, flag] + a0
        a[:dm, :dm] = np.diag(unit / sigma)
        a[:dm, dm] = mu / sigma
        a[dm, dm] = 1
        a0 = np.concatenate([-mu / sigma, [0.0]])
        hidden = []
        for i, layer in enumerate(self.hidden):  # the first layer (or the output, if none) sees z
            w, b = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
            hidden.append((w @ a, w @ a0 + b) if i == 0 else (w, b))
        w_out, b_out = self.out.weight.detach().double().numpy(), self.out.bias.detach().double().numpy()
        s = self.skip.weight.detach().double().numpy()
        if not self.hidden:
            w_out, b_out = w_out @ a, w_out @ a0 + b_out
        gain = np.concatenate([sigma / unit, np.ones(dm)])
        base = np.concatenate([mu / unit, np.log2(sigma)])
        return hidden, (gain[:, None] * w_out, gain[:, None] * (s @ a), gain * (s @ a0 + b_out) + base)


def laplace_bits(q: torch.Tensor, mean: torch.Tensor, log2_scale: torch.Tensor) -> torch.Tensor:
    """-log2 P(q) for integers q under a Laplace(mean, 2**log2_scale) integrated over [q - 1/2, q + 1/2]."""
    b = torch.exp2(log2_scale)
    lo, hi = q - 0.5 - mean, q + 0.5 - mean
    tail = math.log(0.5) + torch.log(-torch.expm1(-1 / b))  # log of the bin mass / exp(-near edge / b)
    near = torch.minimum(lo.abs(), hi.abs())
    side = tail - near / b
    # clamped exponents: where() differentiates both branches, and an overflow here would make NaN gradients
    straddle = torch.log((1 - 0.5 * torch.exp(lo.clamp(max=0) / b) - 0.5 * torch.exp((-hi).clamp(max=0) / b))
                         .clamp_min(1e-30))
    return -torch.where((lo < 0) & (hi > 0), straddle, side) / math.log(2)


def _mean_bits(model: FloatPrior, prev: torch.Tensor, cur: torch.Tensor, first: torch.Tensor,
               step_q: torch.Tensor) -> torch.Tensor:
    """Mean coding cost of the quantized `cur` after the dequantized `prev` (ignored where first)."""
    x = torch.round(prev / step_q) * step_q * (1 - first[:, None])
    mean, log2s = model(x, first)
    log2s = (log2s - torch.log2(step_q)).clamp(*LOG2_SCALE_RANGE)
    return laplace_bits(torch.round(cur / step_q), mean / step_q, log2s).mean()


@torch.no_grad()
def _held_out_bits(model: FloatPrior, seqs: list[np.ndarray], qstep: float) -> float:
    prev, cur = (torch.from_numpy(a) for a in _pairs(seqs))
    return _mean_bits(model, prev, cur, torch.zeros(len(cur)), torch.tensor(qstep)).item()


def _pairs(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    prev = np.concatenate([s[:-1] for s in seqs if len(s) > 1])
    cur = np.concatenate([s[1:] for s in seqs if len(s) > 1])
    return prev, cur


def quantization_mse(seqs: list[np.ndarray], qstep: float) -> float:
    t = np.concatenate(seqs).astype(np.float32)
    return float(np.mean((np.rint(t / np.float32(qstep)) * np.float32(qstep) - t) ** 2))


def zfp_mse(seqs: list[np.ndarray], rate: float = 8.0, chunk: int = 32) -> float:
    """Mean squared error of ZFP fixed-rate coding of the sequences in chunks, as the codec does it."""
    err, count = 0.0, 0
    for s in seqs:
        for i in range(0, len(s), chunk):
            a = np.ascontiguousarray(s[i:i + chunk], dtype=np.float32)
            comp = zfpy.compress_numpy(a, rate=rate, write_header=False)
            back = zfpy._decompress(comp, zfpy.type_float, list(a.shape), rate=rate).reshape(a.shape)
            err += float(((back - a) ** 2).sum())
            count += a.size
    return err / count


def match_zfp_qstep(seqs: list[np.ndarray], rate: float = 8.0) -> float:
    """The quantization step whose error equals ZFP's at `rate` on these tokens (bisection in log step)."""
    target = zfp_mse(seqs, rate)
    lo, hi = math.log2(L.QSTEP_MIN), math.log2(L.QSTEP_MAX)
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if quantization_mse(seqs, 2 ** mid) < target else (lo, mid)
    return float(np.float32(2 ** lo))


def train_prior(token_sequences: list[np.ndarray], dm: int, qstep: float | None, steps: int = 3000,
                out: str | None = None, size: int = 256, hidden: int = 128, layers: tuple[int, ...] = (0, 2),
                batch: int = 1024, lr: float = 3e-3, weight_decay: float = 1e-4, qstep_spread: float = 2.0,
                first_prob: float = 0.05, holdout: float = 0.1, seed: int = 0,
                log: Callable[[str], None] | None = print, **meta) -> str:
    """Fit a prior on token sequences (each (T, dm), consecutive frames of one segment) and export it.

    qstep: the step the prior is tuned for (stored as the coder's default); None picks the step whose
    error matches ZFP at rate 8 on these tokens. Training draws steps log-uniformly within a factor
    `qstep_spread` of it, so the prior serves a range of steps. The loss is the exact coding cost,
    -log2 P(q | previous dequantized token), of the quantized tokens. One network is fitted per hidden
    layer count in `layers` (0: linear), and the state kept is the one that codes a held-out fraction
    `holdout` of the sequences best, so that the prior does not overfit the training clips. Returns the
    written path (default: the shipped imfcodec/weights/prior-dm{dm}-{size}.safetensors).
    """
    seqs = [np.asarray(s, np.float32) for s in token_sequences]
    if any(s.ndim != 2 or s.shape[1] != dm for s in seqs) or sum(len(s) > 1 for s in seqs) == 0:
        raise ValueError(f"need token sequences shaped (T, {dm}) with T >= 2")
    if qstep is None:
        qstep = match_zfp_qstep(seqs)
    qstep = float(np.float32(qstep))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(seqs))
    held = [seqs[i] for i in order[:int(len(seqs) * holdout)] if len(seqs[i]) > 1]
    fit = [seqs[i] for i in order[int(len(seqs) * holdout):]]
    everything = np.concatenate(fit)
    std = everything.std(0)
    mu, sigma = everything.mean(0), np.maximum(std, 1e-3 * std.max() + 1e-12)  # a constant dimension too
    prev, cur = (torch.from_numpy(a) for a in _pairs(fit))
    best, best_bits, t0 = None, math.inf, time.time()
    for depth in layers:
        model = FloatPrior(dm, hidden, depth, mu, sigma)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.05)
        for step in range(steps):
            idx = torch.from_numpy(rng.integers(len(cur), size=batch))
            first = torch.from_numpy(rng.random(batch) < first_prob).float()  # these rows learn y's marginal
            step_q = torch.from_numpy(qstep * qstep_spread ** rng.uniform(-1, 1, (batch, 1))).float()
            bits = _mean_bits(model, prev[idx], cur[idx], first, step_q)
            opt.zero_grad()
            bits.backward()
            opt.step()
            sched.step()
            if (step + 1) % 250 == 0 or step == steps - 1:
                score = _held_out_bits(model, held or fit, qstep)
                if score < best_bits:
                    best, best_bits = copy.deepcopy(model), score
                if log:
                    log(f"prior ({depth} hidden layers) step {step + 1}: {bits.item():.3f} bits/value, "
                        f"held out {score:.3f} ({time.time() - t0:.0f}s)")
    path = out or shipped_prior_path(dm, size)
    export_prior(best, path, qstep, steps=steps, size=size, frames=int(len(everything)),
                 held_out_bits=round(best_bits, 4), **meta)
    return path


def _fixed(x: np.ndarray, bits: int, limit: int) -> np.ndarray:
    return np.clip(np.rint(x * 2.0 ** bits), 1 - limit, limit - 1).astype(np.int64)


def export_prior(model: FloatPrior, path: str, qstep: float, **meta) -> bytes:
    """Write the integer prior: weights rounded to FW fractional bits (int32), biases to FA + FW (int64);
    returns its id."""
    hidden, (w_out, skip, b_out) = model.folded()
    tensors = {}
    for i, (w, b) in enumerate(hidden):
        tensors[f"w{i}"] = _fixed(w, L.FW, L.W_LIMIT).astype(np.int32)
        tensors[f"b{i}"] = _fixed(b, L.FA + L.FW, L.B_LIMIT)
    tensors.update(w_out=_fixed(w_out, L.FW, L.W_LIMIT).astype(np.int32),
                   skip=_fixed(skip, L.FW, L.W_LIMIT).astype(np.int32), b_out=_fixed(b_out, L.FA + L.FW, L.B_LIMIT),
                   exp=np.clip(model.unit_exponents(), -L.MAX_EXP, L.MAX_EXP).astype(np.int32))
    md = {"format": L.FORMAT, "dm": str(model.dm), "layers": str(len(hidden)), "qstep": repr(qstep)}
    md.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    data = save_safetensors(tensors, metadata=md)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".part", "wb") as f:
        f.write(data)
    os.replace(path + ".part", path)
    return L.prior_id(data)


def coded_bits(path: str, seqs: list[np.ndarray], qstep: float | None = None, chunk: int = 32
               ) -> tuple[float, float]:
    """Bits per token value and mean squared error of the learned coder on sequences (one segment each)."""
    coder = L.LearnedCoder.for_encoding(seqs[0].shape[1], qstep, prior=path)
    nbytes, err, count = 0, 0.0, 0
    for s in seqs:
        coder.reset()
        for i in range(0, len(s), chunk):
            payload, deq = coder.encode(s[i:i + chunk])
            nbytes += len(payload)
            err += float(((deq - s[i:i + chunk]) ** 2).sum())
            count += deq.size
    return 8 * nbytes / count, err / count


def _clip_frames(data: list[str], size: int, cache_dir: str | None, max_frames: int | None
                 ) -> Iterator[np.ndarray]:
    """Yields each clip's frames (T, size, size, 3) uint8: from the training frame cache when given one
    (it is keyed by the file list, so the training run's cache is reused), else decoded directly."""
    videos = find_videos(data)
    if cache_dir:
        cache = FrameCache(videos, size, cache_dir)
        for c in cache.clips:
            yield cache.frames[c.start:c.start + min(c.count, max_frames or c.count)]
        return
    for v in videos:
        frames = [to_model(img, size, size, "crop") for img in read_frames(v, max_frames=max_frames)]
        if len(frames) >= 2:
            yield np.stack(frames)


@torch.inference_mode()
def extract_tokens(weights: str, data: list[str], cache_dir: str | None = None, max_frames: int | None = None,
                   batch: int = 16) -> tuple[list[np.ndarray], int]:
    """Token sequences (one per clip) that the weights' token encoder extracts from the videos under
    `data`, exactly as the codec feeds it; returns them and the model's frame size."""
    model = load_weights(weights).model
    size = model.cfg.size
    seqs = []
    for clip in _clip_frames(data, size, cache_dir, max_frames):
        toks = [model.encode_tokens(to_tensor(clip[k:k + batch]))
                for k in range(0, len(clip), batch)]
        seqs.append(torch.cat(toks).float().numpy())
    return seqs, size


def train_prior_from_weights(weights: str, data: list[str], qstep: float | None = None, steps: int = 3000,
                             out: str | None = None, cache_dir: str | None = None,
                             max_frames: int | None = None, **kw) -> str:
    """Extract tokens with the weights' encoder from the clips under `data`, fit and export the prior
    (to the shipped prior-dm{dm}-{size}.safetensors unless `out`); returns its path."""
    seqs, size = extract_tokens(weights, data, cache_dir, max_frames)
    return train_prior(seqs, seqs[0].shape[1], qstep, steps, out, size=size,
                       weights_id=file_id(weights).hex(), **kw)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m imfcodec.train.prior",
                                description="Fit the learned coder's prior on the tokens of a weights file and export it.")
    p.add_argument("weights")
    p.add_argument("data", nargs="+")
    p.add_argument("--qstep", type=float, default=None, help="default: match ZFP rate 8's error")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--out", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--max-frames", type=int, default=None, help="per clip")
    a = p.parse_args(argv)
    path = train_prior_from_weights(a.weights, a.data, a.qstep, a.steps, a.out, a.cache_dir, a.max_frames)
    print(path)


if __name__ == "__main__":
    main()
