"""Refined tokens as targets for the encoder's token guess (imfcodec.train.guess, ``--targets``).

Through the frozen decoder alone the guess barely moves from E_T (MODEL_CARD.md, "The encoder's token
guess"). Here the encoder's own refinement (`--steps` of analysis by synthesis from E_T's token, 30 by
default, on the loss the encoder uses) is run once, offline, on (reference, current) pairs of the
training clips, and the tokens it finds are stored, so that the guess can also learn them directly.
Pairs are drawn without augmentation (the stored rows are the frames as cached), the current frame
within `--distance` frames of the reference, every clip equally often. The output is an .npz of int64
cache rows and float32 tokens, appended to in blocks so that a long run can be stopped at any time and
resumed.

    python -m imfcodec.train.guess_targets WEIGHTS --data DIR [--data DIR ...] --out TARGETS.npz
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from ..fast import native_bf16
from ..model.weights import load_weights
from ..refine import DEFAULT_REFINE_STEPS, mse_msssim, refine_tokens
from .data import FrameCache, find_videos


def draw_pairs(cache: FrameCache, n: int, distance: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) cache rows (reference, current) of the same clip, at most distance frames apart."""
    rows = np.empty((n, 2), dtype=np.int64)
    for i in range(n):
        clip = cache.clips[int(rng.integers(len(cache.clips)))]
        r = int(rng.integers(clip.count))
        c = int(np.clip(r + rng.integers(-distance, distance + 1), 0, clip.count - 1))
        rows[i] = clip.start + r, clip.start + c
    return rows


def load_targets(path: str) -> dict[str, np.ndarray]:
    """A targets file's arrays (rows, tokens, et, gain, weights_id); empty if there is none yet."""
    if not os.path.exists(path):
        return {}
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _save(path: str, parts: dict[str, np.ndarray]) -> None:
    tmp = path + ".part.npz"
    np.savez(tmp, **parts)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m imfcodec.train.guess_targets",
                                description="Refine tokens of training pairs offline, as targets for the "
                                            "token guess (appends to OUT).")
    p.add_argument("weights")
    p.add_argument("--data", action="append", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--pairs", type=int, default=4000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=DEFAULT_REFINE_STEPS)
    p.add_argument("--distance", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    lm = load_weights(a.weights)
    model = lm.model.eval()
    cache = FrameCache(find_videos(a.data), model.cfg.size, a.cache_dir)
    have = load_targets(a.out)
    done = len(have.get("rows", ()))
    rng = np.random.default_rng(a.seed + 104729 * done)
    t0 = time.time()
    while done < a.pairs:
        rows = draw_pairs(cache, a.batch, a.distance, rng)
        ref_frames, cur = cache.tensor(rows[:, 0]), cache.tensor(rows[:, 1])
        with torch.no_grad():
            ref = model.reference(ref_frames)
            start = model.token_encoder(cur)
        tokens = refine_tokens(model, ref, cur, start, a.steps, bf16=native_bf16())
        with torch.no_grad():
            gain = (mse_msssim(model.synthesize(start, ref).float(), cur)
                    - mse_msssim(model.synthesize(tokens, ref).float(), cur))
        block = {"rows": rows, "tokens": tokens.float().numpy(), "et": start.float().numpy(),
                 "gain": gain.numpy().astype(np.float32)}
        have = {k: np.concatenate([have[k], v]) if k in have else v for k, v in block.items()}
        have["weights_id"] = np.frombuffer(lm.model_id, dtype=np.uint8)
        _save(a.out, have)
        done = len(have["rows"])
        print(f"{done} pairs, {time.time() - t0:.0f} s, mean loss gain {float(have['gain'].mean()):.4f}",
              flush=True)


if __name__ == "__main__":
    main()
