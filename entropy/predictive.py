"""Predictive token coder: each quantized token is predicted from the previous two decoded tokens of its
segment, and each value's Laplace scale adapts to the recent residuals, with no trained model.

Why this model: E_T's tokens move like a random walk with bursts of motion, so the best cheap prediction is
the last token, and most of the gain is in the scale. Two backward-adaptive estimates set it: per dimension,
a running mean of that dimension's residual magnitudes; per token, how the residuals of the dimensions
already coded compare with their running means (a frame with fast motion moves every dimension). Nothing
extra is sent. The stream can add a share M/8 of the last change to the prediction (linear extrapolation),
but on the train/ clips' tokens at step 0.02 that costs bits: 0.935 bits a value at M = 0, 0.964 at 2,
1.021 at 4, 1.214 at 8 and 0.948 at -2, so the encoder writes M = 0.

Everything between the decoded integers and the coder's frequencies is integer arithmetic (int64, floor
shifts and divisions), so every machine and thread count computes the same probabilities; the frequency
rows are the shared exact tables of :mod:`entropy.laplace`. Wire format: bitstream_spec.md ("Predictive
token stream").
"""
from __future__ import annotations

import math
import struct

import constriction
import numpy as np

from .base import TokenCoder
from .laplace import (ALPHABET, CAT, MAX_BITS_PER_VALUE, MAX_FRAMES, NUM_SCALES, QMAX, QSTEP_MAX, QSTEP_MIN,
                      SCALE_MANT, SCALE_ZERO, TAIL, decode_escape, escape_symbols, laplace_rows)

VERSION = 1
PARAMS = struct.Struct("<Bfbb")  # version, qstep (float32), momentum (eighths), first-token scale index

