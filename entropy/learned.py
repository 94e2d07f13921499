"""Learned conditional token coder: a small prior network predicts, from the previous decoded token of the
segment, a discretised Laplace per dimension for the current quantized token, and a range coder spends bits
accordingly.

The decoder must rebuild the encoder's probability model bit for bit on any machine, so nothing on the
model's path uses libm, BLAS or a thread-dependent reduction: the prior runs in int64 fixed point, its
outputs snap to a mean grid and a table of dyadic scales, and the Laplace tables are integer frequencies
computed once with correctly rounded decimal arithmetic. constriction then codes with those exact integers.
See bitstream_spec.md ("Learned token stream") for the wire format.
"""
from __future__ import annotations

import decimal
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Sequence

import constriction
import numpy as np
from safetensors.numpy import load as load_safetensors

from .base import TokenCoder
from .laplace import (ALPHABET, CAT, DEC, MAX_BITS_PER_VALUE, MAX_FRAMES, MEAN_GRID, NUM_SCALES, QMAX, QSTEP_MAX,
                      QSTEP_MIN, SCALE_ZERO, TAIL, decode_escape, escape_symbols, laplace_rows)

FORMAT = "imfcodec-prior-1"      # the prior file's format tag
VERSION = 1                      # first byte of params()
PARAMS = struct.Struct("<Bf16s")  # version, qstep (float32), prior id

FA = 16                  # fractional bits of the prior's activations, inputs and outputs
FW = 14                  # fractional bits of its weights
ACT_MAX = 2 ** (FA + 11)  # inputs are clamped to [-ACT_MAX, ACT_MAX], hidden activations to [0, ACT_MAX]
OUT_MAX = 2 ** 40        # outputs clamped to [-OUT_MAX, OUT_MAX]
W_LIMIT = 2 ** 20        # |weight| < W_LIMIT and |bias| < B_LIMIT: with at most MAX_IN inputs every
B_LIMIT = 2 ** 46        # sum stays below 2**59, exact in int64
MAX_IN = 2048            # dm + 1 and the hidden width are at most this
MAX_EXP = 40             # |per-dimension unit exponent|


def prior_id(data: bytes) -> bytes:
    """The prior's identity in the stream: the first 16 bytes of the SHA-256 of its file."""
    return hashlib.sha256(data).digest()[:16]


# ----------------------------------------------------------------------------------------------------
# The integer prior

