"""The Rice coder of decoder offsets."""
import numpy as np
import pytest

from entropy import rice


@pytest.mark.parametrize("scale", [0.0, 0.4, 3.0, 300.0])
def test_round_trip(scale):
    rng = np.random.default_rng(0)
    q = np.rint(rng.laplace(0, scale, 200) if scale else np.zeros(200)).astype(np.int64)
    k, body = rice.encode(q)
    assert np.array_equal(rice.decode(body, len(q), k), q)


def test_parameter_fits_the_spread():
    small, large = (rice.encode(np.full(50, v, np.int64))[0] for v in (1, 1000))
    assert small < large


@pytest.mark.parametrize("body, n, k", [
    (b"\xff" * 40, 4, 0),        # a unary run longer than any value's
    (b"", 1, 0),                 # no bits for a value
    (b"\x00\x00", 1, 0),         # a whole byte after the value
    (b"\x01", 1, 0),             # padding not zero
    (b"\x00", 1, 16),            # impossible parameter
])
def test_malformed_bodies_are_value_errors(body, n, k):
    with pytest.raises(ValueError):
        rice.decode(body, n, k)
