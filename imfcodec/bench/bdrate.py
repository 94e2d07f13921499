"""Bjontegaard delta rate (VCEG-M33): the mean bitrate difference of a test curve against an anchor at equal
quality, over the quality range both cover.

Each curve's log-rate is fitted as a polynomial of quality (cubic from four points; lower degree with fewer)
and integrated over the overlap; the mean log difference d gives (e^d - 1) x 100 %. Negative: the test curve
needs fewer bits. Works for any metric that rises or falls steadily with rate (PSNR, MS-SSIM, LPIPS).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BdRate:
    percent: float
    low: float  # the quality range both curves cover, over which the rates were compared
    high: float


def _integral(rate: np.ndarray, quality: np.ndarray, low: float, high: float) -> float:
    """Integral of the fitted log-rate over quality in [low, high]."""
    deg = min(3, len(quality) - 1)
    p = np.polyint(np.polyfit(quality, np.log(rate), deg))
    return float(np.polyval(p, high) - np.polyval(p, low))


def bd_rate(anchor_rate, anchor_quality, test_rate, test_quality) -> BdRate | None:
    """BD-rate of test against anchor; None when either curve has fewer than two distinct qualities or
    positive rates, or when their quality ranges do not overlap."""
    curves = []
    for r, q in ((anchor_rate, anchor_quality), (test_rate, test_quality)):
        r, q = np.asarray(r, np.float64), np.asarray(q, np.float64)
        keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
        r, q = r[keep], q[keep]
        if len(np.unique(q)) < 2:
            return None
        curves.append((r, q))
    (ra, qa), (rt, qt) = curves
    low, high = max(qa.min(), qt.min()), min(qa.max(), qt.max())
    if high <= low:
        return None
    diff = (_integral(rt, qt, low, high) - _integral(ra, qa, low, high)) / (high - low)
    return BdRate(float(np.expm1(diff) * 100), float(low), float(high))
