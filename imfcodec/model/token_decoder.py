"""IMF_D: a StyleGAN2-style generator that turns a token into motion features at 1/16 and 1/8 scale."""
from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .layers import StyledConv


class TokenDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        s = cfg.style_dim
        m8, m16 = cfg.motion_widths
        self.mapping = nn.Sequential(nn.Linear(cfg.dm, s), nn.LeakyReLU(0.2), nn.Linear(s, s), nn.LeakyReLU(0.2))
        self.const = nn.Parameter(torch.randn(1, m16, 4, 4))
        n_up16 = (cfg.size // 16).bit_length() - 3  # 4x4 -> size/16
        self.to16 = nn.ModuleList()
        for _ in range(n_up16):
            self.to16.append(StyledConv(m16, m16, s, upsample=True))
            self.to16.append(StyledConv(m16, m16, s))
        self.to8 = nn.ModuleList([StyledConv(m16, m8, s, upsample=True), StyledConv(m8, m8, s)])

    def forward(self, token: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (m at 1/8, m at 1/16)."""
        style = self.mapping(token)
        h = self.const.expand(token.shape[0], -1, -1, -1)
        for layer in self.to16:
            h = layer(h, style)
        m16 = h
        for layer in self.to8:
            h = layer(h, style)
        return h, m16
