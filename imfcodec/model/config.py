"""Every size of the network in one dataclass, stored in the weights file's metadata."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class ModelConfig:
    size: int = 256            # frames are size x size RGB
    dm: int = 32               # latent token dimension
    # feature widths of E_F / D_F at 1/2, 1/4, 1/8, 1/16 of the frame size
    widths: tuple[int, int, int, int] = (16, 32, 96, 160)
    token_width: int = 128     # E_T trunk width
    style_dim: int = 256       # width of the token -> style mapping
    motion_widths: tuple[int, int] = (96, 128)  # IMF_D motion features at 1/8 and 1/16
    attn_dim: int = 64         # query/key width of the cross-attention
    blocks: tuple[int, int] = (1, 4)  # transformer blocks after alignment at 1/8 and 1/16
    heads: int = 4
    init_sigma: float = 0.5    # initial attention spread, in grid cells (identity-like alignment)
    flow_grid: int = 16        # token-driven coarse warp of the reference before attention (0: none)
    flow_hidden: int = 512     # width of its MLP
    pixel_path: bool = False   # blend the reference image, warped by the token flow, into the output (D_F's mask)

    def __post_init__(self):
        if self.size % 32:
            raise ValueError("model size must be a multiple of 32")
        if not 1 <= self.dm <= 1024:
            raise ValueError("dm out of range")
        if self.dm % 2:
            raise ValueError("keypoint tokens need an even dm")
        if self.flow_grid < 0:
            raise ValueError("flow_grid must be >= 0")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
        return cls(**kw)


#: A network small enough for tests: fast on two CPU cores, same structure as the default.
TINY = ModelConfig(size=64, dm=16, widths=(4, 8, 16, 24), token_width=16, style_dim=32,
                   motion_widths=(16, 16), attn_dim=16, blocks=(1, 1), heads=2, flow_grid=4, flow_hidden=32)
