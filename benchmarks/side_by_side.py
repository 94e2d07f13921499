"""Side-by-side frames and the per-frame comparison with repeating the keyframe, for weights files compared
on one clip through the whole codec.

    python benchmarks/side_by_side.py CLIP WEIGHTS... [-o frames.png] [--preset realtime] [--frames 100]
        [--show 4] [--every 4]

Each weights file encodes the clip's first frames at the preset and is decoded. The picture has one row per
shown frame: source | its decoded keyframe repeated (of the first weights' file) | decoded, one column per
weights file. The frames shown are those furthest from the first frame (lowest PSNR against it, at least
--every frames apart): where the head has turned. The table printed gives, every --every frames, PSNR-RGB of
each decoding and of the repeated keyframe, and per weights file the share of non-key frames at least as good
as that repeat.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from imfcodec.bench.clip import mapped_rgb  # noqa: E402
from imfcodec.codec import DecodeOptions, decode_file, encode_file, repeat_keyframes  # noqa: E402
from imfcodec.metrics import psnr_rgb  # noqa: E402
from imfcodec.presets import preset_options  # noqa: E402


def coded(clip: str, weights: str, preset: str, frames: int, tmp: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Decoded frames, each frame's keyframe repeated, and kbit/s at 25 fps of the clip coded with weights."""
    out = os.path.join(tmp, "x.imf")
    if os.path.exists(out):
        os.remove(out)
    res = encode_file(clip, out, preset_options(preset, weights=weights, max_frames=frames))
    dec = np.stack(decode_file(out, None, DecodeOptions(weights=weights), keep_frames=True).frames_rgb)
    return dec, repeat_keyframes(out), res.bytes_total * 8 / (res.frames / 25) / 1000


def furthest(src: np.ndarray, show: int, gap: int) -> list[int]:
    """Up to show frame indices furthest from frame 0 by PSNR, at least gap apart, in order."""
    order = np.argsort(psnr_rgb(src, np.broadcast_to(src[:1], src.shape)))
    picked: list[int] = []
    for i in order:
        if i > 0 and all(abs(int(i) - j) >= gap for j in picked):
            picked.append(int(i))
        if len(picked) == show:
            break
    return sorted(picked)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip")
    ap.add_argument("weights", nargs="+")
    ap.add_argument("-o", "--out", default="side_by_side.png")
    ap.add_argument("--preset", default="realtime")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--show", type=int, default=4)
    ap.add_argument("--every", type=int, default=4)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [coded(a.clip, w, a.preset, a.frames, tmp) for w in a.weights]
    src = mapped_rgb(a.clip, runs[0][0].shape[2], len(runs[0][0]))
    rows = furthest(src, a.show, a.every)
    grid = [np.concatenate([src[i], runs[0][1][i]] + [dec[i] for dec, _, _ in runs], axis=1) for i in rows]
    Image.fromarray(np.concatenate(grid, axis=0)).save(a.out)
    names = [os.path.basename(w) for w in a.weights]
    print(f"{a.out}: frames {rows}; columns: source | keyframe repeated | " + " | ".join(names))
    print("| frame | " + " | ".join(f"{n}: decoded dB | its keyframe repeated dB" for n in names) + " |")
    print("|---" * (1 + 2 * len(names)) + "|")
    scores = [(psnr_rgb(dec, src), psnr_rgb(rep, src)) for dec, rep, _ in runs]
    for i in range(0, len(src), a.every):
        print(f"| {i} | " + " | ".join(f"{p[i]:.2f} | {r[i]:.2f}" for p, r in scores) + " |")
    for n, (dec, rep, kbps), (p, r) in zip(names, runs, scores):
        moving = ~np.all(dec == rep, axis=(1, 2, 3))
        share = float((p[moving] >= r[moving]).mean()) if moving.any() else 1.0
        print(f"{n}: {kbps:.2f} kbit/s, {p.mean():.2f} dB (keyframes repeated {r.mean():.2f}); "
              f"{share:.0%} of the {int(moving.sum())} synthesised frames at least as good as their repeat")


if __name__ == "__main__":
    main()