SB = 8                   # scales are in 1/2**SB steps: table scale j is then exactly SCALE_MANT[j % 4] << (j // 4)
DECAY_MUL, DECAY_SHIFT = 1, 2   # a running mean forgets 1/4 per token
INIT_SCALE = 1 << SB            # 1 step: each dimension's running mean at the second token of a segment
ACTIVITY_PRIOR = 2 << SB        # 2 steps added to both sums of the within-token activity ratio
MIN_SCALE_INDEX = 6             # 0.16 steps: residuals are rarely more peaked than this
MAX_MOMENTUM = 8
#: Every value after a segment's first token costs at least 0.0922 bits (the likeliest symbol at scale index 6),
#: so a payload of n tokens has at least 9/100 bit a value of them, less the coder's 64-bit state: a short
#: payload claiming many tokens is refused before decoding (each token is dm range-decoder calls).
MIN_VALUE_BITS_PERCENT = 9
#: Scale index j covers [THRESHOLDS[j - 1], THRESHOLDS[j]): the geometric midpoints between table scales.
_SCALES = [SCALE_MANT[j % 4] << (j // 4) for j in range(NUM_SCALES)]
THRESHOLDS = np.array([math.isqrt(a * b) for a, b in zip(_SCALES, _SCALES[1:])], np.int64)
#: Defaults of the encoder: about the coarsest step whose frames keep ZFP rate 6's PSNR on the eval clips
#: (0.0165 there, benchmarks/token_bits.md), and the spread of the shipped E_T's tokens, the first token's scale.
DEFAULT_QSTEP = 0.016
DEFAULT_FIRST_SCALE = 0.3
BITS_PER_DOUBLING = 0.6


def expected_bits(qstep: float) -> float:
    """Bits a token value is expected to take at step qstep before any is coded (see the method)."""
    return max(0.5, 2.0 - BITS_PER_DOUBLING * math.log2(qstep / DEFAULT_QSTEP))


def step_for_bits(bits: float) -> float:
    """The step at which a value is expected to take bits bits (expected_bits' inverse, above 0.5)."""
    return DEFAULT_QSTEP * 2 ** ((2.0 - max(bits, 0.5)) / BITS_PER_DOUBLING)


def scale_index(scale: np.ndarray, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Table index of the scale (in 1/2**SB steps) times the activity ratio num / den, all int64 (floor
    division, so exact on every machine)."""
    b = scale * num // den
    return np.clip(np.searchsorted(THRESHOLDS, b, side="right"), MIN_SCALE_INDEX, NUM_SCALES - 1)


def first_scale_index(scale: float, qstep: float) -> int:
    """The table index nearest a scale in token units (encoder side; the header stores the index)."""
    return int(np.clip(round(4 * math.log2(scale / qstep)) + SCALE_ZERO, 0, NUM_SCALES - 1))


class PredictiveCoder(TokenCoder):
    """Uniform scalar quantization with step qstep, coded under a backward-adaptive Laplace model."""
    name = "predictive"

    def __init__(self, dm: int, qstep: float = DEFAULT_QSTEP, momentum: int = 0, first_j: int | None = None,
                 prior_bits: float | None = None):
        super().__init__(dm)
        self.prior_bits = prior_bits  # the encoder's own expectation, when it has measured one (not sent)
        qstep = float(np.float32(qstep))
        if not QSTEP_MIN <= qstep <= QSTEP_MAX:
            raise ValueError(f"qstep must be in [{QSTEP_MIN}, {QSTEP_MAX}], got {qstep}")
        if not -MAX_MOMENTUM <= momentum <= MAX_MOMENTUM:
            raise ValueError(f"momentum must be in [-{MAX_MOMENTUM}, {MAX_MOMENTUM}] eighths, got {momentum}")
        first_j = first_scale_index(DEFAULT_FIRST_SCALE, qstep) if first_j is None else first_j
        if not 0 <= first_j < NUM_SCALES:
            raise ValueError(f"first-token scale index must be in [0, {NUM_SCALES - 1}], got {first_j}")
        self.qstep, self.momentum, self.first_j = qstep, int(momentum), int(first_j)
        self.reset()

    @classmethod
    def from_params(cls, dm: int, data: bytes) -> "PredictiveCoder":
        if len(data) != PARAMS.size:
            raise ValueError("bad predictive-coder parameters")
        version, qstep, momentum, first_j = PARAMS.unpack(data)
        if version != VERSION:
            raise ValueError(f"predictive-coder version {version} is not supported")
        if not np.isfinite(qstep):
            raise ValueError("bad qstep")
        return cls(dm, qstep, momentum, first_j)

    def params(self) -> bytes:
        return PARAMS.pack(VERSION, self.qstep, self.momentum, self.first_j)

    def expected_bits(self) -> float:
        """About 2 bits a value at the default step on held-out talking heads, and 0.6 bits fewer for each
        doubling of the step (benchmarks/token_bits.md: 0.4 to 0.75 between steps 0.007 and 0.04), unless
        the encoder measured its tokens' bits (prior_bits)."""
        return expected_bits(self.qstep) if self.prior_bits is None else self.prior_bits

    def reset(self) -> None:
        self._hist: list[np.ndarray] = []          # the last two decoded q of the segment, newest last
        self._scale = np.full(self.dm, INIT_SCALE, np.int64)

    # -- the model -----------------------------------------------------------------------------------

    def _mean(self) -> np.ndarray:
        """The prediction of the next token in 1/32 steps: 0, the last token, or the last plus momentum/8 of
        the last change (clamped to +-QMAX steps)."""
        h = self._hist
        if not h:
            return np.zeros(self.dm, np.int64)
        step = 4 * self.momentum * (h[-1] - h[-2]) if len(h) == 2 else 0
        return np.clip(h[-1] * 32 + step, -32 * QMAX, 32 * QMAX)  # centres within QMAX keep escapes short

    def _push(self, q: np.ndarray, mag: np.ndarray) -> None:
        """Context update after a token q whose main symbols had magnitudes mag (capped at TAIL + 1)."""
        if self._hist:  # the first token's distance from 0 says nothing about motion
            self._scale = self._scale + ((DECAY_MUL * ((mag << SB) - self._scale)) >> DECAY_SHIFT)
        self._hist = (self._hist + [q.copy()])[-2:]

    def _indices(self, mag_before: np.ndarray) -> np.ndarray:
        """Scale indices of a token's dimensions, given the capped magnitudes of the dimensions before each
        (their prefix sums set the activity ratio)."""
        if not self._hist:
            return np.full(self.dm, self.first_j, np.int64)
        num = ACTIVITY_PRIOR + (mag_before << SB)
        den = ACTIVITY_PRIOR + np.cumsum(self._scale) - self._scale
        return scale_index(self._scale, num, den)

    # -- coding --------------------------------------------------------------------------------------

    def encode(self, tokens: np.ndarray) -> tuple[bytes, np.ndarray]:
        arr = self.check_tokens(tokens)
        if len(arr) > MAX_FRAMES:
            raise ValueError(f"at most {MAX_FRAMES} tokens per chunk")
        q = np.clip(np.rint(arr / np.float32(self.qstep)), -QMAX, QMAX).astype(np.int64)
        return self._code(q), q.astype(np.float32) * np.float32(self.qstep)

    def _code(self, q: np.ndarray) -> bytes:
        """The payload of quantized tokens q (n, dm) after the current context, which it advances: per token
        its dm main symbols, then the escapes of its dimensions in order (range coder words, little-endian)."""
        if not len(q):
            return b""
        enc = constriction.stream.queue.RangeEncoder()
        for row in q:
            m = self._mean()
            d = row - (m >> 5)
            mag = np.minimum(np.abs(d), TAIL + 1)
            j = self._indices(np.cumsum(mag) - mag)
            enc.encode((np.clip(d, -TAIL - 1, TAIL + 1) + TAIL + 1).astype(np.int32), CAT, laplace_rows(j, m & 31))
            esc = [int(v) - TAIL - 1 for v in np.abs(d) if v > TAIL]
            if esc:
                enc.encode(*escape_symbols(esc))
            self._push(row, mag)
        return enc.get_compressed().astype("<u4").tobytes()

    def decode(self, payload: bytes, n: int) -> np.ndarray:
        if not 0 <= n <= MAX_FRAMES:
            raise ValueError(f"token count {n} out of range")
        if len(payload) % 4 or len(payload) > 4 * (n * self.dm * MAX_BITS_PER_VALUE // 32 + 2) or \
                100 * (8 * len(payload) + 64) < MIN_VALUE_BITS_PERCENT * (n - 1) * self.dm:
            raise ValueError("token payload size cannot hold this chunk")
        if n == 0:
            if payload:
                raise ValueError("payload for an empty chunk")
            return np.zeros((0, self.dm), np.float32)
        start = (list(self._hist), self._scale.copy())
        dec = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, "<u4").astype(np.uint32))
        q = np.zeros((n, self.dm), np.int64)
        try:
            for i in range(n):
                q[i] = self._decode_token(dec)
        except AssertionError as e:  # constriction's report of words no encoder can produce
            self._hist, self._scale = start
            raise ValueError(f"damaged token payload ({e})") from None
        except ValueError:
            self._hist, self._scale = start
            raise
        # A range decoder reads any words as some symbols; only the canonical payload of what was decoded
        # is accepted, which catches leftover, missing and most altered data. Coding q again from the
        # chunk's starting context also leaves the context where decoding it did.
        self._hist, self._scale = start
        if self._code(q) != payload:
            self._hist, self._scale = start
            raise ValueError("the token payload is not the coding of its tokens (leftover or damaged data)")
        return q.astype(np.float32) * np.float32(self.qstep)

    def _decode_token(self, dec) -> np.ndarray:
        """One token: its main symbols one by one (each scale depends on the dimensions before it), then
        its escapes; advances the context."""
        m = self._mean()
        centre, phi = m >> 5, m & 31
        mag = np.zeros(self.dm, np.int64)
        sym = np.zeros(self.dm, np.int64)
        for k in range(self.dm):
            j = self._indices(np.cumsum(mag) - mag)[k]  # mag[k:] are still 0: only the prefix counts
            sym[k] = dec.decode(CAT, laplace_rows(np.array([j]), phi[k:k + 1]))[0]
            mag[k] = abs(sym[k] - TAIL - 1)
        d = sym - TAIL - 1
        for k in np.flatnonzero((sym == 0) | (sym == ALPHABET - 1)):
            e = decode_escape(dec)
            d[k] = -(TAIL + 1 + e) if sym[k] == 0 else TAIL + 1 + e
        q = centre + d
        if np.abs(q).max() > QMAX:
            raise ValueError("decoded token out of range")
        self._push(q, mag)
        return q
