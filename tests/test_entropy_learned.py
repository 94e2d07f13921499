"""The learned token coder: round trips, bit-exact determinism across thread counts, robustness to garbage,
its parameters, and that the prior clearly beats ZFP on correlated tokens."""
import decimal
import hashlib
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from entropy import coder_from_header, make_coder
from entropy import laplace
from entropy import learned as L
from imfcodec.train.prior import coded_bits, match_zfp_qstep, train_prior
from entropy.zfp import ZfpCoder

torch.set_num_threads(1)
DM = 16
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ar1(rng: np.random.Generator, clips: int, frames: int, rho: float = 0.95) -> list[np.ndarray]:
    """Per-dimension AR(1) token sequences with fixed per-dimension scale and offset."""
    scale, offset = np.linspace(0.5, 2.0, DM), np.linspace(-1.0, 1.0, DM)
    out = []
    for _ in range(clips):
        x = np.zeros((frames, DM))
        x[0] = rng.normal(size=DM)
        for t in range(1, frames):
            x[t] = rho * x[t - 1] + np.sqrt(1 - rho ** 2) * rng.normal(size=DM)
        out.append((x * scale + offset).astype(np.float32))
    return out


@pytest.fixture(scope="module")
def prior(tmp_path_factory) -> tuple[str, list[np.ndarray], float]:
    """A tiny prior fitted on AR(1) tokens at the step matching ZFP rate 8 (about 2 s)."""
    seqs = ar1(np.random.default_rng(0), 40, 100)
    qstep = match_zfp_qstep(seqs)
    path = train_prior(seqs, DM, qstep, steps=400, out=str(tmp_path_factory.mktemp("prior") / "p.safetensors"),
                       hidden=16, layers=(1,), batch=256, log=None)
    return path, seqs, qstep


def coder(prior, qstep=None) -> L.LearnedCoder:
    return L.LearnedCoder.for_encoding(DM, qstep, prior=prior[0])


def round_trip(enc, dec, chunks: list[np.ndarray]) -> None:
    """Chunks coded by enc decode by dec to enc's dequantized tokens, within half a step of the input."""
    for c in chunks:
        payload, deq = enc.encode(c)
        out = dec.decode(payload, len(c))
        assert out.dtype == np.float32 and out.shape == c.shape
        assert np.array_equal(out, deq)
        assert (np.abs(deq - c) <= enc.qstep / 2 * 1.0001).all()


def test_round_trip_random_and_segments(prior):
    rng = np.random.default_rng(1)
    enc, dec = coder(prior), coder(prior)
    for segment in range(3):  # keyframe between segments
        enc.reset()
        dec.reset()
        toks = rng.normal(size=(45, DM)).astype(np.float32) * (1 + segment)
        round_trip(enc, dec, [toks[:1], toks[1:20], toks[20:20], toks[20:]])


def test_round_trip_escapes_and_clamp(prior):
    enc, dec = coder(prior), coder(prior)
    toks = np.zeros((6, DM), np.float32)
    toks[1] = 500 * enc.qstep                           # far from any prediction: escapes
    toks[2, ::2] = -3000 * enc.qstep
    toks[3, 0] = 1e9                                    # beyond QMAX steps: clamped
    payload, deq = enc.encode(toks)
    assert deq[3, 0] == np.float32(L.QMAX) * np.float32(enc.qstep)
    assert np.array_equal(dec.decode(payload, len(toks)), deq)
    round_trip(enc, dec, [toks[2::-1].copy()])          # and the context carries across chunks


def test_round_trip_real_shaped_tokens(prior):
    """Tokens from the tiny random network: another scale and structure than the prior was fitted on."""
    from imfcodec.model import IMF, TINY

    torch.manual_seed(0)
    model = IMF(TINY).eval()
    t = torch.linspace(0, 1, 24)[:, None, None, None]
    frames = (torch.rand(1, 3, TINY.size, TINY.size) * (1 - t) + torch.rand(1, 3, TINY.size, TINY.size) * t)
    with torch.no_grad():
        toks = model.encode_tokens(frames).numpy()
    enc, dec = coder(prior, 0.01), coder(prior, 0.01)
    round_trip(enc, dec, [toks[:8], toks[8:]])


_ENCODE = """
import sys, numpy as np, torch
torch.set_num_threads({threads})
from entropy import laplace
from entropy import learned as L
c = L.LearnedCoder.for_encoding({dm}, prior=sys.argv[1])
toks = np.load(sys.argv[2])
out = [c.encode(toks[i:i + 7])[0] for i in range(0, len(toks), 7)]
open(sys.argv[3], "wb").write(b"".join(len(p).to_bytes(4, "little") + p for p in out))
"""
_DECODE = """
import sys, numpy as np, torch
torch.set_num_threads({threads})
from entropy import laplace
from entropy import learned as L
c = L.LearnedCoder.for_encoding({dm}, prior=sys.argv[1])
blob, out, i = open(sys.argv[3], "rb").read(), [], 0
toks = np.load(sys.argv[2])
for k in range(0, len(toks), 7):
    n = int.from_bytes(blob[i:i + 4], "little")
    out.append(c.decode(blob[i + 4:i + 4 + n], len(toks[k:k + 7])))
    i += 4 + n
np.save(sys.argv[4], np.concatenate(out))
"""


