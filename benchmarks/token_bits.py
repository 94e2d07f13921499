"""Token bits against quality: ZFP fixed rate and the predictive coder on E_T's tokens of real clips.

Per clip (first FRAMES frames, 256x256 centre crop as the codec does): segments of 34 frames, each with its
first frame as the reference (uncoded) and its other 33 tokens coded as one chunk, the coder's context reset
at every segment. For each coder setting: bits per token value, and the PSNR-RGB and MS-SSIM of the frames
synthesised from the decoded tokens (every STRIDE-th coded frame). Last, per directory, the coarsest
predictive step whose PSNR reaches ZFP rate 6's (interpolated between the two steps around it) and its bits
per value.

    PYTHONPATH=. python benchmarks/token_bits.py ../shared/data/eval ../shared/data/val [--stride 4]
"""
from __future__ import annotations

import argparse
import glob
import os
from dataclasses import dataclass

import numpy as np
import torch

from entropy import TokenCoder, make_coder
from imfcodec.bench.clip import mapped_rgb
from imfcodec.frames import to_tensor
from imfcodec.metrics import msssim, psnr_rgb
from imfcodec.model.weights import load_weights, shipped_path

SEGMENT = 34
ZFP_RATES = (2, 3, 4, 5, 6, 7, 8)
QSTEPS = (0.01, 0.014, 0.02, 0.028, 0.04, 0.056, 0.08)
MATCH_RATE = 6


@dataclass
class Clip:
    frames: torch.Tensor        # (T, 3, 256, 256) in [0, 1]
    tokens: np.ndarray          # (T, dm) E_T's tokens
    refs: dict                  # segment start -> the model's Reference of that (uncoded) frame


@dataclass
class Point:
    bits: float                 # per token value
    psnr: float                 # dB, mean over clips of the per-clip mean
    msssim: float


@torch.no_grad()
def load_clip(model, path: str, frames: int) -> Clip:
    x = to_tensor(mapped_rgb(path, model.cfg.size, frames))
    tokens = torch.cat([model.encode_tokens(x[i:i + 16]) for i in range(0, len(x), 16)]).numpy()
    refs = {s: model.reference(x[s:s + 1]) for s in range(0, len(x), SEGMENT)}
    return Clip(x, tokens, refs)


def code_clip(coder: TokenCoder, clip: Clip) -> tuple[int, np.ndarray]:
    """Payload bits of the clip's coded tokens and the decoded tokens (reference rows left as E_T's)."""
    out, bits = clip.tokens.copy(), 0
    for s in clip.refs:
        seg = clip.tokens[s + 1:s + SEGMENT]
        if not len(seg):
            continue
        coder.reset()
        payload, deq = coder.encode(seg)
        bits += 8 * len(payload)
        out[s + 1:s + SEGMENT] = deq
    return bits, out


@torch.no_grad()
def quality(model, clip: Clip, tokens: np.ndarray, stride: int) -> tuple[float, float]:
    """Mean PSNR-RGB and MS-SSIM of every stride-th coded frame synthesised from tokens."""
    psnrs, ssims = [], []
    for s, ref in clip.refs.items():
        idx = np.arange(s + 1, min(s + SEGMENT, len(tokens)))[::stride]
        if not len(idx):
            continue
        y = model.synthesize(torch.from_numpy(tokens[idx]), ref).clamp(0, 1)
        psnrs.append(psnr_rgb(y, clip.frames[idx]))
        ssims.append(msssim(y, clip.frames[idx]))
    return float(np.concatenate(psnrs).mean()), float(np.concatenate(ssims).mean())


def measure(model, clips: list[Clip], coder_for, stride: int) -> Point:
    bits = values = 0
    psnr, ssim = [], []
    for clip in clips:
        b, toks = code_clip(coder_for(), clip)
        bits += b
        values += sum(len(clip.tokens[s + 1:s + SEGMENT]) for s in clip.refs) * clip.tokens.shape[1]
        p, m = quality(model, clip, toks, stride)
        psnr.append(p)
        ssim.append(m)
    return Point(bits / values, float(np.mean(psnr)), float(np.mean(ssim)))


def match(points: dict[float, Point], psnr: float) -> tuple[float, float] | None:
    """(step, bits) of the coarsest step at which the predictive coder's PSNR still reaches psnr: linear
    between the two steps around its last crossing (in log step and bits); None when no step reaches it.
    Near the uncoded tokens' PSNR the curve wobbles by a few hundredths of a dB, so it may cross more than
    once; the table shows every step."""
    steps = sorted(points)
    for a, b in zip(steps[::-1][1:], steps[::-1]):  # from the coarse end
        pa, pb = points[a].psnr, points[b].psnr
        if pb >= psnr:
            return b, points[b].bits
        if pa >= psnr:
            w = (pa - psnr) / (pa - pb)
            return float(np.exp((1 - w) * np.log(a) + w * np.log(b))), (1 - w) * points[a].bits + w * points[b].bits
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--stride", type=int, default=4, help="synthesise every stride-th coded frame")
    ap.add_argument("--qsteps", default=",".join(map(str, QSTEPS)))
    ap.add_argument("--zfp-rates", default=",".join(map(str, ZFP_RATES)), help="empty: no ZFP rows (and no match)")
    ap.add_argument("--momentum", type=int, default=0, help="predictive coder's momentum, in eighths")
    ap.add_argument("--weights", default=shipped_path(32, 256))
    a = ap.parse_args()
    model = load_weights(a.weights).model
    dm = model.cfg.dm
    for d in a.dirs:
        clips = [load_clip(model, p, a.frames) for p in sorted(glob.glob(os.path.join(d, "*")))]
        print(f"\n{d}: {len(clips)} clips, {sum(len(c.tokens) for c in clips)} frames, stride {a.stride}")
        print(f"{'coder':24s} {'bits/value':>10s} {'PSNR-RGB':>9s} {'MS-SSIM':>8s}")
        raw = Point(32.0, *np.mean([quality(model, c, c.tokens, a.stride) for c in clips], axis=0))
        print(f"{'uncoded float32':24s} {raw.bits:10.3f} {raw.psnr:9.3f} {raw.msssim:8.4f}")
        zfp = {}
        for r in [float(v) for v in a.zfp_rates.split(",") if v]:
            zfp[r] = measure(model, clips, lambda: make_coder("zfp", dm, rate=r), a.stride)
            print(f"{'zfp rate ' + f'{r:g}':24s} {zfp[r].bits:10.3f} {zfp[r].psnr:9.3f} {zfp[r].msssim:8.4f}", flush=True)
        pred = {}
        for q in map(float, a.qsteps.split(",")):
            pred[q] = measure(model, clips, lambda: make_coder("predictive", dm, qstep=q, momentum=a.momentum),
                              a.stride)
            print(f"{f'predictive step {q:g}':24s} {pred[q].bits:10.3f} {pred[q].psnr:9.3f} {pred[q].msssim:8.4f}",
                  flush=True)
        if MATCH_RATE not in zfp:
            continue
        m = match(pred, zfp[MATCH_RATE].psnr)
        target = f"ZFP rate {MATCH_RATE}'s PSNR {zfp[MATCH_RATE].psnr:.3f} dB ({zfp[MATCH_RATE].bits:.3f} bits/value)"
        print(f"{target}: predictive step {m[0]:.4g} at {m[1]:.3f} bits/value ({zfp[MATCH_RATE].bits / m[1]:.1f}x fewer)"
              if m else f"{target}: no step of the ladder reaches it")


if __name__ == "__main__":
    main()
