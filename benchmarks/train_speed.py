"""Training steps per second of the full-size network on this machine, for each speed setting.

    python benchmarks/train_speed.py DATA_DIR [--steps 12] [--warmup 3] [--threads 2]

Times `Trainer.train_step` (batch 4, 256x256, pixel path) after a warm-up, in one process, plain fp32
against bfloat16 autocast and channels-last, and prints steps/s and the ratio to fp32.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from imfcodec.train.loop import TrainOptions, Trainer


def time_steps(data: str, cache: str, steps: int, warmup: int, **kw) -> float:
    with tempfile.TemporaryDirectory() as out:
        t = Trainer(TrainOptions(data=[data], out=out, batch=4, ae_steps=0, gan_start=10**9, cache_dir=cache,
                                 pixel_path=True, device="cpu", **kw))
        for _ in range(warmup):
            t.train_step()
        t0 = time.perf_counter()
        for _ in range(steps):
            t.train_step()
        return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=tempfile.gettempdir())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    settings = {"fp32": {}, "bf16": {"bf16": True}, "channels_last": {"channels_last": True},
                "bf16+channels_last": {"bf16": True, "channels_last": True}}
    base = None
    for name, kw in settings.items():
        torch.manual_seed(0)
        sps = time_steps(a.data, a.cache, a.steps, a.warmup, **kw)
        base = base or sps
        print(f"{name:20s} {sps:.3f} steps/s  x{sps / base:.2f}", flush=True)


if __name__ == "__main__":
    main()
