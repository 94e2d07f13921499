"""Shared fixtures: a tiny network with a fixed seed, short synthetic clips, the ../shared folder."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from imfcodec.model import IMF, TINY
from imfcodec.model.weights import save_weights
from imfcodec.video_io import VideoWriter

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

torch.set_num_threads(2)


def make_clip(path: Path, frames: int = 12, w: int = 80, h: int = 60, fps=Fraction(30000, 1001)) -> Path:
    """A moving white square over a colour ramp."""
    with VideoWriter(str(path), w, h, fps) as out:
        for t in range(frames):
            img = np.zeros((h, w, 3), np.uint8)
            img[:, :, 0] = np.linspace(0, 255, w)[None]
            img[:, :, 2] = np.linspace(255, 0, h)[:, None]
            img[8 + t:28 + t, 20 + t:40 + t] = 255
            out.write(img)
    return path


def tiny_weights(path: Path, seed: int = 0, steps: int = 0) -> Path:
    torch.manual_seed(seed)
    save_weights(IMF(TINY), str(path), steps=steps)
    return path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("w") / "tiny.safetensors")


@pytest.fixture(scope="session")
def other_tiny(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("w2") / "other.safetensors", seed=1)


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")
