"""Training losses. The paper's VGG perceptual term needs ImageNet weights that cannot be had here;
in its place a multi-scale structural term: (1 - SSIM) and L1 on an image pyramid (four scales), plus
discriminator feature matching once the GAN is on. SSIM is used without fractional powers, which are
what makes MS-SSIM as a loss produce NaN."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..metrics import _gauss

_WIN = _gauss().float()


def ssim_map_mean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ch = x.shape[1]
    k = _WIN.shape[0]
    wx = _WIN.view(1, 1, 1, k).repeat(ch, 1, 1, 1).to(x)
    wy = _WIN.view(1, 1, k, 1).repeat(ch, 1, 1, 1).to(x)

    def blur(t):
        return F.conv2d(F.conv2d(t, wx, groups=ch), wy, groups=ch)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = (2 * mx * my + c1) * (2 * sxy + c2) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean()


def pyramid_loss(fake: torch.Tensor, real: torch.Tensor, scales: int = 4) -> torch.Tensor:
    """Mean over scales of (1 - SSIM) + L1; stands in for the VGG perceptual loss."""
    total = fake.new_zeros(())
    for i in range(scales):
        if i:
            fake, real = F.avg_pool2d(fake, 2), F.avg_pool2d(real, 2)
        if min(fake.shape[-2:]) >= 11:
            total = total + (1 - ssim_map_mean(fake.float(), real.float()))
        total = total + (fake - real).abs().mean()
    return total / scales


def hinge_d(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits))


def hinge_g(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    return sum(-f.mean() for f in fake_logits)


def feature_matching(real_feats: list[list[torch.Tensor]], fake_feats: list[list[torch.Tensor]]) -> torch.Tensor:
    total, n = 0.0, 0
    for rs, fs in zip(real_feats, fake_feats):
        for r, f in zip(rs, fs):
            total = total + (f - r.detach()).abs().mean()
            n += 1
    return total / max(n, 1)
