"""D_F: decode aligned multi-scale features (and the current motion features) back to RGB, and with the
pixel path also a mask saying where the warped reference image should be shown instead."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .layers import ResBlock, act


class FrameDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.widths
        m8, m16 = cfg.motion_widths
        self.inp = nn.Conv2d(w[3] + m16, w[3], 1)
        self.res = nn.ModuleList([ResBlock(w[3]), ResBlock(w[2]), ResBlock(w[1]), ResBlock(w[0])])
        self.fuse = nn.ModuleList([
            nn.Conv2d(w[3] + w[2] + m8, w[2], 3, padding=1),
            nn.Conv2d(w[2] + w[1], w[1], 3, padding=1),
            nn.Conv2d(w[1] + w[0], w[0], 3, padding=1),
        ])
        self.out = nn.Conv2d(w[0], 12, 3, padding=1)
        self.mask = None
        if cfg.pixel_path:
            # starts at 1 everywhere: a fresh pixel path shows the warped reference unchanged
            self.mask = nn.Conv2d(w[0], 4, 3, padding=1)
            nn.init.zeros_(self.mask.weight)
            nn.init.ones_(self.mask.bias)

    def forward(self, feats: list[torch.Tensor], m8: torch.Tensor,
                m16: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """feats: aligned maps at 1/2, 1/4, 1/8, 1/16. Returns RGB in [0, 1] (unclamped) and the pixel
        path's mask in [0, 1] (a hard sigmoid, so that it can be exactly 1), or None without the path."""
        h = self.res[0](act(self.inp(torch.cat([feats[3], m16], 1))))
        skips = [torch.cat([feats[2], m8], 1), feats[1], feats[0]]
        for fuse, res, skip in zip(self.fuse, self.res[1:], skips):
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = res(act(fuse(torch.cat([h, skip], 1))))
        rgb = F.pixel_shuffle(self.out(h), 2) * 0.5 + 0.5
        mask = None if self.mask is None else F.pixel_shuffle(self.mask(h), 2).clamp(0, 1)
        return rgb, mask