@dataclass
class IntPrior:
    """The exported prior: int64 affine layers on fixed-point numbers, bit exact on every machine.

    Dimension d of a token is counted in units of 2**exp[d] (about its spread, so that FA fractional bits
    resolve it finely whatever the token scale). Input z = [x (dm values in those units, FA fractional
    bits), first-token flag (1 << FA)]. Hidden layers h = clamp((W h_prev + B) >> FW, 0, ACT_MAX); the
    output o = clamp((W h + S z + B) >> FW, +-OUT_MAX) holds the mean (same units as x) and log2 of the
    scale (log2 of token units), both with FA fractional bits.
    """
    dm: int
    exp: np.ndarray
    hidden: list[tuple[np.ndarray, np.ndarray]]
    out_w: np.ndarray
    skip: np.ndarray
    out_b: np.ndarray
    id: bytes
    meta: dict

    @classmethod
    def from_bytes(cls, data: bytes) -> "IntPrior":
        try:
            t = load_safetensors(data)
            (hlen,) = struct.unpack("<Q", data[:8])
            meta = json.loads(data[8:8 + hlen]).get("__metadata__", {})
        except Exception as e:  # safetensors raises its own error types on bad input
            raise ValueError(f"not a prior file ({e})") from None
        if meta.get("format") != FORMAT:
            raise ValueError("not an imfcodec prior file")
        try:
            dm, depth, qstep = int(meta["dm"]), int(meta["layers"]), float(meta["qstep"])
            if any(a.dtype.kind != "i" for a in t.values()) or not 0 <= depth <= 8 or not qstep > 0:
                raise ValueError("integer tensors, 0..8 hidden layers and a positive qstep expected")
            hidden = [(t[f"w{i}"].astype(np.int64), t[f"b{i}"].astype(np.int64)) for i in range(depth)]
            out_w, skip, out_b, exp = (t[k].astype(np.int64) for k in ("w_out", "skip", "b_out", "exp"))
        except (KeyError, ValueError) as e:
            raise ValueError(f"bad prior file ({e})") from None
        prior = cls(dm, exp, hidden, out_w, skip, out_b, prior_id(data), meta)
        prior._check()
        return prior

    @classmethod
    def load(cls, path: str) -> "IntPrior":
        with open(path, "rb") as f:
            return cls.from_bytes(f.read())

    def _check(self) -> None:
        """Shapes and ranges that keep every int64 sum exact (no overflow) whatever the file says."""
        width = self.dm + 1
        if not 1 <= width <= MAX_IN or self.exp.shape != (self.dm,) or np.abs(self.exp).max() > MAX_EXP:
            raise ValueError("bad prior dm or unit exponents")
        for w, b in self.hidden + [(self.out_w, self.out_b)]:
            if w.ndim != 2 or w.shape[1] != width or b.shape != (w.shape[0],) or not 1 <= w.shape[0] <= MAX_IN:
                raise ValueError("prior layer shapes do not chain")
            width = w.shape[0]
        if self.out_w.shape[0] != 2 * self.dm or self.skip.shape != (2 * self.dm, self.dm + 1):
            raise ValueError("prior output shape does not fit dm")
        for w in [w for w, _ in self.hidden] + [self.out_w, self.skip]:
            if np.abs(w).max() >= W_LIMIT:
                raise ValueError("prior weight out of range")
        for _, b in self.hidden + [(None, self.out_b)]:
            if np.abs(b).max() >= B_LIMIT:
                raise ValueError("prior bias out of range")

    def __call__(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean in units of 2**exp, log2 scale) with FA fractional bits, for inputs z (n, dm + 1) int64."""
        h = z
        for w, b in self.hidden:
            h = np.clip((h @ w.T + b) >> FW, 0, ACT_MAX)
        o = np.clip((h @ self.out_w.T + z @ self.skip.T + self.out_b) >> FW, -OUT_MAX, OUT_MAX)
        return o[:, :self.dm], o[:, self.dm:]


def log2_fixed(x: float) -> int:
    """round(log2(x) * 2**FA) from correctly rounded decimal logarithms: the same on every machine."""
    c = DEC
    v = c.multiply(c.divide(c.ln(decimal.Decimal(x)), c.ln(decimal.Decimal(2))), decimal.Decimal(1 << FA))
    return int(v.to_integral_value(rounding=decimal.ROUND_HALF_EVEN))


# ----------------------------------------------------------------------------------------------------
# The coder

class LearnedCoder(TokenCoder):
    """Uniform scalar quantization with step qstep, coded under the integer prior's Laplace model."""
    name = "learned"

    def __init__(self, dm: int, qstep: float, prior: IntPrior):
        super().__init__(dm)
        qstep = float(np.float32(qstep))
        if not QSTEP_MIN <= qstep <= QSTEP_MAX:
            raise ValueError(f"qstep must be in [{QSTEP_MIN}, {QSTEP_MAX}], got {qstep}")
        if prior.dm != dm:
            raise ValueError(f"the prior is for dm={prior.dm}, the stream has dm={dm}")
        self.qstep = qstep
        self.prior = prior
        unit = np.ldexp(qstep, FA - prior.exp)        # one step in fixed point, per dimension: exact
        self._in_scale = unit                         # q -> prior input (q * unit is exact in float64)
        self._mean_div = unit / MEAN_GRID             # prior mean -> multiples of 1/MEAN_GRID step
        self._log2_q = log2_fixed(qstep)
        self._prev: np.ndarray | None = None

    @classmethod
    def for_encoding(cls, dm: int, qstep: float | None = None, *, prior: str) -> "LearnedCoder":
        """Encoder side: the coder of the prior file given; qstep defaults to the step the prior was trained
        for."""
        if not os.path.isfile(prior):
            raise ValueError(f"no learned prior for dm={dm}: {prior} is missing (train one with "
                             "imfcodec.train.prior)")
        p = IntPrior.load(prior)
        return cls(dm, float(qstep if qstep is not None else p.meta["qstep"]), p)

    @classmethod
    def from_params(cls, dm: int, data: bytes, priors: Sequence[str]) -> "LearnedCoder":
        """Decoder side: the coder of the prior, among the files given, whose id the header names."""
        if len(data) != PARAMS.size:
            raise ValueError("bad learned-coder parameters")
        version, qstep, pid = PARAMS.unpack(data)
        if version != VERSION:
            raise ValueError(f"learned-coder version {version} is not supported")
        if not np.isfinite(qstep):
            raise ValueError("bad qstep")
        for path in priors:
            with open(path, "rb") as f:
                blob = f.read()
            if prior_id(blob) == pid:
                return cls(dm, qstep, IntPrior.from_bytes(blob))
        raise ValueError(f"the stream needs learned prior {pid.hex()}, which is not among the "
                         f"{len(priors)} available for dm={dm}")

    def params(self) -> bytes:
        return PARAMS.pack(VERSION, self.qstep, self.prior.id)

    def reset(self) -> None:
        self._prev = None

    # -- the model -----------------------------------------------------------------------------------

    def _inputs(self, prev: np.ndarray | None, rest: np.ndarray) -> np.ndarray:
        """Prior inputs (1 + len(rest), dm + 1) for the tokens that follow `prev` (None at a segment start:
        zeros and the first-token flag), then each row of `rest`."""
        rows = np.zeros((1 + len(rest), self.dm), np.int64)
        if prev is not None:
            rows[0] = prev
        rows[1:] = rest
        z = np.zeros((len(rows), self.dm + 1), np.int64)
        z[:, :self.dm] = np.clip(np.rint(rows * self._in_scale), -ACT_MAX, ACT_MAX)
        if prev is None:
            z[0, self.dm] = 1 << FA
        return z

    def _model(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For prior inputs z: centers floor(mean) in steps, mean offsets (of MEAN_GRID) and scale indices."""
        mean, log2s = self.prior(z)
        m = np.clip(np.rint(mean / self._mean_div), -QMAX * MEAN_GRID, QMAX * MEAN_GRID).astype(np.int64)
        j = np.clip((((log2s - self._log2_q) * 4 + (1 << (FA - 1))) >> FA) + SCALE_ZERO, 0, NUM_SCALES - 1)
        return m // MEAN_GRID, m % MEAN_GRID, j

    # -- coding --------------------------------------------------------------------------------------

    def encode(self, tokens: np.ndarray) -> tuple[bytes, np.ndarray]:
        arr = self.check_tokens(tokens)
        if len(arr) > MAX_FRAMES:
            raise ValueError(f"at most {MAX_FRAMES} tokens per chunk")
        q = np.clip(np.rint(arr / np.float32(self.qstep)), -QMAX, QMAX).astype(np.int64)
        payload = self._code(q)
        if len(q):
            self._prev = q[-1].copy()
        return payload, self._dequantize(q)

    def _code(self, q: np.ndarray) -> bytes:
        """The payload of quantized tokens q (n, dm) after the current context (the range coder's words,
        little-endian); one token at a time: its dm symbols, then the escapes of its dimensions in order."""
        n = len(q)
        if n == 0:
            return b""
        centers, phi, j = self._model(self._inputs(self._prev, q[:-1]))
        d = q - centers
        sym = (np.clip(d, -TAIL - 1, TAIL + 1) + TAIL + 1).astype(np.int32)
        enc = constriction.stream.queue.RangeEncoder()
        for i in range(n):
            enc.encode(sym[i], CAT, laplace_rows(j[i], phi[i]))
            esc = [int(abs(v)) - TAIL - 1 for v in d[i] if abs(v) > TAIL]
            if esc:
                enc.encode(*escape_symbols(esc))
        return enc.get_compressed().astype("<u4").tobytes()

    def decode(self, payload: bytes, n: int) -> np.ndarray:
        if not 0 <= n <= MAX_FRAMES:
            raise ValueError(f"token count {n} out of range")
        if len(payload) % 4 or len(payload) > 4 * (n * self.dm * MAX_BITS_PER_VALUE // 32 + 2):
            raise ValueError("token payload size cannot hold this chunk")
        if n == 0:
            if payload:
                raise ValueError("payload for an empty chunk")
            return np.zeros((0, self.dm), np.float32)
        dec = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, "<u4").astype(np.uint32))
        q = np.zeros((n, self.dm), np.int64)
        prev = self._prev
        try:
            for i in range(n):
                centers, phi, j = self._model(self._inputs(prev, q[:0]))
                sym = dec.decode(CAT, laplace_rows(j[0], phi[0])).astype(np.int64)
                d = sym - TAIL - 1
                for k in np.flatnonzero((sym == 0) | (sym == ALPHABET - 1)):
                    e = decode_escape(dec)
                    d[k] = -(TAIL + 1 + e) if sym[k] == 0 else TAIL + 1 + e
                q[i] = centers[0] + d
                if np.abs(q[i]).max() > QMAX:
                    raise ValueError("decoded token out of range")
                prev = q[i]
        except AssertionError as e:  # constriction's report of words no encoder can produce
            raise ValueError(f"damaged token payload ({e})") from None
        # A range decoder reads any words as some symbols; only the canonical payload of what was decoded
        # is accepted, which catches leftover, missing and most altered data.
        if self._code(q) != payload:
            raise ValueError("the token payload is not the coding of its tokens (leftover or damaged data)")
        self._prev = q[-1].copy()
        return self._dequantize(q)

    def _dequantize(self, q: np.ndarray) -> np.ndarray:
        return q.astype(np.float32) * np.float32(self.qstep)
