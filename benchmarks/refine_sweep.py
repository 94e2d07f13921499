"""What encoder-side token refinement buys per step, step size and loss (MODEL_CARD.md, "Token refinement").

Every 12th frame of each clip's first 100 (frames 1, 13, ..., 97) is synthesised from the uncoded first
frame, with E_T's tokens refined by `imfcodec.refine.refine_tokens` at each setting; prints the mean PSNR
(RGB) and MS-SSIM over clips, each clip's PSNR, and the seconds the setting took.

    python benchmarks/refine_sweep.py [WEIGHTS] [CLIP ...] [--steps 0,10,30] [--lr 0.05] [--loss mse_msssim]
"""
from __future__ import annotations

import argparse
import glob
import itertools
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from imfcodec.frames import to_tensor  # noqa: E402
from imfcodec.metrics import msssim, msssim_t, psnr_rgb  # noqa: E402
from imfcodec.model.weights import load_weights, shipped_path  # noqa: E402
from imfcodec.refine import mse, mse_msssim, refine_tokens  # noqa: E402
from imfcodec.video_io import read_frames, to_model  # noqa: E402

LOSSES = {"mse": mse, "mse_msssim": mse_msssim,
          "msssim": lambda out, target: 1 - msssim_t(out.clamp(0, 1), target).to(out.dtype)}


def _list(kind):
    return lambda s: [kind(v) for v in s.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("weights", nargs="?", default=shipped_path(32, 256))
    ap.add_argument("clips", nargs="*")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--every", type=int, default=12)
    ap.add_argument("--steps", type=_list(int), default=[0, 10, 20, 30, 50])
    ap.add_argument("--lr", type=_list(float), default=[0.05])
    ap.add_argument("--loss", type=_list(str), default=["mse_msssim"])
    a = ap.parse_args()
    clips = a.clips or sorted(glob.glob(os.path.join(os.path.dirname(__file__), "../../shared/data/eval/*.mp4")))
    model = load_weights(a.weights).model.eval()
    size = model.cfg.size
    data = []
    with torch.no_grad():
        for path in clips:
            x = to_tensor([to_model(f, size, size, "crop") for f in read_frames(path, max_frames=a.frames)])
            targets = x[1::a.every]
            data.append((model.reference(x[:1]), targets, model.encode_tokens(targets)))
    print("loss steps lr | PSNR-RGB dB MS-SSIM | per-clip PSNR | seconds")
    for loss, steps, lr in itertools.product(a.loss, a.steps, a.lr):
        t0, ps, ms = time.time(), [], []
        for ref, targets, tokens in data:
            t = refine_tokens(model, ref, targets, tokens, steps, lr, loss=LOSSES[loss])
            with torch.no_grad():
                out = model.synthesize(t, ref).clamp(0, 1)
            ps.append(psnr_rgb(out, targets).mean().item())
            ms.append(float(np.mean(msssim(out, targets))))
        print(f"{loss} {steps} {lr:g} | {np.mean(ps):.2f} {np.mean(ms):.4f} | "
              f"{' '.join(f'{p:.2f}' for p in ps)} | {time.time() - t0:.0f}", flush=True)


if __name__ == "__main__":
    main()
