"""What a run leaves in OUTDIR: points.csv, bd_rate.csv and report.md (the plots come from plots.py)."""
from __future__ import annotations

import csv
import math
import os
from dataclasses import astuple, dataclass

import numpy as np

from ..errors import UserError
from .bdrate import bd_rate
from .points import COLUMNS, METRICS, Point, curve, curve_key, methods
from .vtm import Check

IMFCODEC = "imfcodec"  # the prefix of every imfcodec method: the curves compared against the anchors
BD_COLUMNS = ("method", "anchor", "metric", "source", "bd_rate_percent", "quality_low", "quality_high")


@dataclass
class BdRow:
    method: str
    anchor: str
    metric: str
    source: str  # a source, or "mean": the mean of the per-source values (when every shared source has one)
    percent: float
    low: float
    high: float

FLOOR = "repeat first frame"  # bench.runner's floor methods: single points, no curves
KEYFRAME_FLOOR = "repeat segment keyframe"


def bd_table(points: list[Point]) -> list[BdRow]:
    """BD-rate on bpp_total of every imfcodec curve against every other codec's curve, per metric and source.
    A row with an empty value says the two curves do not overlap there. The single-point floors are no curves."""
    rows = []
    names = methods(points)
    for test in (m for m in names if m.startswith(IMFCODEC)):
        for anchor in (m for m in names if not m.startswith(IMFCODEC) and m not in (FLOOR, KEYFRAME_FLOOR)):
            shared = sorted({p.source for p in points if p.method == test}
                            & {p.source for p in points if p.method == anchor})
            for metric in METRICS:
                per = []
                for src in shared:
                    a, t = curve(points, anchor, metric, {src}), curve(points, test, metric, {src})
                    if not len(a[0]) or not len(t[0]):
                        continue  # this metric was not measured for one of them
                    r = bd_rate(*a, *t)
                    per.append(r)
                    values = (r.percent, r.low, r.high) if r else (math.nan,) * 3
                    rows.append(BdRow(test, anchor, metric, src, *values))
                if len(per) > 1 and all(per):
                    rows.append(BdRow(test, anchor, metric, "mean", float(np.mean([r.percent for r in per])),
                                      math.nan, math.nan))
    return rows


MEAN_FIELDS = ("bpp_total", "bpp_tokens", "psnr_rgb", "psnr_y", "msssim", "lpips", "encode_fps", "decode_fps",
               "kbps")


def means(points: list[Point]) -> list[list]:
    """[method, setting, sources, *means of MEAN_FIELDS] for every method and setting that all of the run's
    sources have: the numbers a summary quotes, so nobody averages points.csv by hand."""
    sources = {p.source for p in points if p.source}
    groups: dict[tuple[str, str], list[Point]] = {}
    for p in points:
        if not math.isnan(p.bpp_total):
            groups.setdefault((p.method, curve_key(p)), []).append(p)
    rows = []
    for (method, setting), g in groups.items():
        if {p.source for p in g} != sources:
            continue
        cols = [[getattr(p, f) for p in g] for f in MEAN_FIELDS]
        rows.append([method, setting.strip(" _-"), len(g)] +
                    [math.nan if any(math.isnan(v) for v in c) else float(np.mean(c)) for c in cols])
    return rows


def _fmt(v) -> str:
    """Four significant digits for small values (bpp), one decimal for large ones (fps), else four decimals."""
    if not isinstance(v, float):
        return str(v)
    if math.isnan(v):
        return ""
    return f"{v:.4g}" if abs(v) < 1e-2 else f"{v:.1f}" if abs(v) >= 100 else f"{v:.4f}"


def _write_csv(path: str, header: tuple[str, ...], rows: list) -> None:
    """Full precision (a float's shortest exact form); NaN as an empty field."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(["" if isinstance(v, float) and math.isnan(v) else v for v in astuple(r)] for r in rows)


def write_points(points: list[Point], path: str) -> None:
    _write_csv(path, COLUMNS, points)


def write_bd(rows: list[BdRow], path: str) -> None:
    _write_csv(path, BD_COLUMNS, rows)


def read_points(path: str) -> list[Point]:
    """The points of an earlier run's points.csv, as write_points wrote them (an empty field is NaN)."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise ValueError("its columns are not those of points.csv")
            return [Point(r["method"], r["source"], r["setting"], int(r["frames"]),
                          *(float(r[c]) if r[c] else math.nan for c in COLUMNS[4:])) for r in reader]
    except (OSError, ValueError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"cannot read earlier points {path}: {e}") from None


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows]


def write_report(path: str, points: list[Point], bd: list[BdRow], checks: list[Check], notes: list[str],
                 plots: list[str], context: list[str]) -> None:
    """report.md: the run, the plots, BD-rates, every point, the VTM cross-check and what was not measured."""
    out = ["# imfcodec rate-distortion report", ""] + context + [""]
    out += [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots if p.endswith(".png")] + [""]
    out += ["## Means over sources", "", "Every method and setting that all sources have: the mean of the "
            "per-source values below.", ""]
    out += _table(["method", "setting", "sources", "bpp_total", "bpp_tokens", "PSNR-RGB", "PSNR-Y", "MS-SSIM",
                   "LPIPS", "enc fps", "dec fps", "kbit/s"], means(points))
    overlap = [r for r in bd if not math.isnan(r.percent)]
    out += ["", "## BD-rate", "", "Bits (bpp_total) an imfcodec curve needs against each other method at equal "
            "quality, over the quality range both cover; negative means fewer bits."
            + (f" {len(bd) - len(overlap)} pairs of curves that do not overlap are left out (bd_rate.csv lists "
               "every pair)." if len(overlap) < len(bd) else ""), ""]
    out += _table(["method", "anchor", "metric", "source", "BD-rate %", "quality range"],
                  [[r.method, r.anchor, r.metric, r.source, r.percent,
                    "" if math.isnan(r.low) else f"{r.low:.4g} to {r.high:.4g}"] for r in overlap]) if bd else \
        ["No imfcodec curve to compare (see below)."]
    out += ["", "## Points", "", "bpp_total counts every bit (keyframes, headers); bpp_tokens only imfcodec's "
            "tokens. Scores are means of per-frame scores.", ""]
    out += _table(["method", "source", "setting", "frames", "bpp_total", "bpp_tokens", "PSNR-RGB", "PSNR-Y",
                   "MS-SSIM", "LPIPS", "enc fps", "dec fps", "kbit/s"], [list(astuple(p)) for p in points])
    if checks:
        out += ["", "## VTM cross-check", "",
                "bpp from the file size against the encoder log's bitrate, and Y-PSNR three ways: the log's, "
                "recomputed the log's way (10-bit decode against the source x 4, peak 1020), and the 8-bit way "
                "used in points.csv (decode rounded to 8 bits, peak 255), which reads a few hundredths of a dB "
                "lower because the rounding adds error.", ""]
        out += _table(["bitstream", "source", "frames", "bpp (file)", "bpp (log)", "PSNR-Y log",
                       "PSNR-Y 10-bit", "PSNR-Y 8-bit"], [list(astuple(c)) for c in checks])
    if notes:
        out += ["", "## Not measured, and other notes", ""] + [f"- {n}" for n in notes]
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
