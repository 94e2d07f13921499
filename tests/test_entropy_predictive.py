"""The predictive token coder: round trips across chunks and segments, the same bytes with 1 and 2 threads
in other processes, hostile payloads and parameters refused, and far fewer bits than ZFP on real tokens."""
import time

import numpy as np
import pytest

from entropy import CODEC_IDS, coder_from_header, make_coder
from entropy import predictive as P
from entropy.zfp import ZfpCoder
from tests.conftest import SHARED, eval_frames
from tests.test_entropy_learned import _run, round_trip

DM = 16


def walk(rng: np.random.Generator, frames: int, dm: int = DM, step: float = 0.01) -> np.ndarray:
    """A random walk with bursts of motion: what E_T's tokens look like to the coder."""
    burst = 1 + 4 * (rng.random((frames, 1)) < 0.1)
    return (rng.normal(size=dm) * 0.3 + np.cumsum(rng.normal(size=(frames, dm)) * step * burst, 0)).astype(np.float32)


def test_round_trip_chunks_segments_and_momentum():
    rng = np.random.default_rng(0)
    for momentum in (0, 3, -8, 8):
        enc, dec = P.PredictiveCoder(DM, 0.01, momentum), P.PredictiveCoder(DM, 0.01, momentum)
        for _ in range(2):  # keyframe between segments
            enc.reset()
            dec.reset()
            toks = walk(rng, 40)
            round_trip(enc, dec, [toks[:1], toks[1:2], toks[2:2], toks[2:30], toks[30:]])


def test_round_trip_escapes_and_clamp():
    enc, dec = P.PredictiveCoder(DM, 0.01, 8), P.PredictiveCoder(DM, 0.01, 8)
    toks = np.zeros((6, DM), np.float32)
    toks[1] = 500 * enc.qstep                           # far from any prediction: escapes
    toks[2, ::2] = -3000 * enc.qstep
    toks[3, 0], toks[4, 0] = 1e9, -1e9                  # beyond QMAX steps: clamped, the largest jump there is
    payload, deq = enc.encode(toks)
    assert deq[3, 0] == np.float32(P.QMAX) * np.float32(enc.qstep)
    assert np.array_equal(dec.decode(payload, len(toks)), deq)
    round_trip(enc, dec, [toks[2::-1].copy()])          # and the context carries across chunks


_ENCODE = """
import sys, numpy as np
from entropy.predictive import PredictiveCoder
c = PredictiveCoder({dm}, 0.01, 2)
toks = np.load(sys.argv[1])
out = [c.encode(toks[i:i + 7])[0] for i in range(0, len(toks), 7)]
open(sys.argv[2], "wb").write(b"".join(len(p).to_bytes(4, "little") + p for p in out))
"""
_DECODE = """
import sys, numpy as np
from entropy.predictive import PredictiveCoder
c = PredictiveCoder({dm}, 0.01, 2)
blob, out, i = open(sys.argv[2], "rb").read(), [], 0
toks = np.load(sys.argv[1])
for k in range(0, len(toks), 7):
    n = int.from_bytes(blob[i:i + 4], "little")
    out.append(c.decode(blob[i + 4:i + 4 + n], len(toks[k:k + 7])))
    i += 4 + n
np.save(sys.argv[3], np.concatenate(out))
"""


def test_one_thread_encode_two_thread_decode(tmp_path):
    toks = walk(np.random.default_rng(1), 30)
    np.save(tmp_path / "t.npy", toks)
    _run(_ENCODE, 1, str(tmp_path / "t.npy"), str(tmp_path / "a.bin"))
    _run(_DECODE, 2, str(tmp_path / "t.npy"), str(tmp_path / "a.bin"), str(tmp_path / "d.npy"))
    here = P.PredictiveCoder(DM, 0.01, 2)
    mine = [here.encode(toks[i:i + 7]) for i in range(0, len(toks), 7)]
    assert (tmp_path / "a.bin").read_bytes() == b"".join(len(p).to_bytes(4, "little") + p for p, _ in mine)
    assert np.array_equal(np.load(tmp_path / "d.npy"), np.concatenate([d for _, d in mine]))


def test_least_cost_of_a_value_bounds_the_payload_size():
    """The size rule refuses only what no encoder writes: the likeliest symbol the scale floor allows costs
    more than MIN_VALUE_BITS_PERCENT / 100 bits, and a stream of zero residuals is above the bound."""
    from entropy import laplace
    rows = laplace.scale_rows(P.MIN_SCALE_INDEX)
    assert -np.log2((rows.max() + 1) / 2 ** 24) > P.MIN_VALUE_BITS_PERCENT / 100
    coder = P.PredictiveCoder(DM, 1.0)
    payload, _ = coder.encode(np.zeros((500, DM), np.float32))
    assert 100 * (8 * len(payload) + 64) >= P.MIN_VALUE_BITS_PERCENT * 499 * DM
    assert P.PredictiveCoder(DM, 1.0).decode(payload, 500).shape == (500, DM)


def test_shipped_tables_are_the_computed_ones(tmp_path, monkeypatch):
    """The frequency tables a process loads (entropy/laplace_tables.npz) are exactly what the decimal
    arithmetic computes; a file that is not the one recorded is ignored and the rows are computed."""
    import hashlib
    import io
    from entropy import laplace
    data = laplace.TABLES_FILE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == laplace.TABLES_SHA256
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        assert np.array_equal(f["rows"], laplace.build_tables())
    bad = tmp_path / "t.npz"
    bad.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    table, done = laplace._TABLE.copy(), laplace._TABLE_DONE.copy()
    monkeypatch.setattr(laplace, "TABLES_FILE", bad)
    try:
        laplace._TABLE[:], laplace._TABLE_DONE[:] = 0, False
        laplace._load_shipped()
        assert np.array_equal(laplace.laplace_rows(np.array([7]), np.array([3]))[0], laplace.scale_rows(7)[3])
        assert laplace._TABLE_DONE.tolist() == [j == 7 for j in range(laplace.NUM_SCALES)]
    finally:
        laplace._TABLE[:], laplace._TABLE_DONE[:] = table, done


