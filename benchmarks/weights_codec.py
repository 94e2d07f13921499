"""Weights files compared through the whole codec: the same clips encoded with each, at a preset.

    python benchmarks/weights_codec.py WEIGHTS... --data DIR [--data DIR] [--preset realtime] [--frames 100]
        [--keyframe-quality 40[,43...]] [--token-codec zfp] [--bitrate 5k[,2k...]] [--token-guess FILE]
        [--per-clip]

For every weights file and folder: mean bpp (every bit of the file), PSNR-RGB, MS-SSIM and GMSD (lower is
better: blur and smeared edges raise it) of the decoded frames against the source at the model's size
(centre crop, as the encoder codes it), the same for each frame's own decoded keyframe repeated (the floor
the tokens must beat, at the keyframes' bits), and the share of non-key frames rebuilt at least as well as
that repeat in PSNR. With --bitrate every file is coded to that rate target; --token-guess is the
encoder's (a guess file for weights it was not trained for falls back to E_T).

Several keyframe qualities or bitrates make a ladder: each weights file is measured at every point, and
each one after the first gets its BD-rate against the first (PSNR and MS-SSIM, per clip over the ladder,
then the mean of the clips whose curves overlap and rise with the rate): the comparison at equal bits.
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from imfcodec.bench.bdrate import bd_rate
from imfcodec.bench.clip import mapped_rgb
from imfcodec.codec import DecodeOptions, decode_file, encode_file, repeat_keyframes
from imfcodec.metrics import gmsd, msssim, psnr_rgb
from imfcodec.options import parse_bitrate
from imfcodec.presets import preset_options
from imfcodec.train.data import find_videos


def measure(weights: str, clip: str, preset: str, frames: int, tmp: str, **given) -> dict:
    """One clip coded at preset with options given on top, and decoded: its rate and quality."""
    out = os.path.join(tmp, "x.imf")
    res = encode_file(clip, out, preset_options(preset, weights=weights, max_frames=frames, **given))
    src = mapped_rgb(clip, res.width, frames)
    dec = np.stack(decode_file(out, None, DecodeOptions(weights=weights), keep_frames=True).frames_rgb)
    rep = repeat_keyframes(out)
    p, r = psnr_rgb(dec, src), psnr_rgb(rep, src)
    moving = ~np.all(dec == rep, axis=(1, 2, 3))  # keyframes decode to themselves
    return {"bpp": res.bpp_total, "bpp_tokens": res.bpp_tokens, "psnr": float(p.mean()),
            "msssim": float(msssim(dec, src).mean()), "gmsd": float(gmsd(dec, src).mean()),
            "rep_psnr": float(r.mean()), "rep_msssim": float(msssim(rep, src).mean()),
            "beats": float((p[moving] >= r[moving]).mean()) if moving.any() else 1.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="+")
    ap.add_argument("--data", action="append", required=True)
    ap.add_argument("--preset", default="realtime")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--keyframe-quality", type=lambda v: [int(q) for q in v.split(",")], default=[40],
                    help="CRF, or a comma list of them (a ladder)")
    ap.add_argument("--token-codec", default="zfp")
    ap.add_argument("--bitrate", type=lambda v: [parse_bitrate(b) for b in v.split(",")], default=[0.0],
                    help="rate target, e.g. 5k, or a comma list of them (a ladder; default: none)")
    ap.add_argument("--token-guess", default="auto", help="the encoder's first tokens: auto, et or a guess file")
    ap.add_argument("--per-clip", action="store_true", help="a line for every clip as well")
    a = ap.parse_args()

    def line(name: str, m: dict) -> str:
        return (f"{name}: {m['bpp']:.5f} bpp (tokens {m['bpp_tokens']:.5f})  {m['psnr']:.2f} dB / "
                f"{m['msssim']:.4f} / GMSD {m['gmsd']:.4f}   its keyframes repeated {m['rep_psnr']:.2f} / "
                f"{m['rep_msssim']:.4f}   frames >= repeat {m['beats']:.0%}")

    ladder = [(q, b) for q in a.keyframe_quality for b in a.bitrate]
    with tempfile.TemporaryDirectory() as tmp:
        for d in a.data:
            clips = find_videos([d])
            curves = {}  # weights -> clip -> one row per ladder point
            for w in a.weights:
                curves[w] = {c: [] for c in clips}
                for q, b in ladder:
                    rows = []
                    for c in clips:
                        rows.append(measure(w, c, a.preset, a.frames, tmp, keyframe_quality=q,
                                            token_codec=a.token_codec, bitrate=b, token_guess=a.token_guess))
                        curves[w][c].append(rows[-1])
                        if a.per_clip:
                            print(line(f"  {os.path.basename(w)}  {os.path.basename(c)}", rows[-1]), flush=True)
                    m = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
                    rate = f" {b / 1000:g}k" if b else ""
                    print(line(f"{os.path.basename(w)}  {d}  {a.preset} crf {q} {a.token_codec}{rate}", m), flush=True)
            if len(ladder) > 1:
                for w in a.weights[1:]:
                    print(f"{os.path.basename(w)} against {os.path.basename(a.weights[0])}  {d}  BD-rate: "
                          + "   ".join(_bd(curves[a.weights[0]], curves[w], k) for k in ("psnr", "msssim")), flush=True)


def _bd(anchor: dict, test: dict, key: str) -> str:
    """The mean over clips of test's BD-rate against anchor in quality key, and how many clips count: those
    whose two curves overlap and each rise with the rate (a fit through a curve that falls means nothing)."""
    def curve(rows: list[dict]) -> tuple[list[float], list[float]] | None:
        rows = sorted(rows, key=lambda r: r["bpp"])
        q = [r[key] for r in rows]
        return ([r["bpp"] for r in rows], q) if all(lo < hi for lo, hi in zip(q, q[1:])) else None

    got = []
    for c in anchor:
        base, new = curve(anchor[c]), curve(test[c])
        got.append(bd_rate(*base, *new) if base and new else None)
    vals = [g.percent for g in got if g is not None]
    mean = f"{np.mean(vals):+.1f}%" if vals else "no clip"
    return f"{key} {mean} ({len(vals)} of {len(got)} clips rise with the rate and overlap)"


if __name__ == "__main__":
    main()
