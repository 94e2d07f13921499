"""Does the motion path do anything? For each clip: PSNR of frames synthesised from their own tokens, from
the reference's token instead (no motion information at all), the floor of repeating the first frame, how
far the 1/8-scale attention moves content (mean displacement of its expected source, in 8 px cells), and
how far the token flow warps the reference (mean length, in pixels; models that have one).

    python benchmarks/motion_check.py [WEIGHTS] [CLIP ...] [--frames 100] [--stride 4]
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from imfcodec.frames import to_tensor  # noqa: E402
from imfcodec.metrics import psnr_rgb  # noqa: E402
from imfcodec.model.weights import load_weights, shipped_path  # noqa: E402
from imfcodec.video_io import read_frames, to_model  # noqa: E402


def attention_displacement(attn: torch.Tensor, grid: int) -> float:
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    pos = torch.stack([xs.flatten(), ys.flatten()], 1).float()
    return float((attn @ pos - pos).norm(dim=-1).mean())


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("weights", nargs="?", default=shipped_path(32, 256))
    ap.add_argument("clips", nargs="*")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--stride", type=int, default=4)
    a = ap.parse_args()
    clips = a.clips or sorted(glob.glob(os.path.join(os.path.dirname(__file__), "../../shared/data/eval/*.mp4")))
    model = load_weights(a.weights).model.eval()
    size = model.cfg.size
    rows = []
    for path in clips:
        x = to_tensor([to_model(f, size, size, "crop") for f in read_frames(path, max_frames=a.frames)])
        ref, target = model.reference(x[:1]), x[1::a.stride]
        tokens = model.encode_tokens(target)
        moved, (att8, _) = model.synthesize(tokens, ref, return_attention=True)
        static = model.synthesize(ref.token.expand_as(tokens), ref)
        flow = model.flow(tokens, ref.token) if model.flow is not None else torch.zeros(1, 2, 1, 1)
        row = (psnr_rgb(moved.clamp(0, 1), target).mean().item(), psnr_rgb(static.clamp(0, 1), target).mean().item(),
               psnr_rgb(x[:1].expand_as(target), target).mean().item(), attention_displacement(att8, size // 8),
               float((flow * size / 2).norm(dim=1).mean()))
        rows.append(row)
        _report(os.path.basename(path), row)
    _report("mean", np.mean(rows, 0))


def _report(name: str, row) -> None:
    print(f"{name:32s} tokens {row[0]:6.2f} dB  reference token {row[1]:6.2f} dB  floor {row[2]:6.2f} dB  "
          f"attention moves {row[3]:.2f} cells  flow moves {row[4]:.1f} px")


if __name__ == "__main__":
    main()
