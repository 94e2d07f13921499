"""Compare weights files on folders of clips, through the network alone (no bitstream).

    python benchmarks/eval_weights.py WEIGHTS... --data DIR [--data DIR] [--frames 100] [--stride 2]
        [--keyframe-every 34]

Each clip is cut into segments of --keyframe-every frames whose first frame, uncoded, is the reference;
every --stride-th frame is rebuilt from its E_T token. Prints, per weights file and folder, mean PSNR-RGB
and MS-SSIM, the same for repeating the segment's reference, and the share of frames (reference frames
excluded) rebuilt at least as well as that repeat in PSNR.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from imfcodec.bench.clip import mapped_rgb
from imfcodec.frames import to_tensor
from imfcodec.metrics import msssim, psnr_rgb
from imfcodec.model.weights import load_weights
from imfcodec.train.data import find_videos


@torch.no_grad()
def score(model, frames: torch.Tensor, every: int, stride: int) -> np.ndarray:
    """Rows of (psnr, msssim, repeat psnr, repeat msssim) for the sampled non-reference frames."""
    rows = []
    for start in range(0, len(frames), every):
        seg = frames[start:start + every]
        ref = model.reference(seg[:1])
        idx = list(range(stride, len(seg), stride))
        if not idx:
            continue
        target = seg[idx]
        out = model.synthesize(model.encode_tokens(target), ref).clamp(0, 1)
        rep = seg[:1].expand_as(target)
        rows += zip(psnr_rgb(out, target).tolist(), msssim(out, target).tolist(),
                    psnr_rgb(rep, target).tolist(), msssim(rep, target).tolist())
    return np.array(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="+")
    ap.add_argument("--data", action="append", required=True)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--keyframe-every", type=int, default=34)
    a = ap.parse_args()
    for w in a.weights:
        model = load_weights(w).model
        for d in a.data:
            rows = np.concatenate([score(model, to_tensor(mapped_rgb(v, model.cfg.size, a.frames)), a.keyframe_every,
                                         a.stride) for v in find_videos([d])])
            p, m, rp, rm = rows.mean(0)
            share = float((rows[:, 0] >= rows[:, 2]).mean())
            print(f"{w}  {d}: {p:.2f} dB / {m:.4f}   repeat {rp:.2f} / {rm:.4f}   "
                  f">= repeat at {share:.0%} of {len(rows)} frames", flush=True)


if __name__ == "__main__":
    main()
