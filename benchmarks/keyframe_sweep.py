"""What keyframe quality and placement buy (MODEL_CARD.md, "Keyframes").

For each setting CODEC:CRF:K0,K1,...[:S0,S1,...] the keyframes K of each clip's first 100 frames are
intra-coded; keyframe Ki serves the segment of frames from Si to the next S (without the S list, each
keyframe starts its segment and frame 0 is one). Every 6th other frame (1, 7, ..., 97) is synthesised from
its segment's keyframe with E_T's tokens refined as `imfcodec encode` does (tokens not quantized). Prints
the keyframes' mean bpp over the 100 frames, the mean PSNR (RGB) and MS-SSIM over clips, each clip's
PSNR, and the seconds the setting took. KEYS may be `search`: each segment's keyframe is then chosen as
`imfcodec encode` chooses it (of 5 candidates near the middle, the one whose picture lets E_T's tokens
rebuild the segment best), and the chosen frames are printed.

    python benchmarks/keyframe_sweep.py [hevc:32:0 av1:40:16,50,83:0,34,68 av1:40:search:0,34,68 ...]
        [--clips C ...]
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
from imfcodec.codec import keyframe_candidates  # noqa: E402
from imfcodec.metrics import msssim, psnr_rgb  # noqa: E402
from imfcodec.model.weights import load_weights, shipped_path  # noqa: E402
from imfcodec.refine import refine_tokens  # noqa: E402
from imfcodec.video_io import read_frames, to_model  # noqa: E402

FRAMES = 100


def _setting(s: str) -> tuple[str, int, list[int] | None, list[int]]:
    """(codec, crf, keyframes or None to search, segment starts)."""
    codec, crf, keys, *starts = s.split(":")
    if keys == "search":
        if not starts:
            raise argparse.ArgumentTypeError(f"{s}: search needs the segment starts")
        return codec, int(crf), None, sorted(int(x) for x in starts[0].split(","))
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


@torch.no_grad()
def _search(model, segment: np.ndarray, codec: str, crf: int) -> int:
    """The offset in segment that `imfcodec encode --keyframe-candidates 5` keys."""
    x = _tensor(segment)
    tokens, size, best = model.encode_tokens(x), segment.shape[1], None
    for c in keyframe_candidates(len(segment), 5):
        ref = model.reference(_tensor(keyframe.decode(keyframe.encode(segment[c], codec, crf),
                                                      KEYFRAME_CODECS[codec], size, size)[None]))
        out = torch.cat([model.synthesize(tokens[i:i + 8], ref).clamp(0, 1) for i in range(0, len(x), 8)])
        score = float(np.delete(np.asarray(psnr_rgb(out, x)), c).mean())
        if best is None or score > best[0]:
            best = (score, c)
    return best[1]


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
    for codec, crf, fixed, starts in a.settings:
        t0, bits, ps, ms, chosen = time.time(), [], [], [], []
        for video in videos:
            n, nbits, outs, targets = len(video), 0, [], []
            ends = [*starts[1:], n]
            keys = fixed or [s + _search(model, video[s:e], codec, crf) for s, e in zip(starts, ends)]
            chosen += keys
            for key, start, end in zip(keys, starts, ends):
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
        print(f"{codec} {crf} {','.join(map(str, chosen))}:{','.join(map(str, starts))} | "
              f"{np.mean(bits):.5f} | {np.mean(ps):.2f} {np.mean(ms):.4f} | "
              f"{' '.join(f'{p:.2f}' for p in ps)} | {time.time() - t0:.0f}", flush=True)


if __name__ == "__main__":
    main()
