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
    return sum(-f.float().mean() for f in fake_logits)


def feature_matching(real_feats: list[list[torch.Tensor]], fake_feats: list[list[torch.Tensor]]) -> torch.Tensor:
    total, n = 0.0, 0
    for rs, fs in zip(real_feats, fake_feats):
        for r, f in zip(rs, fs):
            total = total + (f.float() - r.detach().float()).abs().mean()
            n += 1
    return total / max(n, 1)


@torch.no_grad()
def block_match(ref: torch.Tensor, cur: torch.Tensor, grid: int, radius: int,
                penalty: float = 2e-4) -> torch.Tensor:
    """Where each cell of ``cur`` comes from in ``ref``, by exhaustive block matching on a grid x grid
    lattice: frames are area-resized to 4 px a cell, 8x8 blocks (a cell and half its neighbours) are
    compared over +-radius cells, and each cell of displacement costs ``penalty`` in MSE so that flat
    areas stay put. Returns (B, grid*grid) flat indices into the reference's cells: the attention
    targets that give the alignment a direct signal while photometric gradients are still weak."""
    res, cell = 4 * grid, 4
    r = F.interpolate(ref.float(), size=(res, res), mode="area")
    c = F.interpolate(cur.float(), size=(res, res), mode="area")
    pad = radius * cell
    r = F.pad(r, (pad, pad, pad, pad))
    costs, moves = [], []
    ys, xs = torch.meshgrid(torch.arange(grid, device=ref.device), torch.arange(grid, device=ref.device),
                            indexing="ij")
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            shifted = r[..., pad + dy * cell: pad + dy * cell + res, pad + dx * cell: pad + dx * cell + res]
            err = F.avg_pool2d((shifted - c).pow(2).mean(1, keepdim=True), 8, 4, 2)[:, 0]
            inside = (ys + dy >= 0) & (ys + dy < grid) & (xs + dx >= 0) & (xs + dx < grid)
            costs.append(torch.where(inside, err + penalty * (abs(dx) + abs(dy)), torch.inf))
            moves.append((dy, dx))
    best = torch.stack(costs, 1).argmin(1)  # (B, grid, grid)
    table = torch.tensor(moves, device=ref.device)
    d = table[best]  # (B, grid, grid, 2)
    return ((ys + d[..., 0]) * grid + xs + d[..., 1]).flatten(1)


def block_flow(ref: torch.Tensor, cur: torch.Tensor, grid: int, radius: int) -> torch.Tensor:
    """:func:`block_match` as a backward flow (B, 2, grid, grid), x then y, in normalised coordinates
    (2.0 spans the frame): the target the token flow is pulled toward during its warm-up."""
    idx = block_match(ref, cur, grid, radius)
    ys, xs = torch.meshgrid(torch.arange(grid, device=ref.device), torch.arange(grid, device=ref.device),
                            indexing="ij")
    dx = (idx % grid).view(-1, grid, grid) - xs
    dy = torch.div(idx, grid, rounding_mode="floor").view(-1, grid, grid) - ys
    return torch.stack([dx, dy], 1).float() * (2 / grid)
