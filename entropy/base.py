"""One interface for every token coder.

A coder turns a chunk of tokens (frames x dm, float32) into bytes and back. It is stateful across the
chunks of one reference segment (a learned coder conditions on the previous decoded token) and
restarts at every keyframe (:meth:`reset`). The encoder must use the *dequantized* tokens that
:meth:`encode` returns, so that it sees exactly what the decoder will.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

#: Wire ids of the token codecs, as stored in the .imf header.
CODEC_IDS: dict[str, int] = {"zfp": 0, "learned": 1, "predictive": 2}


class TokenCoder(ABC):
    name: str = ""

    def __init__(self, dm: int):
        self.dm = dm

    @abstractmethod
    def params(self) -> bytes:
        """The coder's parameters as stored in the header (enough to build the decoder's twin)."""

    @abstractmethod
    def encode(self, tokens: np.ndarray) -> tuple[bytes, np.ndarray]:
        """Code a chunk (n, dm) float32; returns the payload and the dequantized tokens."""

    @abstractmethod
    def decode(self, payload: bytes, n: int) -> np.ndarray:
        """Rebuild a chunk of n tokens; raises ValueError on a payload that cannot be this chunk."""

    def check_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """The chunk as a contiguous float32 (n, dm) array; ValueError for a wrong shape or a non-finite value."""
        arr = np.ascontiguousarray(tokens, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != self.dm:
            raise ValueError(f"tokens must be (n, {self.dm})")
        if not np.isfinite(arr).all():
            raise ValueError("non-finite token")
        return arr

    def payload_size(self, n: int) -> int | None:
        """The exact bytes a chunk of n tokens takes, when that depends on n alone (a fixed rate); else None."""
        return None

    def expected_bits(self) -> float:
        """Bits a token value is expected to take before any chunk has been coded: where a rate control
        starts until it has measured the file's own (a byte; coders that know better say so)."""
        return 8.0

    def reset(self) -> None:
        """Forget the context (called at every keyframe)."""
