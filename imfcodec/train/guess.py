"""Train the encoder's token guess (imfcodec.model.guess) through a frozen decoder.

Each step draws (reference, current) pairs, derives the decoder's reference from the reference frame, and
descends the loss the encoder's refinement uses (50 MSE + 1 - MS-SSIM) of the frame the decoder rebuilds
from the guess's token, with respect to the guess's parameters only. The decoder and E_T stay as shipped,
so every .imf still decodes. Evaluation compares the guess with E_T on held-out clips (frame 0 the
reference); the best guess by that loss is kept.

With ``--targets`` (an .npz from imfcodec.train.guess_targets: pairs of the same training cache and the
tokens the encoder's refinement found for them) the batches are those pairs, and the loss adds
``--target-weight`` x the mean squared distance of the guess's tokens from the refined ones: a direct pull
toward what refinement finds, where the decoder's gradient alone barely moves the guess.

    python -m imfcodec.train.guess WEIGHTS --data DIR [--data DIR ...] --eval-data DIR --out RUN
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..metrics import msssim, psnr_rgb
from ..model import IMF
from ..model.guess import TokenGuess, guess_from, save_guess
from ..model.weights import load_weights
from ..refine import cosine, frozen, mse_msssim
from .data import FrameCache, PairSampler, find_videos, load_clip
from .guess_targets import load_targets


@dataclass
class GuessOptions:
    weights: str
    data: list[str]
    out: str
    eval_data: list[str] | None = None
    steps: int = 4000
    batch: int = 4
    lr: float = 1e-4
    eval_every: int = 250
    eval_frames: int = 100
    eval_stride: int = 4
    bf16: bool = False
    cache_dir: str = ""
    ckpt_minutes: float = 5.0
    max_minutes: float = 0.0
    seed: int = 0
    targets: str = ""
    target_weight: float = 100.0


@torch.no_grad()
def compare(model: IMF, guess: TokenGuess, clips: list[torch.Tensor], batch: int = 8) -> dict:
    """Mean PSNR, MS-SSIM and refinement loss over frames 1.. of each clip (frame 0 the reference), with
    E_T's tokens (``et_*``) and the guess's (``guess_*``)."""
    guess.eval()
    rows: dict[str, list[float]] = {}
    for frames in clips:
        ref = model.reference(frames[:1])
        target = frames[1:]
        for name, enc in (("et", lambda x: model.token_encoder(x)), ("guess", lambda x: guess(x, frames[:1]))):
            out = torch.cat([model.synthesize(enc(target[i:i + batch]), ref).clamp(0, 1)
                             for i in range(0, len(target), batch)])
            rows.setdefault(f"{name}_psnr", []).append(float(psnr_rgb(out, target).mean()))
            rows.setdefault(f"{name}_msssim", []).append(float(msssim(out, target).mean()))
            rows.setdefault(f"{name}_loss", []).append(float(mse_msssim(out, target).mean()))
    guess.train()
    return {k: float(np.mean(v)) for k, v in rows.items()}


class GuessTrainer:
    def __init__(self, opt: GuessOptions):
        self.opt = opt
        os.makedirs(opt.out, exist_ok=True)
        lm = load_weights(opt.weights)
        self.model, self.weights_id = lm.model, lm.model_id
        for p in self.model.parameters():  # the decoder stays as shipped
            p.requires_grad_(False)
        self.guess = guess_from(self.model)
        self.adam = torch.optim.Adam(self.guess.parameters(), lr=opt.lr)
        cache_dir = opt.cache_dir or os.path.join(opt.out, "cache")
        size = self.model.cfg.size
        self.sampler = PairSampler(FrameCache(find_videos(opt.data), size, cache_dir), seed=opt.seed, even=True)
        self.clips = []
        if opt.eval_data:
            ecache = FrameCache(find_videos(opt.eval_data), size, cache_dir)
            self.clips = [load_clip(ecache, i, opt.eval_frames, opt.eval_stride) for i in range(len(ecache.clips))]
        self.targets = self._targets(opt.targets) if opt.targets else None
        self.step, self.best = 0, math.inf
        if os.path.exists(self.ckpt_path):
            self._load()

    def _targets(self, path: str) -> dict[str, np.ndarray]:
        t = load_targets(path)
        if not t:
            raise ValueError(f"no targets file: {path}")
        if bytes(t["weights_id"]) != self.weights_id:
            raise ValueError(f"{path} was refined with other weights")
        if int(t["rows"].max()) >= len(self.sampler.cache.frames):
            raise ValueError(f"{path} was made from another frame cache")
        return t

    def _target_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = self.targets
        pick = self.sampler.rng.integers(len(t["rows"]), size=self.opt.batch)
        cache = self.sampler.cache
        rows = t["rows"][pick]
        return cache.tensor(rows[:, 0]), cache.tensor(rows[:, 1]), torch.from_numpy(t["tokens"][pick])

    @property
    def ckpt_path(self) -> str:
        return os.path.join(self.opt.out, "checkpoint.pt")

    def _save(self) -> None:
        state = {"guess": self.guess.state_dict(), "adam": self.adam.state_dict(), "step": self.step,
                 "best": self.best, "weights_id": self.weights_id.hex()}
        torch.save(state, self.ckpt_path + ".part")
        os.replace(self.ckpt_path + ".part", self.ckpt_path)

    def _load(self) -> None:
        state = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        if state["weights_id"] != self.weights_id.hex():
            raise ValueError(f"{self.ckpt_path} was made for other weights")
        self.guess.load_state_dict(state["guess"])
        self.adam.load_state_dict(state["adam"])
        self.step, self.best = int(state["step"]), float(state["best"])
        self.sampler.rng = np.random.default_rng(self.opt.seed + 7919 * self.step)

    def _log(self, name: str, row: dict) -> None:
        path = os.path.join(self.opt.out, name)
        new = not os.path.exists(path)
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    def train_step(self) -> float:
        """One Adam step of the guess on a batch of pairs; returns the batch's loss."""
        if self.targets is not None:
            ref_frames, cur, target = self._target_batch()
        else:
            (ref_frames, cur), target = self.sampler.batch(self.opt.batch), None
        for g in self.adam.param_groups:
            g["lr"] = cosine(self.opt.lr, self.step, self.opt.steps)
        amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.opt.bf16)
        with torch.no_grad(), amp:
            ref = self.model.reference(ref_frames)
        with frozen(self.model, list(self.guess.parameters())):
            with amp:  # the loss itself in float32: MS-SSIM's powers overflow in bfloat16
                tokens = self.guess(cur, ref_frames)
                out = self.model.synthesize(tokens, ref).float()
            loss = mse_msssim(out, cur).mean()
            if target is not None:
                loss = loss + self.opt.target_weight * (tokens.float() - target).pow(2).mean()
            self.adam.zero_grad(set_to_none=True)
            loss.backward()
        if torch.isfinite(loss):
            torch.nn.utils.clip_grad_norm_(self.guess.parameters(), 1.0)
            self.adam.step()
        return loss.item()

    def evaluate(self) -> dict | None:
        if not self.clips:
            return None
        r = compare(self.model, self.guess, self.clips)
        self._log("eval.csv", {"step": self.step, **{k: round(v, 4) for k, v in r.items()}})
        if r["guess_loss"] < self.best:
            self.best = r["guess_loss"]
            self.export(os.path.join(self.opt.out, "best.safetensors"), r)
        return r

    def export(self, path: str, measured: dict | None = None) -> None:
        meta = {"steps": str(self.step), "data": ",".join(self.opt.data),
                "loss": "50 MSE + (1 - MS-SSIM) through the frozen decoder"}
        if measured:
            meta["eval"] = ", ".join(f"{k} {v:.4f}" for k, v in measured.items())
        save_guess(self.guess, self.model.cfg, self.weights_id, path, **meta)

    def fit(self) -> None:
        opt = self.opt
        t0 = last = time.time()
        if self.step == 0:
            self.evaluate()
        while self.step < opt.steps:
            loss = self.train_step()
            self.step += 1
            if self.step % 25 == 0:
                self._log("train.csv", {"step": self.step, "loss": round(loss, 5),
                                        "elapsed_s": round(time.time() - t0, 1)})
            if opt.eval_every and self.step % opt.eval_every == 0:
                self.evaluate()
            out_of_time = opt.max_minutes and time.time() - t0 > opt.max_minutes * 60
            if time.time() - last > opt.ckpt_minutes * 60 or out_of_time:
                self._save()
                last = time.time()
            if out_of_time:
                break
        self._save()
        self.export(os.path.join(opt.out, "last.safetensors"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m imfcodec.train.guess",
                                description="Train the encoder's token guess through a frozen decoder "
                                            "(resumes from OUT/checkpoint.pt).")
    p.add_argument("weights")
    p.add_argument("--data", action="append", required=True)
    p.add_argument("--eval-data", action="append")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the frozen decoder")
    p.add_argument("--cache-dir", default="")
    p.add_argument("--max-minutes", type=float, default=0.0)
    p.add_argument("--targets", default="", help="refined tokens of training pairs (imfcodec.train.guess_targets)")
    p.add_argument("--target-weight", type=float, default=100.0)
    a = p.parse_args(argv)
    GuessTrainer(GuessOptions(a.weights, a.data, a.out, a.eval_data, a.steps, a.batch, a.lr, a.eval_every,
                              bf16=a.bf16, cache_dir=a.cache_dir, max_minutes=a.max_minutes,
                              targets=a.targets, target_weight=a.target_weight)).fit()


if __name__ == "__main__":
    main()
