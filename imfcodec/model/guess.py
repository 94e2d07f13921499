"""The encoder's token guess: a second copy of E_T trained to give the tokens the frozen decoder rebuilds
best, where E_T itself was trained jointly with the decoder.

The decoder runs E_T on the decoded keyframe for the reference's token, so E_T must stay as it is; the
guess is used for the current frames only, by the encoder. A file made with or without it decodes with the
same decoder. A guess belongs to one weights file (their SHA-256 is in its metadata): with other weights
the encoder falls back to E_T.
"""
from __future__ import annotations

import copy
import os

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import UserError
from .config import ModelConfig
from .encoders import TokenEncoder
from .imf import IMF

FORMAT = "imfcodec-token-guess-1"


def guess_from(model: IMF) -> TokenEncoder:
    """A trainable guess that starts as the model's own E_T."""
    g = copy.deepcopy(model.token_encoder).float()
    for p in g.parameters():
        p.requires_grad_(True)
    return g.train()


def save_guess(guess: TokenEncoder, cfg: ModelConfig, weights_id: bytes, path: str, **meta: str) -> None:
    """Write the guess (float32: it is small) with the config and the id of the weights it serves."""
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in guess.state_dict().items()}
    md = {"format": FORMAT, "config": cfg.to_json(), "weights_id": weights_id.hex(), **meta}
    tmp = path + ".part"
    save_file(tensors, tmp, metadata=md)
    os.replace(tmp, path)


def load_guess(path: str, weights_id: bytes, device: torch.device | str = "cpu") -> TokenEncoder | None:
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
    guess = TokenEncoder(cfg)
    try:
        guess.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"token guess does not fit its config: {path} ({str(e).splitlines()[0]})") from None
    for p in guess.parameters():
        p.requires_grad_(False)
    return guess.eval().to(device)
