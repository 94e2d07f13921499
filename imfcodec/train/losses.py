"""Training losses. The paper's VGG perceptual term needs ImageNet weights that cannot be had here;
in its place a multi-scale structural term: (1 - SSIM) and L1 on an image pyramid (four scales), plus
discriminator feature matching once the GAN is on. SSIM is used without fractional powers, which are
what makes MS-SSIM as a loss produce NaN."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..metrics import gaussian_window, ssim_maps

_WIN = gaussian_window().float()


def pyramid_loss(fake: torch.Tensor, real: torch.Tensor, scales: int = 4) -> torch.Tensor:
    """Mean over scales of (1 - SSIM) + L1; stands in for the VGG perceptual loss."""
    total = fake.new_zeros(())
    for i in range(scales):
        if i:
            fake, real = F.avg_pool2d(fake, 2), F.avg_pool2d(real, 2)
        if min(fake.shape[-2:]) >= 11:
            total = total + (1 - ssim_maps(fake.float(), real.float(), _WIN)[0].mean())
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
