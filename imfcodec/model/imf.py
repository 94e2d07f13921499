"""The IMF network assembled, split the way a codec uses it: what the reference gives is computed
once (:meth:`IMF.reference`), then frames are synthesised from tokens in batches (:meth:`IMF.synthesize`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .alignment import CrossAttentionAlign, Refine, fold_fine, to_map, to_tokens, unfold_fine
from .config import ModelConfig
from .encoders import FeatureEncoder, TokenEncoder
from .flow import TokenFlow, warp
from .frame_decoder import FrameDecoder
from .token_decoder import TokenDecoder


@dataclass
class Reference:
    """Everything the decoder derives from a reference frame, cached across the frames that use it."""
    token: torch.Tensor     # t_r (B, dm)
    keys8: torch.Tensor     # (B, N8, attn_dim)
    keys16: torch.Tensor    # (B, N16, attn_dim)
    feats: list[torch.Tensor]  # E_F's maps at 1/2 .. 1/16 (warped per frame when the model has a flow)
    image: torch.Tensor | None = None  # the reference frame itself (the pixel path shows it; the encoder's
                                       # token guess reads it)


class IMF(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        g8, g16 = cfg.size // 8, cfg.size // 16
        w = cfg.widths
        m8, m16 = cfg.motion_widths
        self.feature_encoder = FeatureEncoder(cfg)      # E_F
        self.token_encoder = TokenEncoder(cfg)          # E_T
        self.token_decoder = TokenDecoder(cfg)          # IMF_D
        self.align8 = CrossAttentionAlign(m8, cfg.attn_dim, g8, cfg.init_sigma)    # IMF_A at 1/8
        self.align16 = CrossAttentionAlign(m16, cfg.attn_dim, g16, cfg.init_sigma)  # IMF_A at 1/16
        self.refine8 = Refine(w[2], cfg.heads, cfg.blocks[0], g8 * g8)
        self.refine16 = Refine(w[3], cfg.heads, cfg.blocks[1], g16 * g16)
        self.frame_decoder = FrameDecoder(cfg)          # D_F
        self.flow = TokenFlow(cfg.dm, cfg.flow_grid, cfg.flow_hidden) if cfg.flow_grid else None

    def encode_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """t = E_T(x) for a batch of frames (B, 3, H, W) in [0, 1]."""
        return self.token_encoder(frames)

    def reference(self, frame: torch.Tensor) -> Reference:
        feats = self.feature_encoder(frame)
        token = self.token_encoder(frame)
        m8, m16 = self.token_decoder(token)
        return Reference(token=token, keys8=self.align8.keys(m8), keys16=self.align16.keys(m16), feats=feats,
                         image=frame)

    def synthesize(self, tokens: torch.Tensor, ref: Reference,
                   return_attention: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Frames (B, 3, H, W) from current tokens (B, dm) and a cached reference (batch 1 or B); with
        return_attention also the attention maps at 1/8 and 1/16 (training supervises them)."""
        cfg = self.cfg
        g8, g16 = cfg.size // 8, cfg.size // 16
        w = list(cfg.widths)
        m8, m16 = self.token_decoder(tokens)
        feats = ref.feats
        flow = None
        if self.flow is not None:
            flow = self.flow(tokens, ref.token)
            feats = [warp(f, flow) for f in feats]
        att16 = self.align16.attention(m16, ref.keys16)
        att8 = self.align8.attention(m8, ref.keys8)
        a16 = self.refine16(self.align16.aligned(att16, to_tokens(feats[3])))
        a8 = self.align8.aligned(att8, to_tokens(fold_fine(feats[:3])))
        a8 = torch.cat([self.refine8(a8[..., :w[2]]), a8[..., w[2]:]], dim=-1)
        feats = unfold_fine(to_map(a8, g8, g8), w[:3]) + [to_map(a16, g16, g16)]
        frames, mask = self.frame_decoder(feats, m8, m16)
        if mask is not None:
            frames = self._show_reference(frames, mask, ref.image, flow)
        return (frames, [att8, att16]) if return_attention else frames

    @staticmethod
    def _show_reference(generated: torch.Tensor, mask: torch.Tensor, image: torch.Tensor,
                        flow: torch.Tensor | None) -> torch.Tensor:
        """The pixel path: where the mask is 1 the output is the reference image warped by the token flow
        (full resolution, so the keyframe's detail survives), where it is 0 what D_F generated."""
        warped = image.expand(len(generated), -1, -1, -1) if flow is None else warp(image, flow)
        return mask * warped.to(generated.dtype) + (1 - mask) * generated

    def forward(self, ref_frames: torch.Tensor, cur_frames: torch.Tensor,
                return_aux: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Frames from (reference, current) pairs; with return_aux also the tokens and attention maps."""
        tokens = self.token_encoder(cur_frames)
        out = self.synthesize(tokens, self.reference(ref_frames), return_attention=return_aux)
        return (out[0], tokens, out[1]) if return_aux else out
