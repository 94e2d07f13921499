"""E_F (dense multi-scale appearance features) and E_T (one latent token per frame)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .layers import Down, ResBlock, act


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
    """E_T: residual/downsampling trunk to a 4x4 map, then an MLP to one dm-dimensional token."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.token_width
        chans = [c // 4, c // 2, c, c]
        n_down = (cfg.size // 4).bit_length() - 3  # from size/4 down to 4x4
        self.stem = nn.Conv2d(48, chans[0], 3, padding=1)  # on the 4x4 space-to-depth of the frame
        layers, cin = [], chans[0]
        for i in range(n_down):
            cout = chans[min(i + 1, len(chans) - 1)]
            layers.append(Down(cin, cout))
            cin = cout
        self.trunk = nn.Sequential(*layers)
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(cin * 16, cfg.style_dim), nn.LeakyReLU(0.2),
                                 nn.Linear(cfg.style_dim, cfg.dm))

    def stem_features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's input: the stem on the 4x4 space-to-depth of the frame."""
        return act(self.stem(F.pixel_unshuffle(x * 2 - 1, 4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.trunk(self.stem_features(x)))
