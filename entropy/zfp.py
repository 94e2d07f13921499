"""ZFP fixed-rate coding of token chunks: the chunk (frames x dm) is one 2-D array coded in 4x4 blocks
at `rate` bits per value, without zfp's own header (the .imf header carries type, shape and rate)."""
from __future__ import annotations

import struct

import numpy as np
import zfpy

from .base import TokenCoder


class ZfpCoder(TokenCoder):
    name = "zfp"

    def __init__(self, dm: int, rate: float = 8.0):
        super().__init__(dm)
        if not 1.0 <= rate <= 32.0:
            raise ValueError(f"ZFP rate must be 1..32 bits per value, got {rate}")
        self.rate = float(np.float32(rate))

    def params(self) -> bytes:
        return struct.pack("<f", self.rate)

    @classmethod
    def from_params(cls, dm: int, data: bytes) -> "ZfpCoder":
        if len(data) != 4:
            raise ValueError("bad ZFP parameters")
        (rate,) = struct.unpack("<f", data)
        if not np.isfinite(rate):
            raise ValueError("bad ZFP rate")
        return cls(dm, rate)

    def payload_size(self, n: int) -> int:
        """Exact byte size of a chunk of n tokens (fixed rate: it depends on the shape alone)."""
        return len(zfpy.compress_numpy(np.zeros((n, self.dm), np.float32), rate=self.rate, write_header=False))

    def encode(self, tokens: np.ndarray) -> tuple[bytes, np.ndarray]:
        arr = self.check_tokens(tokens)
        payload = zfpy.compress_numpy(arr, rate=self.rate, write_header=False)
        return payload, self.decode(payload, arr.shape[0])

    def decode(self, payload: bytes, n: int) -> np.ndarray:
        # zfp reads as many bits as the shape and rate imply: check the size first, never read past the end.
        if len(payload) != self.payload_size(n):
            raise ValueError("token payload has the wrong size for its frame count")
        out = zfpy._decompress(bytes(payload), zfpy.type_float, [n, self.dm], rate=self.rate)
        out = np.ascontiguousarray(out, dtype=np.float32).reshape(n, self.dm)
        if not np.isfinite(out).all():
            raise ValueError("token payload decodes to non-finite values")
        return out
