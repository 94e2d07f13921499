"""uint8 RGB frames (H, W, 3), as video I/O gives them, to the model's float tensors (N, 3, H, W) in [0, 1],
and back."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def to_tensor(frames: Sequence[np.ndarray] | np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """A batch of frames as one float tensor on device."""
    return torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).float() / 255


def to_images(x: torch.Tensor) -> list[np.ndarray]:
    """A batch of model outputs as frames, clamped to [0, 1] and rounded to uint8."""
    arr = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return list(arr)
