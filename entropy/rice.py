"""Rice coding of integer arrays: each value zigzagged to a natural number, its quotient by 2**k in unary
(ones ended by a zero) and its k low bits, most significant bit first, zero-padded to a byte.

Decoding is integer arithmetic only, so every machine reads the same values. The decoder offsets of
decoder adaptation (the ADPT chunk, bitstream_spec.md) are coded this way.
"""
from __future__ import annotations

import numpy as np

MAX_K = 15
MAX_QUOTIENT = 64         # a longer unary run is corruption, not data
MAX_COUNT = 1 << 16       # values one payload may hold


def _zigzag(q: np.ndarray) -> np.ndarray:
    return np.where(q >= 0, 2 * q, -2 * q - 1)


def best_k(z: np.ndarray) -> int:
    """The Rice parameter that codes the natural numbers z in the fewest bits, quotients kept in bounds."""
    best = min(range(MAX_K + 1), key=lambda k: int(np.sum((z >> k) + 1 + k)))
    while int((z >> best).max(initial=0)) > MAX_QUOTIENT:
        best += 1
    return best


def encode(q: np.ndarray) -> tuple[int, bytes]:
    """The Rice parameter and the coded bits of the integers q; ValueError when they are too large."""
    z = _zigzag(np.asarray(q, np.int64))
    k = best_k(z)
    if k > MAX_K:
        raise ValueError("values too large to Rice-code")
    bits: list[int] = []
    for v in z.tolist():
        bits += [1] * (v >> k) + [0] + [(v >> i) & 1 for i in range(k - 1, -1, -1)]
    bits += [0] * (-len(bits) % 8)
    return k, np.packbits(np.array(bits, np.uint8)).tobytes() if bits else b""


def decode(body: bytes, n: int, k: int) -> np.ndarray:
    """The n integers (int64) coded in body with Rice parameter k; ValueError on anything malformed."""
    if k > MAX_K:
        raise ValueError("impossible Rice parameter")
    if n > MAX_COUNT or n * (1 + k) > 8 * len(body) or len(body) > -(-n * (1 + MAX_QUOTIENT + k) // 8):
        raise ValueError("its length does not fit its count")
    bits = np.unpackbits(np.frombuffer(body, np.uint8))
    out = np.empty(n, np.int64)
    zeros = np.flatnonzero(bits == 0)  # each value's unary run ends at the next zero
    pos = 0
    for i in range(n):
        j = np.searchsorted(zeros, pos)
        if j == len(zeros) or zeros[j] - pos > MAX_QUOTIENT or zeros[j] + 1 + k > len(bits):
            raise ValueError("corrupt or truncated offsets")
        quot, pos = int(zeros[j] - pos), int(zeros[j]) + 1
        rem = 0
        for b in bits[pos:pos + k].tolist():
            rem = rem << 1 | b
        pos += k
        out[i] = quot << k | rem
    if len(bits) - pos >= 8 or bits[pos:].any():
        raise ValueError("data after the offsets")
    return np.where(out & 1, -(out + 1) // 2, out // 2)
