"""Fine-tune the decoder on refined tokens (MODEL_CARD.md, "What did not help (tenth session)").

The codec decodes refined tokens, not E_T's, so this trains the decoder where it is used: each step
refines E_T's tokens of a batch of training pairs for a few steps against the frozen decoder, then takes
one Adam step on everything but E_T (which also gives the reference token, so it stays fixed) at those
tokens, on the refinement's own loss, 50 MSE + (1 - MS-SSIM). Every --every steps it scores frames 1, 25,
49, 73 and 97 of each eval clip, refined 30 steps from the uncoded frame 0, and saves the state dict.

    python benchmarks/refined_finetune.py [--lr 3e-5] [--refine 8] [--steps 2000] [--every 100] [--out DIR]
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from imfcodec.metrics import msssim, psnr_rgb  # noqa: E402
from imfcodec.model.weights import load_weights, shipped_path  # noqa: E402
from imfcodec.refine import mse_msssim, refine_tokens  # noqa: E402
from imfcodec.train.data import FrameCache, PairSampler, find_videos  # noqa: E402
from imfcodec.video_io import read_frames, to_model  # noqa: E402

SHARED = os.path.join(os.path.dirname(__file__), "../../shared/data")


def eval_set(size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for path in sorted(glob.glob(os.path.join(SHARED, "eval/*.mp4"))):
        fr = np.stack([to_model(f, size, size, "crop") for f in read_frames(path, max_frames=100)])
        x = torch.from_numpy(fr).permute(0, 3, 1, 2).float() / 255
        out.append((x[:1], x[1::24]))
    return out


def evaluate(model, data) -> tuple[float, float, list[float]]:
    model.eval()
    ps, ms = [], []
    for r, tg in data:
        with torch.no_grad():
            ref, t0 = model.reference(r), model.encode_tokens(tg)
        t = refine_tokens(model, ref, tg, t0, 30)
        with torch.no_grad():
            out = model.synthesize(t, ref).clamp(0, 1)
        ps.append(float(psnr_rgb(out, tg).mean()))
        ms.append(float(np.mean(msssim(out, tg))))
    return float(np.mean(ps)), float(np.mean(ms)), [round(p, 2) for p in ps]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--refine", type=int, default=8, help="refinement steps per training batch")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--out", default="runs/refined-finetune")
    ap.add_argument("--cache", default="/work/cache", help="frame cache folder (imfcodec train's)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = load_weights(shipped_path(32, 256)).model
    pairs = PairSampler(FrameCache(find_videos([os.path.join(SHARED, "train")]), 256, a.cache), seed=1, max_gap=40)
    data = eval_set(model.cfg.size)
    for p in model.token_encoder.parameters():
        p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=a.lr, betas=(0.9, 0.999))
    os.makedirs(a.out, exist_ok=True)
    print("step 0 eval", evaluate(model, data), flush=True)
    t_start = time.time()
    for step in range(1, a.steps + 1):
        ref, cur = pairs.batch(a.batch)
        model.eval()
        with torch.no_grad():
            r, t0 = model.reference(ref), model.encode_tokens(cur)
        t = refine_tokens(model, r, cur, t0, a.refine).detach()
        model.train()
        for g in opt.param_groups:
            g["lr"] = a.lr * min(1.0, step / 20)
        loss = mse_msssim(model.synthesize(t, model.reference(ref)), cur).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
        if torch.isfinite(loss) and torch.isfinite(gn):
            opt.step()
        if step % 10 == 0:
            print(f"step {step} loss {loss.item():.4f} gn {gn:.3f} {(time.time() - t_start) / step:.1f}s/step",
                  flush=True)
        if step % a.every == 0:
            print(f"step {step} eval", evaluate(model, data), flush=True)
            torch.save(model.state_dict(), os.path.join(a.out, f"step{step}.pt"))


if __name__ == "__main__":
    main()