def _run(script: str, threads: int, *args: str) -> None:
    env = dict(os.environ, PYTHONPATH=ROOT, **{v: str(threads) for v in (
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")})
    subprocess.run([sys.executable, "-c", script.format(threads=threads, dm=DM), *args], env=env, check=True,
                   timeout=120)


def test_one_thread_encode_two_thread_decode(prior, tmp_path):
    toks = ar1(np.random.default_rng(2), 1, 30)[0]
    np.save(tmp_path / "t.npy", toks)
    _run(_ENCODE, 1, prior[0], str(tmp_path / "t.npy"), str(tmp_path / "a.bin"))
    _run(_DECODE, 2, prior[0], str(tmp_path / "t.npy"), str(tmp_path / "a.bin"), str(tmp_path / "d.npy"))
    here = coder(prior)
    mine = [here.encode(toks[i:i + 7]) for i in range(0, len(toks), 7)]
    blob = b"".join(len(p).to_bytes(4, "little") + p for p, _ in mine)
    assert (tmp_path / "a.bin").read_bytes() == blob                     # same payloads in 3 processes
    assert np.array_equal(np.load(tmp_path / "d.npy"), np.concatenate([d for _, d in mine]))


def test_tables_are_pinned():
    """The Laplace tables are part of the format: any change to them breaks every stream."""
    h = hashlib.sha256()
    for j in (0, L.SCALE_ZERO, L.NUM_SCALES - 1):
        with decimal.localcontext(prec=5):  # the thread's own decimal context must not matter
            rows = laplace.scale_rows(j)
        assert (rows >= 0).all() and (rows.sum(1) == laplace.FREE).all()
        h.update(rows.astype("<i4").tobytes())
    assert h.hexdigest()[:16] == "08b7ac747f40bc4b"


def test_garbage_payloads_raise(prior):
    enc = coder(prior)
    toks = ar1(np.random.default_rng(3), 1, 10)[0]
    payload, _ = enc.encode(toks)
    bad = [payload[:-1], payload[:-4], payload + bytes(4), payload + b"\x01\x02\x03\x04", payload + payload,
           payload[:8] + bytes([payload[8] ^ 1]) + payload[9:], b"\xff" * (4 * 10 ** 6)]
    for p in bad:
        with pytest.raises(ValueError):
            coder(prior).decode(p, len(toks))
    for n in (-1, L.MAX_FRAMES + 1):
        with pytest.raises(ValueError):
            coder(prior).decode(payload, n)
    with pytest.raises(ValueError):
        coder(prior).decode(b"\0\0\0\0", 0)
    rng = np.random.default_rng(4)
    caught, t0 = 0, time.time()
    for _ in range(100):
        n = int(rng.integers(1, 40))
        junk = rng.integers(0, 256, size=4 * int(rng.integers(1, 60)), dtype=np.uint8).tobytes()
        try:
            out = coder(prior).decode(junk, n)
            assert out.shape == (n, DM) and np.isfinite(out).all()
        except ValueError:
            caught += 1
    assert caught >= 50 and time.time() - t0 < 10


def test_params_round_trip(prior):
    enc = coder(prior, 0.03125)
    params = enc.params()
    dec = L.LearnedCoder.from_params(DM, params, [prior[0]])
    assert dec.qstep == 0.03125 and dec.prior.id == enc.prior.id and dec.params() == params
    toks = ar1(np.random.default_rng(5), 1, 12)[0]
    round_trip(enc, dec, [toks])
    other = train_prior(ar1(np.random.default_rng(6), 4, 20), DM, 0.1, steps=2, layers=(0,),
                        out=prior[0].replace("p.safetensors", "other.safetensors"), log=None)
    for p, path in [(params, other), (params[:-1], prior[0]), (b"\x02" + params[1:], prior[0])]:
        with pytest.raises(ValueError):
            L.LearnedCoder.from_params(DM, p, [path])
    with pytest.raises(ValueError):  # another dm than the prior's
        L.LearnedCoder.for_encoding(DM * 2, prior=prior[0])
    with pytest.raises(ValueError):  # not a prior at all
        L.IntPrior.from_bytes(b"\x10\0\0\0\0\0\0\0{}" + bytes(20))
    assert make_coder("learned", DM, qstep=0.5, prior=prior[0]).qstep == 0.5
    with pytest.raises(ValueError):  # no prior given for this dm
        coder_from_header(1, 3, params)


def test_learned_beats_zfp_on_ar1(prior):
    path, _, qstep = prior
    test = ar1(np.random.default_rng(7), 4, 96)
    bits, mse = coded_bits(path, test)
    zfp, nbytes, err = ZfpCoder(DM, 8.0), 0, 0.0
    for s in test:
        for i in range(0, len(s), 32):
            payload, deq = zfp.encode(s[i:i + 32])
            nbytes += len(payload)
            err += float(((deq - s[i:i + 32]) ** 2).sum())
    zfp_bits, zfp_mse = 8 * nbytes / sum(s.size for s in test), err / sum(s.size for s in test)
    print(f"AR(1): learned {bits:.2f} bits/value mse {mse:.3g}; ZFP {zfp_bits:.2f} bits/value mse {zfp_mse:.3g}")
    assert bits < 0.7 * zfp_bits and mse < 1.3 * zfp_mse


def test_laplace_bits_gradients_stay_finite_far_from_the_mean():
    """Real tokens put predictions hundreds of scales away: both where() branches must keep finite gradients."""
    import torch

    from imfcodec.train.prior import laplace_bits
    mean = torch.tensor([0.0, 500.0, -800.0, 0.2], requires_grad=True)
    log2s = torch.tensor([-4.0, -4.0, -3.0, 0.0], requires_grad=True)
    bits = laplace_bits(torch.tensor([0.0, 0.0, 3.0, 0.0]), mean, log2s)
    bits.sum().backward()
    assert torch.isfinite(bits).all() and torch.isfinite(mean.grad).all() and torch.isfinite(log2s.grad).all()
