"""Two-scale patch discriminator (pix2pixHD style): the same architecture at full and half resolution."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchD(nn.Module):
    def __init__(self, width: int = 32, layers: int = 4):
        super().__init__()
        convs, cin = [], 3
        for i in range(layers):
            cout = width * 2 ** min(i, 3)
            convs.append(nn.utils.spectral_norm(nn.Conv2d(cin, cout, 4, stride=2 if i < layers - 1 else 1,
                                                          padding=1)))
            cin = cout
        self.convs = nn.ModuleList(convs)
        self.head = nn.Conv2d(cin, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats, h = [], x * 2 - 1
        for c in self.convs:
            h = F.leaky_relu(c(h), 0.2)
            feats.append(h)
        return self.head(h), feats


class MultiScaleD(nn.Module):
    def __init__(self, width: int = 32, scales: int = 2):
        super().__init__()
        self.ds = nn.ModuleList(PatchD(width) for _ in range(scales))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        logits, feats = [], []
        for i, d in enumerate(self.ds):
            if i:
                x = F.avg_pool2d(x, 2)
            lg, ft = d(x)
            logits.append(lg)
            feats.append(ft)
        return logits, feats
