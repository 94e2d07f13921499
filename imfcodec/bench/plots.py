"""RD plots: two figures per metric, quality against bpp and against kbit/s on log axes, each method averaged
over sources.

Drawn through matplotlib's Agg canvas directly, so nothing depends on (or changes) the pyplot backend.
imfcodec curves are also drawn dotted at their token-only rate, the rate the paper plots.
"""
from __future__ import annotations

import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from .points import Point, curve, methods

LABELS = {"psnr_rgb": "PSNR-RGB (dB)", "psnr_y": "PSNR-Y (dB)", "msssim": "MS-SSIM",
          "lpips": "LPIPS (lower is better)"}


#: The rate axes: Point field -> (file-name suffix, axis label).
RATES = {"bpp_total": ("", "bits per pixel (log scale)"),
         "kbps": ("_kbps", "kbit/s at the source frame rate (log scale)")}


def plot_metric(points: list[Point], metric: str, outdir: str, rate: str = "bpp_total") -> list[str]:
    """Write rd_<metric>.png and .svg (against kbit/s: rd_<metric>_kbps.*); returns their paths ([] when no
    method has this metric at that rate)."""
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    n_sources = len({p.source for p in points if p.source})
    drawn = False
    for m in methods(points):
        srcs = {p.source for p in points if p.method == m}
        label = m if len(srcs) == n_sources else f"{m} ({len(srcs)} of {n_sources} sources)"
        x, y = curve(points, m, metric, rate=rate)
        if len(x):
            line, = ax.plot(x, y, "o-", ms=4, label=label)
            drawn = True
            tx, ty = curve(points, m, metric, rate="bpp_tokens") if rate == "bpp_total" else ((), ())
            if len(tx):
                ax.plot(tx, ty, ":", marker=".", color=line.get_color(), label=f"{m}, tokens only")
    if not drawn:
        return []
    ax.set_xscale("log")
    decimal = FuncFormatter(lambda v, _: f"{v:g}")  # 0.02 rather than 2x10^-2: rates read better as decimals
    ax.xaxis.set_minor_locator(LogLocator(subs=(2, 5)))
    ax.xaxis.set_major_formatter(decimal)
    ax.xaxis.set_minor_formatter(decimal)
    suffix, xlabel = RATES[rate]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.set_title(f"{LABELS.get(metric, metric)} against rate, mean over sources")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    paths = [os.path.join(outdir, f"rd_{metric}{suffix}.{ext}") for ext in ("png", "svg")]
    for p in paths:
        fig.savefig(p, dpi=150)
    return paths
