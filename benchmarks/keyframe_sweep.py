"""What keyframe quality and placement buy (MODEL_CARD.md, "Keyframes").

For each setting CODEC:CRF:K0,K1,...[:S0,S1,...] the keyframes K of each clip's first 100 frames are
intra-coded; keyframe Ki serves the segment of frames from Si to the next S (without the S list, each
keyframe starts its segment and frame 0 is one). Every 6th other frame (1, 7, ..., 97) is synthesised from
its segment's keyframe with E_T's tokens refined as `imfcodec encode` does (tokens not quantized). Prints
the keyframes' mean bpp over the 100 frames, the mean PSNR (RGB) and MS-SSIM over clips, each clip's
PSNR, and the seconds the setting took.

    python benchmarks/keyframe_sweep.py [hevc:32:0 av1:40:0,50 av1:40:16,50,83:0,34,68 ...] [--clips C ...]
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
from imfcodec import keyframe  # noqa: E402
from imfcodec.bitstream import KEYFRAME_CODECS  # noqa: E402
from imfcodec.metrics import msssim, psnr_rgb  # noqa: E402
from imfcodec.model.weights import load_weights, shipped_path  # noqa: E402
from imfcodec.refine import refine_tokens  # noqa: E402
from imfcodec.video_io import read_frames, to_model  # noqa: E402

FRAMES = 100


def _setting(s: str) -> tuple[str, int, list[int], list[int]]:
    """(codec, crf, keyframes, segment starts)."""
    codec, crf, keys, *starts = s.split(":")
    k = sorted(int(x) for x in keys.split(","))
    if not starts:
        return codec, int(crf), sorted({0, *k}), sorted({0, *k})
    st = sorted(int(x) for x in starts[0].split(","))
    if len(st) != len(k) or st[0] != 0 or any(not a <= b for a, b in zip(st, k)) or \
            any(not b < c for b, c in zip(k, st[1:])):
        raise argparse.ArgumentTypeError(f"{s}: each keyframe must lie in its segment, the first starting at 0")
    return codec, int(crf), k, st


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 255


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("settings", nargs="*", type=_setting,
                    default=[_setting(s) for s in ("hevc:32:0", "hevc:32:0,50", "av1:40:0", "av1:40:0,50")])
    ap.add_argument("--clips", nargs="*")
    ap.add_argument("--weights", default=shipped_path(32, 256))
    ap.add_argument("--every", type=int, default=6)
    ap.add_argument("--refine", type=int, default=30)
    a = ap.parse_args()
    clips = a.clips or sorted(glob.glob(os.path.join(os.path.dirname(__file__), "../../shared/data/eval/*.mp4")))
    model = load_weights(a.weights).model.eval()
    size = model.cfg.size
    videos = [np.stack([to_model(f, size, size, "crop") for f in read_frames(c, max_frames=FRAMES)]) for c in clips]
    print("codec crf keyframes | keyframe bpp | PSNR-RGB dB MS-SSIM | per-clip PSNR | seconds")
    for codec, crf, keys, starts in a.settings:
        t0, bits, ps, ms = time.time(), [], [], []
        for video in videos:
            n, nbits, outs, targets = len(video), 0, [], []
            for k, (key, start) in enumerate(zip(keys, starts)):
                end = starts[k + 1] if k + 1 < len(starts) else n
                data = keyframe.encode(video[key], codec, crf)
                nbits += 8 * len(data)
                picks = [i for i in range(1, n, a.every) if start <= i < end and i != key]
                if not picks:
                    continue
                x = _tensor(video[picks])
                with torch.no_grad():
                    ref = model.reference(_tensor(keyframe.decode(data, KEYFRAME_CODECS[codec], size, size)[None]))
                    tokens = model.encode_tokens(x)
                tokens = refine_tokens(model, ref, x, tokens, a.refine)
                with torch.no_grad():
                    outs.append(model.synthesize(tokens, ref).clamp(0, 1))
                targets.append(x)
            out, x = torch.cat(outs), torch.cat(targets)
            bits.append(nbits / (n * size * size))
            ps.append(float(psnr_rgb(out, x).mean()))
            ms.append(float(np.mean(msssim(out, x))))
        print(f"{codec} {crf} {','.join(map(str, keys))}:{','.join(map(str, starts))} | {np.mean(bits):.5f} | {np.mean(ps):.2f} {np.mean(ms):.4f} | "
              f"{' '.join(f'{p:.2f}' for p in ps)} | {time.time() - t0:.0f}", flush=True)


if __name__ == "__main__":
    main()
