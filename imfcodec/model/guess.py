"""The encoder's token guess: E_T's network, given the decoded keyframe beside the current frame, trained
to give the tokens the frozen decoder rebuilds the frame best from.

E_T sees the current frame alone; the refinement that finds better tokens sees the reference too, and the
encoder holds it, so the guess does as well: a second stem on the keyframe adds to E_T's stem before the
trunk. That stem starts at zero, so an untrained guess is E_T exactly. The decoder runs E_T on the decoded
keyframe for the reference's token, so E_T must stay as it is; the guess is used for the current frames
only, by the encoder, and a file made with or without it decodes with the same decoder. A guess belongs to
one weights file (their SHA-256 is in its metadata): with other weights the encoder falls back to E_T.
"""
from __future__ import annotations

import copy
import os

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import UserError
from .config import ModelConfig
from .encoders import TokenEncoder, soft_argmax
from .imf import IMF
from .layers import act

FORMAT = "imfcodec-token-guess-1"


class TokenGuess(nn.Module):
    """Tokens (B, dm) of frames x (B, 3, H, W) given the reference frame ref (1 or B, 3, H, W), in [0, 1]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.et = TokenEncoder(cfg)
        self.ref_stem = nn.Conv2d(48, cfg.token_width // 4, 3, padding=1, bias=False)
        nn.init.zeros_(self.ref_stem.weight)

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        e = self.et
        h = e.stem(F.pixel_unshuffle(x * 2 - 1, 4)) + self.ref_stem(F.pixel_unshuffle(ref * 2 - 1, 4))
        return soft_argmax(e.heat(e.trunk(act(h))), e.log_temp.exp())


def guess_from(model: IMF) -> TokenGuess:
    """A trainable guess that starts as the model's own E_T."""
    g = TokenGuess(model.cfg)
    g.et = copy.deepcopy(model.token_encoder).float()
    for p in g.parameters():
        p.requires_grad_(True)
    return g.train()


def save_guess(guess: TokenGuess, cfg: ModelConfig, weights_id: bytes, path: str, **meta: str) -> None:
    """Write the guess (float32: it is small) with the config and the id of the weights it serves."""
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in guess.state_dict().items()}
    md = {"format": FORMAT, "config": cfg.to_json(), "weights_id": weights_id.hex(), **meta}
    tmp = path + ".part"
    save_file(tensors, tmp, metadata=md)
    os.replace(tmp, path)


def load_guess(path: str, weights_id: bytes, device: torch.device | str = "cpu") -> TokenGuess | None:
    """The guess in path for the weights whose SHA-256 is weights_id, in eval mode; None when it was
    trained for other weights. A file that is not a guess is a one-line error."""
    from safetensors import safe_open
    try:
        with safe_open(path, "pt") as f:
            md = dict(f.metadata() or {})
        if md.get("format") != FORMAT:
            raise KeyError("format")
        cfg = ModelConfig.from_json(md["config"])
        state = load_file(path)
    except (SafetensorError, KeyError, ValueError, OSError) as e:
        raise UserError(f"not an imfcodec token guess file: {path} ({e})") from None
    if md.get("weights_id") != weights_id.hex():
        return None
    guess = TokenGuess(cfg)
    try:
        guess.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"token guess does not fit its config: {path} ({str(e).splitlines()[0]})") from None
    for p in guess.parameters():
        p.requires_grad_(False)
    return guess.eval().to(device)
