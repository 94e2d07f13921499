"""The IMF network (E_F, E_T, IMF_D, IMF_A, D_F) and its weights."""
from .config import TINY, ModelConfig
from .imf import IMF, Reference

__all__ = ["IMF", "ModelConfig", "Reference", "TINY"]