def test_scale_thresholds_are_pinned():
    """The scale index rule is part of the format: integer thresholds between the table's scales."""
    assert P.THRESHOLDS[:4].tolist() == [17, 20, 24, 29] and P.THRESHOLDS[-1] == 15049
    idx = P.scale_index(np.array([16, 64, 256, 10 ** 6]), np.array([512, 2048, 512, 512]), np.array([512] * 4))
    assert idx.tolist() == [P.MIN_SCALE_INDEX, 16, 16, P.NUM_SCALES - 1]


def test_garbage_payloads_raise():
    toks = walk(np.random.default_rng(3), 10)
    payload, _ = P.PredictiveCoder(DM).encode(toks)
    bad = [payload[:-1], payload[:-4], payload + bytes(4), payload + b"\x01\x02\x03\x04", payload + payload,
           payload[:8] + bytes([payload[8] ^ 1]) + payload[9:], b"\xff" * (4 * 10 ** 6)]
    for p in bad:
        with pytest.raises(ValueError):
            P.PredictiveCoder(DM).decode(p, len(toks))
    for n in (-1, P.MAX_FRAMES + 1):
        with pytest.raises(ValueError):
            P.PredictiveCoder(DM).decode(payload, n)
    t0 = time.time()
    with pytest.raises(ValueError, match="size"):  # refused before decoding 65536 tokens
        P.PredictiveCoder(DM).decode(b"\0\0\0\0" * 8, P.MAX_FRAMES)
    assert time.time() - t0 < 1
    with pytest.raises(ValueError):
        P.PredictiveCoder(DM).decode(b"\0\0\0\0", 0)
    rng = np.random.default_rng(4)
    caught, t0 = 0, time.time()
    for _ in range(100):
        n = int(rng.integers(1, 40))
        junk = rng.integers(0, 256, size=4 * int(rng.integers(1, 60)), dtype=np.uint8).tobytes()
        coder = P.PredictiveCoder(DM, 0.01, int(rng.integers(-8, 9)))
        try:
            out = coder.decode(junk, n)
            assert out.shape == (n, DM) and np.isfinite(out).all()
        except ValueError:
            caught += 1
            assert coder._hist == [] and (coder._scale == P.INIT_SCALE).all()  # a refused chunk leaves no trace
    assert caught >= 50 and time.time() - t0 < 60  # never a hang, even on a loaded machine


def test_params_round_trip_and_hostile_params():
    enc = make_coder("predictive", DM, qstep=0.03125, momentum=-3)
    params = enc.params()
    dec = coder_from_header(CODEC_IDS["predictive"], DM, params)
    assert (dec.qstep, dec.momentum, dec.first_j, dec.params()) == (0.03125, -3, enc.first_j, params)
    round_trip(enc, dec, [walk(np.random.default_rng(5), 12)])
    nan = P.PARAMS.pack(1, float("nan"), 0, 20)
    for p in [params[:-1], params + b"\0", b"\x02" + params[1:], P.PARAMS.pack(1, 0.01, 9, 20),
              P.PARAMS.pack(1, 0.01, 0, 41), P.PARAMS.pack(1, 0.01, 0, -1), P.PARAMS.pack(1, 1e-9, 0, 20), nan]:
        with pytest.raises(ValueError):
            coder_from_header(CODEC_IDS["predictive"], DM, p)


def bits_at_zfp_error(seqs: list[np.ndarray], rate: float = 6.0) -> tuple[float, float]:
    """Bits per value of ZFP at rate and of the predictive coder at the step with the same token error, one
    chunk per sequence (a segment)."""
    from imfcodec.train.prior import match_zfp_qstep
    dm, values = seqs[0].shape[1], sum(s.size for s in seqs)
    zfp, pred, nz, npred = ZfpCoder(dm, rate), P.PredictiveCoder(dm, match_zfp_qstep(seqs, rate)), 0, 0
    for s in seqs:
        pred.reset()
        nz += len(zfp.encode(s)[0])
        npred += len(pred.encode(s)[0])
    return 8 * nz / values, 8 * npred / values


def test_far_fewer_bits_than_zfp_on_walks():
    zfp, pred = bits_at_zfp_error([walk(np.random.default_rng(7), 33) for _ in range(4)])
    print(f"random walks: ZFP rate 6 {zfp:.2f} bits/value, predictive {pred:.2f}")
    assert pred < 0.4 * zfp


@pytest.mark.skipif(not (SHARED / "data" / "eval").is_dir(), reason="needs ../shared/data/eval")
def test_far_fewer_bits_than_zfp_on_a_real_clips_tokens():
    """E_T's tokens of 67 frames of an eval clip, as two segments of 33 coded tokens after their reference."""
    import torch

    from imfcodec.model.weights import load_weights, shipped_path
    model = load_weights(shipped_path(32, 256)).model
    x = torch.from_numpy(np.stack(eval_frames(("lia-vox-driving2", 68)))).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        toks = torch.cat([model.encode_tokens(x[i:i + 17]) for i in range(0, 68, 17)]).numpy()
    zfp, pred = bits_at_zfp_error([toks[1:34], toks[35:68]])
    print(f"lia-vox-driving2: ZFP rate 6 {zfp:.2f} bits/value, predictive {pred:.2f}")
    assert pred < 0.4 * zfp
