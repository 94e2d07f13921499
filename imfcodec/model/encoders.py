"""E_F (dense multi-scale appearance features) and E_T (one latent token per frame)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .layers import Down, ResBlock, act, centres


class FeatureEncoder(nn.Module):
    """E_F: features at 1/2, 1/4, 1/8 and 1/16 of the frame size."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.widths
        self.stem = nn.Conv2d(12, w[0], 3, padding=1)  # on the 2x2 space-to-depth of the frame
        self.res = ResBlock(w[0])
        self.downs = nn.ModuleList(Down(a, b) for a, b in zip(w[:-1], w[1:]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.res(act(self.stem(F.pixel_unshuffle(x * 2 - 1, 2))))
        feats = [h]
        for down in self.downs:
            h = down(h)
            feats.append(h)
        return feats


class TokenEncoder(nn.Module):
    """E_T: one dm-dimensional token per frame.

    The trunk stops at 1/8 scale and dm/2 heatmaps, each standardised over space and sharpened by a learned
    temperature, give dm/2 (x, y) positions by soft-argmax, in normalised coordinates. Such a token moves
    with the content even before training, so the token flow learns from its first step; heatmaps without a
    bias are also blind to the trunk's scale.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.token_width
        self.stem = nn.Conv2d(48, c // 4, 3, padding=1)  # on the 4x4 space-to-depth of the frame
        self.trunk = nn.Sequential(Down(c // 4, c // 2))  # to 1/8 scale
        self.heat = nn.Conv2d(c // 2, cfg.dm // 2, 1, bias=False)
        self.log_temp = nn.Parameter(torch.full((cfg.dm // 2,), math.log(4.0)))

    def stem_features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's input: the stem on the 4x4 space-to-depth of the frame."""
        return act(self.stem(F.pixel_unshuffle(x * 2 - 1, 4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(self.stem_features(x))
        return soft_argmax(self.heat(h), self.log_temp.exp())


def soft_argmax(logits: torch.Tensor, temp: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) maps -> (B, 2K) expected (x, y) of softmax(temp * standardised map), in [-1, 1]."""
    b, k, h, w = logits.shape
    z = logits.float().flatten(2)
    z = (z - z.mean(-1, keepdim=True)) / (z.std(-1, keepdim=True) + 1e-6)
    p = torch.softmax(z * temp[:, None], dim=-1).view(b, k, h, w)
    xs, ys = centres(w, logits.device), centres(h, logits.device)
    return torch.stack([(p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)], dim=-1).flatten(1)
