"""Discretised Laplace frequency tables and escape coding shared by the integer token coders.

Both the learned and the predictive coder pick, per value, a centre, a mean offset (of MEAN_GRID) and a
scale index; these integers select a row of exact integer frequencies that constriction codes with, so the
probabilities are the same on every machine. See bitstream_spec.md ("Frequency tables", "Symbols and
escapes").
"""
from __future__ import annotations

import decimal
import hashlib
import io
from pathlib import Path

import constriction
import numpy as np

MEAN_GRID = 32           # means are snapped to multiples of 1/32 of a quantization step
TAIL = 128               # symbols code q - floor(mean) in [-TAIL, TAIL]; beyond that an escape
ALPHABET = 2 * TAIL + 3  # escape-low, the 2*TAIL+1 offsets, escape-high
PRECISION = 24           # constriction's default range coder: frequencies sum to 2**24
FREE = 2 ** PRECISION - ALPHABET  # the coder adds 1 to each of our weights, so ours sum to this
SCALE_MANT = (16, 19, 23, 27)     # scale j = SCALE_MANT[j % 4] * 2**(j // 4) / 256 quantization steps
NUM_SCALES = 41          # j = 0 .. 40: 1/16 .. 64 steps, about 2**(j/4 - 4)
SCALE_ZERO = 16          # index of the scale nearest 1 step
QMAX = 2 ** 20 - 1       # |q| bound: tokens beyond QMAX * qstep are clamped
ESC_BITS = 32            # the escape's bit length is coded uniformly among 0..31 (valid: 0..21)
QSTEP_MIN, QSTEP_MAX = 2.0 ** -16, 2.0 ** 10
MAX_FRAMES = 1 << 16     # tokens per chunk
MAX_BITS_PER_VALUE = PRECISION + 5 + 21  # worst case: a least likely escape, its length and its bits

CAT = constriction.stream.model.Categorical(perfect=False)
UNIFORM = constriction.stream.model.Uniform()

#: The decimal context of every table and logarithm: 34 digits, each operation correctly rounded.
DEC = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_EVEN, Emin=-999999, Emax=999999)
_TABLE = np.zeros((NUM_SCALES, MEAN_GRID, ALPHABET), np.float64)
_TABLE_DONE = np.zeros(NUM_SCALES, bool)
#: Every scale's rows as build_tables() computes them, shipped so that a process does not spend about 36 ms
#: a scale (a second or so of its start) computing the ones it uses; used only if its SHA-256 is this one.
TABLES_FILE = Path(__file__).with_name("laplace_tables.npz")
TABLES_SHA256 = "932d5b33899080d71358bd47b933d8e836bfdbfddb410126d0f0785d6c6b8c5b"


def scale_rows(j: int) -> np.ndarray:
    """Integer weights (MEAN_GRID, ALPHABET) for scale j, one row per mean offset phi / MEAN_GRID.

    Row phi holds floor(FREE * CDF(edge)) differences of a Laplace(phi / MEAN_GRID, scale_j) at the bin
    edges k - 1/2 (k = -TAIL .. TAIL + 1), with escape-low and escape-high taking the two tails. Decimal
    arithmetic at 34 digits (every operation through DEC, never the thread's default context) is
    correctly rounded, so every machine computes the same table.
    """
    c, D = DEC, decimal.Decimal
    beta = c.divide(D(256), D(SCALE_MANT[j % 4] << (j // 4)))  # 1 / scale
    r = c.exp(c.minus(beta))
    half, three_halves = D("0.5"), D("1.5")
    rows = np.empty((MEAN_GRID, ALPHABET), np.float64)
    for phi in range(MEAN_GRID):
        mu = c.divide(D(phi), D(MEAN_GRID))
        cdf = []
        t = c.multiply(half, c.exp(c.minus(c.multiply(c.add(mu, half), beta))))  # CDF(-1/2 - i), i = 0 .. TAIL
        for _ in range(TAIL + 1):
            cdf.append(t)
            t = c.multiply(t, r)
        cdf.reverse()
        if mu <= half:                                                    # CDF(1/2)
            cdf.append(c.subtract(D(1), c.multiply(half, c.exp(c.minus(c.multiply(c.subtract(half, mu), beta))))))
        else:
            cdf.append(c.multiply(half, c.exp(c.minus(c.multiply(c.subtract(mu, half), beta)))))
        t = c.multiply(half, c.exp(c.minus(c.multiply(c.subtract(three_halves, mu), beta))))  # 1 - CDF(3/2 + i)
        for _ in range(TAIL):
            cdf.append(c.subtract(D(1), t))
            t = c.multiply(t, r)
        ints = [0] + [int(c.multiply(v, D(FREE))) for v in cdf] + [FREE]
        cum = np.maximum.accumulate(np.array(ints, np.int64))
        rows[phi] = np.diff(cum)
    return rows


def build_tables() -> np.ndarray:
    """Every scale's rows (NUM_SCALES, MEAN_GRID, ALPHABET) as int32 (each weight is below 2**24)."""
    return np.stack([scale_rows(j) for j in range(NUM_SCALES)]).astype(np.int32)


def write_tables(path: Path = TABLES_FILE) -> str:
    """Write build_tables() to path (compressed .npz); returns the file's SHA-256 for TABLES_SHA256."""
    buf = io.BytesIO()
    np.savez_compressed(buf, rows=build_tables())
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def _load_shipped() -> None:
    """Fill every scale's rows from the shipped file when it is there and is the file recorded; otherwise
    they are computed as used."""
    try:
        data = TABLES_FILE.read_bytes()
    except OSError:
        return
    if hashlib.sha256(data).hexdigest() != TABLES_SHA256:
        return
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        _TABLE[:] = f["rows"]
    _TABLE_DONE[:] = True


def laplace_rows(j: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Weights (len, ALPHABET) for per-symbol scale indices and mean offsets (from the shipped tables, or
    built on first use)."""
    for s in np.unique(j):
        if not _TABLE_DONE[s]:
            _TABLE[s] = scale_rows(int(s))
            _TABLE_DONE[s] = True
    return _TABLE[j, phi]


_load_shipped()


def escape_symbols(excess: list[int]) -> tuple[np.ndarray, object, np.ndarray]:
    """Uniform symbols for escaped offsets: per excess e, its bit length L (of 32), then the L-1 bits
    below its leading one (if L >= 2). Every size is a power of two, so these are plain bits."""
    syms, sizes = [], []
    for e in excess:
        nb = e.bit_length()
        syms.append(nb)
        sizes.append(ESC_BITS)
        if nb >= 2:
            syms.append(e - (1 << (nb - 1)))
            sizes.append(1 << (nb - 1))
    return np.array(syms, np.int32), UNIFORM, np.array(sizes, np.int32)


def decode_escape(dec) -> int:
    nb = int(dec.decode(UNIFORM, np.array([ESC_BITS], np.int32))[0])
    if nb > 21:
        raise ValueError("escape out of range")
    if nb < 2:
        return nb
    return (1 << (nb - 1)) + int(dec.decode(UNIFORM, np.array([1 << (nb - 1)], np.int32))[0])
