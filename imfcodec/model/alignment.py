"""IMF_A: align reference appearance features to the current frame.

Cross-attention with Q from the current motion features and K from the reference's, each plus a
learned positional embedding; V are the reference features. The logits are q.k - |k|^2/2, i.e. a
negative squared distance between query and key up to a per-query constant, so the positional
embeddings can start as scaled grid coordinates: then a fresh module attends every position to
itself (and a little to its neighbours), and motion features learn to move a query's coordinate,
which is how flow would move it. Stacked transformer blocks (identity at start) then refine.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import TransformerBlock


def grid_embedding(grid: int, dim: int, sigma: float) -> torch.Tensor:
    """(grid*grid, dim) embedding: x and y in cells divided by sigma, zero elsewhere."""
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                            indexing="ij")
    emb = torch.zeros(grid * grid, dim)
    emb[:, 0] = (xs.flatten() - (grid - 1) / 2) / sigma
    emb[:, 1] = (ys.flatten() - (grid - 1) / 2) / sigma
    return emb


class CrossAttentionAlign(nn.Module):
    def __init__(self, motion_dim: int, attn_dim: int, grid: int, sigma: float):
        super().__init__()
        self.q = nn.Linear(motion_dim, attn_dim)
        self.k = nn.Linear(motion_dim, attn_dim)
        nn.init.normal_(self.q.weight, std=0.1 / motion_dim ** 0.5)
        nn.init.zeros_(self.q.bias)
        with torch.no_grad():  # same projection at start: an unchanged frame maps onto itself exactly
            self.k.weight.copy_(self.q.weight)
            self.k.bias.copy_(self.q.bias)
        emb = grid_embedding(grid, attn_dim, sigma)
        self.pos_q = nn.Parameter(emb.clone())
        self.pos_k = nn.Parameter(emb.clone())

    def keys(self, m_ref: torch.Tensor) -> torch.Tensor:
        """(B, N, attn_dim) keys from reference motion features (B, C, h, w): cacheable per reference."""
        return self.k(m_ref.flatten(2).transpose(1, 2)) + self.pos_k

    def attention(self, m_cur: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """(B, N, N) attention of every current position (rows) over the reference's positions."""
        with torch.autocast(device_type=m_cur.device.type, enabled=False):
            q = self.q(m_cur.float().flatten(2).transpose(1, 2)) + self.pos_q
            k = keys.float()
            bias = -0.5 * k.pow(2).sum(-1)  # (B, N)
            return torch.softmax(q @ k.transpose(1, 2) + bias[:, None, :], dim=-1)

    def forward(self, m_cur: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """values: (B, N, C) reference features; returns aligned values (B, N, C)."""
        return self.aligned(self.attention(m_cur, keys), values)

    @staticmethod
    def aligned(attn: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=attn.device.type, enabled=False):
            return attn @ values.float()


class Refine(nn.Module):
    """Stacked transformer blocks over a feature map."""

    def __init__(self, dim: int, heads: int, blocks: int, tokens: int):
        super().__init__()
        self.blocks = nn.Sequential(*(TransformerBlock(dim, heads, tokens) for _ in range(blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def to_map(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], -1, h, w)


def fold_fine(feats: list[torch.Tensor]) -> torch.Tensor:
    """Space-to-depth every finer map onto the grid of the last (coarsest) one and stack them, so one
    attention map moves all finer scales as blocks: no attention is paid at fine scales."""
    level = len(feats) - 1
    parts = [feats[level]] + [F.pixel_unshuffle(f, 2 ** (level - i)) for i, f in enumerate(feats[:level])]
    return torch.cat(parts, dim=1)


def unfold_fine(x: torch.Tensor, widths: list[int]) -> list[torch.Tensor]:
    """Inverse of :func:`fold_fine`, given the maps' channel widths (finest first)."""
    level = len(widths) - 1
    out, at = [], widths[level]
    for i in range(level):
        r = 2 ** (level - i)
        c = widths[i] * r * r
        out.append(F.pixel_shuffle(x[:, at:at + c], r))
        at += c
    out.append(x[:, :widths[level]])
    return out
