"""Building blocks shared by the IMF modules."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def centres(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The n pixel centres of an axis in normalised coordinates (-1 and 1 are the outer edges), as
    grid_sample with align_corners=False reads them."""
    return torch.linspace(-1 + 1 / n, 1 - 1 / n, n, device=device)


def act(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU scaled to keep unit variance (StyleGAN2's fused activation, unfused)."""
    return F.leaky_relu(x, 0.2) * math.sqrt(2.0)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a residual; the second starts at zero so the block starts as identity."""

    def __init__(self, ch: int):
        super().__init__()
        self.c1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.c2 = nn.Conv2d(ch, ch, 3, padding=1)
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(act(self.c1(x)))


class Down(nn.Module):
    """Stride-2 convolution followed by a residual block."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 4, stride=2, padding=1)
        self.res = ResBlock(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(act(self.conv(x)))


class ModulatedConv2d(nn.Module):
    """StyleGAN2 weight modulation and demodulation: the style scales the input channels of the
    kernel, then each output filter is renormalised to unit norm, per sample (grouped convolution).

    ``fused = False`` computes the same thing as one ordinary convolution of the batch: the input scaled by
    the style, the output by each filter's demodulation (x * W(s) = d * ((x s) * W)). It differs in rounding
    only and is faster on CPUs without gradients (the fast synthesis path); training keeps the grouped form."""

    def __init__(self, cin: int, cout: int, k: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, cout, cin, k, k))
        self.scale = 1.0 / math.sqrt(cin * k * k)
        self.affine = nn.Linear(style_dim, cin)
        nn.init.ones_(self.affine.bias)
        self.upsample = upsample
        self.pad = k // 2
        self.fused = True

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, cin, h, w = x.shape
        s = self.affine(style)
        if not self.fused:
            wgt = self.scale * self.weight[0]  # (cout, cin, k, k)
            demod = torch.rsqrt(wgt.pow(2).sum(dim=(2, 3)) @ s.pow(2).T + 1e-8).T  # (b, cout)
            x = x * s.view(b, cin, 1, 1)
            if self.upsample:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            return F.conv2d(x, wgt, padding=self.pad) * demod.view(b, -1, 1, 1)
        wgt = self.scale * self.weight * s.view(b, 1, cin, 1, 1)
        wgt = wgt * torch.rsqrt(wgt.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            h, w = 2 * h, 2 * w
        cout = wgt.shape[1]
        out = F.conv2d(x.reshape(1, b * cin, h, w), wgt.reshape(b * cout, cin, *wgt.shape[3:]),
                       padding=self.pad, groups=b)
        return out.view(b, cout, h, w)


class StyledConv(nn.Module):
    """Modulated convolution + bias + activation (no noise input: decoding must be deterministic)."""

    def __init__(self, cin: int, cout: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, style_dim, upsample)
        self.bias = nn.Parameter(torch.zeros(1, cout, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return act(self.conv(x, style) + self.bias)


class TransformerBlock(nn.Module):
    """Pre-norm multi-head self-attention and a GELU feed-forward network over flattened positions.
    Output projections start at zero, so a fresh block passes its input through unchanged."""

    def __init__(self, dim: int, heads: int, tokens: int):
        super().__init__()
        self.heads = heads
        self.pos = nn.Parameter(torch.zeros(1, tokens, dim))
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)
        for layer in (self.proj, self.fc2):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(self.ln1(x) + self.pos).view(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + self.proj(a)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))
