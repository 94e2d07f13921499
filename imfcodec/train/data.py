"""Training data: every video under some folders, decoded once into a uint8 cache at the model size,
and (reference, current) pairs drawn from the same clip with the same augmentation on both frames."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .. import keyframe
from ..frames import to_images, to_tensor
from ..video_io import read_frames, to_model

VIDEO_EXTS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".y4m", ".m4v", ".mpg", ".mpeg")


def find_videos(dirs: list[str]) -> list[str]:
    out = []
    for d in dirs:
        if os.path.isfile(d):
            out.append(d)
            continue
        for root, _, files in os.walk(d):
            out += [os.path.join(root, f) for f in files if f.lower().endswith(VIDEO_EXTS)]
    return sorted(out)


@dataclass
class Clip:
    name: str
    start: int  # first frame's row in the cache
    count: int


class FrameCache:
    """All frames of a set of videos at size x size (centre square crop, area resize), one uint8 memmap.

    The cache is keyed by the file list, their sizes and the frame size, and rebuilt only when those change.
    """

    def __init__(self, videos: list[str], size: int, cache_dir: str, max_frames_per_clip: int | None = None,
                 progress: Callable[[str, int, int], None] | None = None):
        if not videos:
            raise ValueError("no videos found")
        key = json.dumps([[v, os.path.getsize(v)] for v in videos] + [size, max_frames_per_clip])
        tag = hashlib.sha256(key.encode()).hexdigest()[:16]
        os.makedirs(cache_dir, exist_ok=True)
        base = os.path.join(cache_dir, f"frames_{size}_{tag}")
        self.size = size
        if not os.path.exists(base + ".json"):
            self._build(videos, size, base, max_frames_per_clip, progress)
        with open(base + ".json") as f:
            meta = json.load(f)
        self.clips = [Clip(**c) for c in meta["clips"]]
        total = meta["total"]
        self.frames = np.memmap(base + ".u8", dtype=np.uint8, mode="r", shape=(total, size, size, 3))

    @staticmethod
    def _build(videos, size, base, max_frames, progress) -> None:
        clips, total = [], 0
        tmp = base + ".u8.part"
        with open(tmp, "wb") as out:
            for i, v in enumerate(videos):
                n = 0
                for img in read_frames(v, max_frames=max_frames):
                    out.write(to_model(img, size, size, "crop").tobytes())
                    n += 1
                if n >= 2:
                    clips.append({"name": os.path.basename(v), "start": total, "count": n})
                else:  # a one-frame clip makes no pair: skip its frame
                    out.seek(total * size * size * 3)
                    out.truncate()
                    n = 0
                total += n
                if progress:
                    progress(os.path.basename(v), i + 1, len(videos))
        os.replace(tmp, base + ".u8")
        with open(base + ".json.part", "w") as f:
            json.dump({"clips": clips, "total": total, "size": size}, f)
        os.replace(base + ".json.part", base + ".json")

    def __len__(self) -> int:
        return sum(c.count for c in self.clips)

    def tensor(self, rows) -> torch.Tensor:
        """The frames at cache rows (a sequence of ints) as a float tensor (N, 3, S, S) in [0, 1]."""
        return to_tensor([np.asarray(self.frames[int(r)]) for r in rows])


class PairSampler:
    """Draws batches of (reference, current) pairs: a clip chosen in proportion to its length (or, with
    `even`, every clip equally often, so that one long clip does not outweigh many people), two frames
    of it at a random distance, then one random flip, scale-and-shift and colour jitter shared by both.
    With probability `same_prob` the current frame is the reference (an autoencoding pair)."""

    def __init__(self, cache: FrameCache, seed: int = 0, augment: bool = True, even: bool = False):
        self.cache = cache
        self.rng = np.random.default_rng(seed)
        self.augment = augment
        counts = np.array([1 if even else c.count for c in cache.clips], dtype=np.float64)
        self.p = counts / counts.sum()

    def batch(self, n: int, same_prob: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        refs, curs = [], []
        for _ in range(n):
            clip = self.cache.clips[self.rng.choice(len(self.cache.clips), p=self.p)]
            r = int(self.rng.integers(clip.count))
            if self.rng.random() < same_prob:
                c = r
            else:
                c = int(self.rng.integers(clip.count))
            refs.append(np.asarray(self.cache.frames[clip.start + r]))
            curs.append(self.cache.frames[clip.start + c])
        ref, cur = to_tensor(refs), to_tensor(curs)
        if self.augment:
            ref, cur = self._augment(ref, cur)
        return ref, cur

    def _augment(self, ref: torch.Tensor, cur: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = ref.shape[0]
        rng = self.rng
        both = torch.cat([ref, cur])
        flip = torch.from_numpy(rng.random(n) < 0.5)
        both[torch.cat([flip, flip])] = both[torch.cat([flip, flip])].flip(-1)
        scale = torch.from_numpy(rng.uniform(0.9, 1.1, n)).float()
        shift = torch.from_numpy(rng.uniform(-0.05, 0.05, (n, 2))).float()
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta.repeat(2, 1, 1), list(both.shape), align_corners=False)
        both = F.grid_sample(both, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        gain = torch.from_numpy(rng.uniform(0.85, 1.15, (n, 3))).float().repeat(2, 1)[:, :, None, None]
        bright = torch.from_numpy(rng.uniform(-0.05, 0.05, n)).float().repeat(2)[:, None, None, None]
        both = (both * gain + bright).clamp(0, 1)
        return both[:n], both[n:]


def code_references(ref: torch.Tensor, rng: np.random.Generator, share: float) -> torch.Tensor:
    """Each reference (N, 3, S, S) in [0, 1], with probability share, replaced by itself intra-coded and
    decoded (keyframe.degrade): the codec only ever gives the decoder decoded keyframes."""
    out = ref.clone()
    for i in np.flatnonzero(rng.random(len(ref)) < share):
        out[i] = to_tensor([keyframe.degrade(to_images(ref[i:i + 1])[0], rng)])[0]
    return out


def as_default_keyframe(frame: torch.Tensor) -> torch.Tensor:
    """A frame (3, S, S) in [0, 1] as `imfcodec encode`'s default keyframe coder gives it back."""
    data = keyframe.encode(to_images(frame[None])[0], keyframe.DEFAULT_CODEC, keyframe.DEFAULT_QUALITY)
    return to_tensor([keyframe.decode(data, keyframe.DEFAULT_CODEC, frame.shape[2], frame.shape[1])])[0]


def load_clip(cache: FrameCache, index: int, max_frames: int | None = None, stride: int = 1) -> torch.Tensor:
    """Frames of one cached clip as a float tensor (T, 3, S, S) in [0, 1]."""
    c = cache.clips[index]
    n = c.count if max_frames is None else min(c.count, max_frames)
    return to_tensor(np.array(cache.frames[c.start:c.start + n:stride]))
