"""What a command runs with: the device, the network's weights file and the learned coder's prior files.

Weights and priors ship in imfcodec/weights/; an explicit path replaces the shipped file.
"""
from __future__ import annotations

import os
from importlib import resources

import torch

from .errors import UserError
from .model.encoders import TokenEncoder
from .model.guess import load_guess
from .model.weights import LoadedModel, find_shipped, load_weights, shipped_path


def pick_device(name: str) -> torch.device:
    """The torch device for --device auto, cpu or cuda (auto: CUDA when there is one)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available on this machine")
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


def resolve_model(weights: str | None, dm: int, device: torch.device, allow_untrained: bool,
                  model_id: bytes | None = None) -> LoadedModel:
    """The weights to use: an explicit file; else, for a file to decode, the shipped weights its header
    names (the zoo keeps earlier releases); else the shipped ones for dm. Untrained weights are refused."""
    path = weights or (model_id and find_shipped(model_id)) or shipped_path(dm)
    if not os.path.isfile(path):
        if weights:
            raise UserError(f"weights file not found: {weights}")
        raise UserError(f"no trained weights for dm={dm} are installed (expected {path}); "
                        f"train them with `imfcodec train` or pass --weights")
    lm = load_weights(path, device)
    if not lm.trained and not allow_untrained:
        raise UserError(f"the weights in {path} are untrained: they would produce noise; "
                        f"train them with `imfcodec train` first")
    return lm


def shipped_prior_path(dm: int, size: int = 256) -> str:
    """Where the learned coder's prior for a token size ships, beside the model weights."""
    return str(resources.files("imfcodec").joinpath("weights", f"prior-dm{dm}-{size}.safetensors"))


def shipped_priors(dm: int) -> list[str]:
    """Every shipped prior for a token size (a decoder picks the one a file's header names)."""
    d = resources.files("imfcodec").joinpath("weights")
    if not d.is_dir():
        return []
    return sorted(str(p) for p in d.iterdir()
                  if p.name.startswith(f"prior-dm{dm}-") and p.name.endswith(".safetensors"))


def shipped_guess_path(dm: int, size: int = 256) -> str:
    """Where the encoder's token guess for the shipped weights of a token size ships."""
    return str(resources.files("imfcodec").joinpath("weights", f"guess-dm{dm}-{size}.safetensors"))


def resolve_guess(choice: str, lm: LoadedModel, device: torch.device) -> TokenEncoder | None:
    """The encoder's token guess (None: E_T's tokens): for "auto", the shipped guess when it was trained
    for these weights; "et" for none; else the file named, which must have been trained for them."""
    if choice == "et":
        return None
    if choice == "auto":
        path = shipped_guess_path(lm.model.cfg.dm, lm.model.cfg.size)
        return load_guess(path, lm.model_id, device) if os.path.isfile(path) else None
    if not os.path.isfile(choice):
        raise UserError(f"token guess file not found: {choice}")
    guess = load_guess(choice, lm.model_id, device)
    if guess is None:
        raise UserError(f"the token guess {choice} was trained for other weights than {lm.path}")
    return guess
