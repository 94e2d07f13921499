"""Keyframe codecs through the whole codec: a preset with SVT-AV1 intra keyframes against hevc-inter (refreshes
predicted from the keyframe before) at several CRFs, on the first frames of each clip.

    python benchmarks/keyframe_codecs.py CLIP... [--preset realtime] [--frames 100] [--settings av1:40,hevc-inter:34]

Prints, per clip and setting, kbit/s at the clip's frame rate (every bit of the file), the keyframe and
token bytes, and PSNR-RGB / MS-SSIM of the decoded frames (fast decoder path) against the source frames at
the model size. One thread, as a call's side would run.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from imfcodec.codec import DecodeOptions, decode_file, encode_file  # noqa: E402
from imfcodec.frames import to_tensor  # noqa: E402
from imfcodec.metrics import msssim, psnr_rgb  # noqa: E402
from imfcodec.presets import preset_options  # noqa: E402
from imfcodec.video_io import probe, read_frames, to_model  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clips", nargs="+")
    p.add_argument("--preset", default="realtime")
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--settings", default="av1:40,hevc-inter:30,hevc-inter:34,hevc-inter:38")
    a = p.parse_args()
    torch.set_num_threads(1)
    settings = [(c, int(q)) for c, q in (s.split(":") for s in a.settings.split(","))]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "k.imf")
        for clip in a.clips:
            x = to_tensor([to_model(f, 256, 256, "crop") for f in read_frames(clip, max_frames=a.frames)])
            seconds = len(x) / float(probe(clip).fps)
            for codec, q in settings:
                if os.path.exists(out):
                    os.remove(out)
                r = encode_file(clip, out, preset_options(a.preset, keyframe_codec=codec, keyframe_quality=q,
                                                          max_frames=a.frames))
                y = to_tensor(decode_file(out, None, DecodeOptions(synthesis="fast"), keep_frames=True).frames_rgb)
                print(f"{os.path.basename(clip)} {codec} {q} kbps {r.bytes_total * 8 / seconds / 1000:.2f} "
                      f"key {r.bytes_keyframe} tok {r.bytes_tokens} psnr {psnr_rgb(y, x).mean():.2f} "
                      f"msssim {msssim(y, x).mean():.4f}", flush=True)


if __name__ == "__main__":
    main()
