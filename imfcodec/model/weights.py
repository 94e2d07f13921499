"""Weights on disk: safetensors (no pickle), the config in the metadata, stored as float16 (float32 for
the few tensors float16 cannot hold) to keep the shipped files small, and identified by the SHA-256 of the
file's bytes (the .imf header carries it)."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import UserError
from .config import ModelConfig
from .imf import IMF

SHIPPED_DIR = "weights"


@dataclass
class LoadedModel:
    model: IMF
    meta: dict
    model_id: bytes  # 32-byte SHA-256 of the weights file
    path: str

    @property
    def trained(self) -> bool:
        return int(self.meta.get("steps", 0)) > 0


def save_weights(model: IMF, path: str, **meta) -> bytes:
    """Write the model's weights (float16) with its config; returns the file's SHA-256."""
    tensors = {k: _compact(v.detach().to("cpu", torch.float32)) for k, v in model.state_dict().items()}
    md = {"config": model.cfg.to_json(), "format": "imfcodec-weights-1"}
    md.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    tmp = path + ".part"
    save_file(tensors, tmp, metadata=md)
    os.replace(tmp, path)
    return file_id(path)


def _compact(v: torch.Tensor) -> torch.Tensor:
    """float16 where it keeps the tensor to 1e-3 of its largest value, else float32 (out of range)."""
    h = v.half()
    ok = torch.isfinite(h).all() and (h.float() - v).abs().max() <= 1e-3 * v.abs().max()
    return (h if ok else v).contiguous()


def file_id(path: str) -> bytes:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).digest()


def read_metadata(path: str) -> dict:
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        return dict(f.metadata() or {})


def load_weights(path: str, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a weights file safely (safetensors only) into a float32 model in eval mode."""
    if not os.path.isfile(path):
        raise UserError(f"weights file not found: {path}")
    try:
        meta = read_metadata(path)
        cfg = ModelConfig.from_json(meta["config"])
        state = load_file(path)
    except (SafetensorError, KeyError, ValueError, OSError) as e:
        raise UserError(f"not an imfcodec weights file: {path} ({e})") from None
    model = IMF(cfg)
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as e:
        raise UserError(f"weights do not fit their config: {path} ({str(e).splitlines()[0]})") from None
    model.eval().to(device)
    parsed = {}
    for k, v in meta.items():
        try:
            parsed[k] = json.loads(v)
        except ValueError:
            parsed[k] = v
    return LoadedModel(model, parsed, file_id(path), path)


def shipped_path(dm: int = 32, size: int = 256) -> str:
    """Path of the packaged weights for a token size (the file may not exist for every dm)."""
    return str(resources.files("imfcodec").joinpath(SHIPPED_DIR, f"imf-dm{dm}-{size}.safetensors"))


def find_shipped(model_id: bytes, folder: str | None = None) -> str | None:
    """The packaged weights file (or one in folder) whose SHA-256 is, or starts with, model_id (a 7.x header
    keeps its first bytes), or None. The zoo keeps earlier releases' weights, so that files made with them
    still decode."""
    root = folder or str(resources.files("imfcodec").joinpath(SHIPPED_DIR))
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        path = os.path.join(root, name)
        if name.startswith("imf-") and name.endswith(".safetensors") and file_id(path).startswith(model_id):
            return path
    return None
