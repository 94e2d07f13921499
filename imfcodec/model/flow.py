"""A coarse warp of the reference, driven by the two tokens.

Cross-attention alone has to discover motion from a global token through IMF_D, which the compute this
project has (a few thousand CPU steps) never achieved: the motion path stayed static. This module gives
the token a direct, cheap-to-learn job: an MLP maps (t_cur - t_ref, t_ref) to a backward flow on a
``flow_grid`` x ``flow_grid`` lattice (where each point of the current frame sits in the reference),
which is upsampled and used to warp the reference's features before the attention refines them. Its
last layer starts at zero, so a fresh module is the identity warp and changes nothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import centres


class TokenFlow(nn.Module):
    def __init__(self, dm: int, grid: int, hidden: int):
        super().__init__()
        self.grid = grid
        self.mlp = nn.Sequential(nn.Linear(2 * dm, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                 nn.LeakyReLU(0.2), nn.Linear(hidden, 2 * grid * grid))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, t_cur: torch.Tensor, t_ref: torch.Tensor) -> torch.Tensor:
        """(B, 2, grid, grid) flow (x, y) in normalised coordinates: 2.0 spans the frame."""
        t_ref = t_ref.expand_as(t_cur)
        return self.mlp(torch.cat([t_cur - t_ref, t_ref], dim=1)).view(-1, 2, self.grid, self.grid)


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp maps x (1 or B, C, h, w) by a flow (B, 2, g, g) upsampled bilinearly to h x w."""
    b, (h, w) = flow.shape[0], x.shape[-2:]
    f = F.interpolate(flow.float(), size=(h, w), mode="bilinear", align_corners=False)
    base = torch.stack(torch.meshgrid(centres(w, x.device), centres(h, x.device), indexing="xy"), dim=0)  # (2, h, w): x then y
    grid = (base[None] + f).permute(0, 2, 3, 1)
    return F.grid_sample(x.float().expand(b, -1, -1, -1), grid, mode="bilinear", padding_mode="border",
                         align_corners=False)
