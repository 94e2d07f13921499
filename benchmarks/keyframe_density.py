"""How a preset's quality and rate move with the keyframes' density: fixed intervals and quality-check
thresholds, on the first frames of every clip of a folder.

    python benchmarks/keyframe_density.py DIR [--preset realtime] [--frames 100]
        [--settings "keyframe_interval=16;keyframe_psnr=24"]

Each setting is a ';'-separated list of EncodeOptions overrides (name=value, ',' between several of one
setting; an empty setting is the preset itself). Prints, per setting, the means over clips of kbit/s at the
clip's frame rate (every bit of the file), PSNR-RGB and MS-SSIM of the decoded frames against the source at
the model size (centre crop), and PSNR-RGB of each frame's own decoded keyframe repeated. One thread.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from imfcodec.bench.clip import mapped_rgb  # noqa: E402
from imfcodec.codec import DecodeOptions, decode_file, encode_file, repeat_keyframes  # noqa: E402
from imfcodec.metrics import msssim, psnr_rgb  # noqa: E402
from imfcodec.presets import preset_options  # noqa: E402
from imfcodec.train.data import find_videos  # noqa: E402
from imfcodec.video_io import probe  # noqa: E402


def overrides(setting: str) -> dict:
    """'keyframe_interval=16,keyframe_psnr=24,keyframe_codec=hevc-inter' -> the EncodeOptions overrides it
    names (numbers as numbers, anything else as text)."""
    out = {}
    for item in filter(None, setting.split(",")):
        k, v = item.split("=")
        try:
            out[k.strip()] = float(v) if "." in v else int(v)
        except ValueError:
            out[k.strip()] = v.strip()
    return out


def measure(clip: str, preset: str, frames: int, kw: dict, tmp: str) -> tuple[float, float, float, float]:
    out = os.path.join(tmp, "d.imf")
    if os.path.exists(out):
        os.remove(out)
    res = encode_file(clip, out, preset_options(preset, max_frames=frames, **kw))
    src = mapped_rgb(clip, res.width, frames)
    dec = np.stack(decode_file(out, None, DecodeOptions(), keep_frames=True).frames_rgb)
    kbps = res.bytes_total * 8 / (res.frames / float(probe(clip).fps)) / 1000
    return kbps, float(psnr_rgb(dec, src).mean()), float(msssim(dec, src).mean()), \
        float(psnr_rgb(repeat_keyframes(out), src).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("--preset", default="realtime")
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--settings", default=";keyframe_interval=16;keyframe_interval=8;keyframe_interval=4;"
                                         "keyframe_interval=2;keyframe_psnr=24.0;keyframe_psnr=26.0")
    a = p.parse_args()
    torch.set_num_threads(1)
    clips = find_videos([a.data])
    print("| setting | kbit/s | PSNR-RGB dB | MS-SSIM | keyframes repeated: dB |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for setting in a.settings.split(";"):
            m = np.mean([measure(c, a.preset, a.frames, overrides(setting), tmp) for c in clips], axis=0)
            print(f"| {setting or a.preset} | {m[0]:.2f} | {m[1]:.2f} | {m[2]:.4f} | {m[3]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
