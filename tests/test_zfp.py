import numpy as np
import pytest

from entropy import ZfpCoder, coder_from_header, make_coder


@pytest.mark.parametrize("rate", [4.0, 8.0, 12.5])
@pytest.mark.parametrize("n", [1, 3, 4, 17])
def test_round_trip_and_dequantized_tokens(rate, n):
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(n, 32)).astype(np.float32)
    enc = make_coder("zfp", 32, rate=rate)
    payload, deq = enc.encode(tokens)
    assert len(payload) == enc.payload_size(n)
    dec = coder_from_header(0, 32, enc.params())
    out = dec.decode(payload, n)
    assert out.dtype == np.float32 and out.shape == (n, 32)
    assert np.array_equal(out, deq)  # bit for bit what the encoder kept
    # white noise is ZFP's worst case; mean error still falls ~16x for every 4 bits
    err = np.abs(out - tokens).mean()
    assert err < {4.0: 0.3, 8.0: 0.02, 12.5: 0.002}[rate]


def test_higher_rate_is_more_accurate():
    tokens = np.random.default_rng(1).normal(size=(32, 32)).astype(np.float32)
    errs = [np.abs(ZfpCoder(32, r).encode(tokens)[1] - tokens).mean() for r in (4, 8, 16)]
    assert errs[0] > errs[1] > errs[2]


def test_wrong_payload_size_rejected():
    c = ZfpCoder(16, 8)
    payload, _ = c.encode(np.zeros((5, 16), np.float32))
    with pytest.raises(ValueError):
        c.decode(payload[:-1], 5)
    with pytest.raises(ValueError):
        c.decode(payload, 9)


def test_bad_params_and_tokens():
    with pytest.raises(ValueError):
        ZfpCoder.from_params(32, b"\x00\x00")
    with pytest.raises(ValueError):
        ZfpCoder(32, 0.5)
    with pytest.raises(ValueError):
        ZfpCoder(32, 8).encode(np.full((2, 32), np.nan, np.float32))
