"""BD-rate on curves whose answer is known in closed form, and the imfcodec-against-anchors table."""
import math

import numpy as np
import pytest

from imfcodec.bench.bdrate import bd_rate
from imfcodec.bench.points import Point
from imfcodec.bench.report import bd_table, means

Q = np.array([30.0, 32.5, 35.0, 37.0, 38.5])
R = 0.002 * 2 ** (Q / 3)  # rate doubles every 3 dB


@pytest.mark.parametrize("ratio, expected", [(0.8, -20.0), (1.25, 25.0), (1.0, 0.0), (0.5, -50.0)])
def test_constant_rate_ratio(ratio, expected):
    r = bd_rate(R, Q, R * ratio, Q)
    assert r.percent == pytest.approx(expected, abs=1e-9)
    assert (r.low, r.high) == (30.0, 38.5)


def test_quality_shift():
    # the test curve reaches each quality 1.5 dB earlier: at equal quality it needs 2^(-1.5/3) of the rate
    assert bd_rate(R, Q, R, Q + 1.5).percent == pytest.approx((2 ** -0.5 - 1) * 100, abs=1e-9)


def test_only_the_overlap_counts():
    qt = Q + 4  # covers 34 to 42.5; the overlap with the anchor is 34 to 38.5
    r = bd_rate(R, Q, 0.8 * 0.002 * 2 ** (qt / 3), qt)
    assert r.percent == pytest.approx(-20.0, abs=1e-9)
    assert (r.low, r.high) == (34.0, 38.5)


def test_fewer_points_fit_lower_degrees():
    assert bd_rate(R[:3], Q[:3], 0.8 * R[:3], Q[:3]).percent == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(R[:2], Q[:2], 0.8 * R[:2], Q[:2]).percent == pytest.approx(-20.0, abs=1e-9)


def test_no_answer_without_overlap_or_points():
    assert bd_rate(R, Q, R, Q + 20) is None
    assert bd_rate(R[:1], Q[:1], R, Q) is None
    assert bd_rate(R, Q, [1, 1], [30, 30]) is None


def test_table_per_source_and_mean():
    pts = []
    for src, factor in (("a", 0.8), ("b", 0.5)):
        for i, (r, q) in enumerate(zip(R, Q)):
            pts.append(Point("x265", src, f"crf {i}", 4, r, psnr_rgb=q, psnr_y=q + 1))
            pts.append(Point("imfcodec dm32 zfp", src, f"rate {i}", 4, r * factor, psnr_rgb=q, psnr_y=q + 1))
    pts.append(Point("imfcodec dm64 zfp", "", "missing: no shipped weights", 0, math.nan))
    rows = {(r.metric, r.source): r for r in bd_table(pts)}
    assert set(rows) == {(m, s) for m in ("psnr_rgb", "psnr_y") for s in ("a", "b", "mean")}
    assert all(r.method == "imfcodec dm32 zfp" and r.anchor == "x265" for r in rows.values())
    assert rows["psnr_y", "a"].percent == pytest.approx(-20.0)
    assert rows["psnr_y", "b"].percent == pytest.approx(-50.0)
    assert rows["psnr_rgb", "mean"].percent == pytest.approx(-35.0)


def test_means_cover_settings_every_source_has():
    pts = [Point("x265", "a", "crf 51", 10, 0.01, psnr_rgb=24.0, msssim=0.8),
           Point("x265", "b", "crf 51", 10, 0.03, psnr_rgb=26.0, msssim=0.9),
           Point("x265", "a", "crf 47", 10, 0.02, psnr_rgb=27.0, msssim=0.9),  # b lacks crf 47: no mean
           Point("VTM", "a", "a_qp47", 10, 0.004, psnr_rgb=20.0),  # VTM names settings after the source
           Point("VTM", "b", "b_qp47", 10, 0.006, psnr_rgb=22.0),
           Point("imfcodec dm64 zfp", "", "missing: no weights", 0, math.nan)]  # a missing method: no row
    rows = {(r[0], r[1]): r for r in means(pts)}
    assert set(rows) == {("x265", "crf 51"), ("VTM", "qp47")}
    _, _, n, bpp, tok, psnr, _, ssim, *_ = rows["x265", "crf 51"]
    assert (n, bpp, psnr, ssim) == (2, pytest.approx(0.02), 25.0, pytest.approx(0.85))
    assert math.isnan(tok) and rows["VTM", "qp47"][5] == 21.0
