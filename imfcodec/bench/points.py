"""One RD point per (method, source, setting), measured the same way for every method, and the curves
averaged over sources that the plots and the report draw."""
from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from .. import metrics
from ..errors import UserError
from .clip import Clip, Yuv420

NAN = float("nan")
METRICS = ("psnr_rgb", "psnr_y", "msssim", "lpips")
CHUNK = 16  # frames per metric call: keeps memory flat on long clips


@dataclass
class Point:
    """A row of points.csv (the field order is the column order). NaN where a value does not apply."""
    method: str
    source: str
    setting: str
    frames: int
    bpp_total: float  # every bit, keyframes and headers included, over frames x width x height
    bpp_tokens: float = NAN  # imfcodec only: the token bits alone, the paper's "current bpp"
    psnr_rgb: float = NAN
    psnr_y: float = NAN
    msssim: float = NAN
    lpips: float = NAN
    encode_fps: float = NAN
    decode_fps: float = NAN
    kbps: float = NAN  # every bit over the clip's duration at its frame rate, in kbit/s


COLUMNS = tuple(f.name for f in fields(Point))


@functools.lru_cache(maxsize=1)
def lpips_model() -> tuple[object | None, str]:
    """LPIPS (AlexNet) when the lpips package and its backbone weights are already on this machine, else the
    reason it is skipped: nothing is downloaded."""
    if importlib.util.find_spec("lpips") is None:
        return None, "LPIPS skipped: the lpips package is not installed"
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    if not any(hub.glob("alexnet-*.pth")):
        return None, f"LPIPS skipped: no AlexNet backbone weights in {hub}"
    try:
        import lpips
        return lpips.LPIPS(net="alex", verbose=False).eval(), ""
    except Exception as e:  # a broken install must not stop the benchmark
        return None, f"LPIPS skipped: {e}"


def _chunked(fn, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.concatenate([fn(a[i:i + CHUNK], b[i:i + CHUNK]) for i in range(0, len(a), CHUNK)])


def _lpips(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    model, _ = lpips_model()

    def to_t(x):
        return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1

    with torch.no_grad():
        return model(to_t(a), to_t(b)).flatten().numpy()


def _psnr_planes(a: np.ndarray, b: np.ndarray, peak: float = 255) -> np.ndarray:
    """Per-frame PSNR of (T, H, W) sample planes."""
    err = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    return np.array([metrics.psnr_from_mse(float(m), peak) for m in err.mean(axis=(1, 2))])


def _fps(frames: int, seconds: float) -> float:
    return frames / seconds if seconds > 0 else NAN


def measure(clip: Clip, decoded: Yuv420 | np.ndarray, bits: float, method: str, setting: str,
            enc_seconds: float = NAN, dec_seconds: float = NAN, bpp_tokens: float = NAN) -> Point:
    """Score decoded frames (4:2:0 planes, or (T, H, W, 3) uint8 RGB) against the clip's first frames.

    PSNR-Y is taken on the Y planes when both the source (as stored) and the decode are 4:2:0; otherwise on
    BT.601 luma computed from RGB on both sides. Every score is the mean of per-frame scores.
    """
    n = len(decoded)
    rgb = decoded.rgb() if isinstance(decoded, Yuv420) else decoded
    if n > len(clip):
        raise UserError(f"{method} {setting}: {n} decoded frames, but the reference {clip.name} has only "
                        f"{len(clip)} (see --frames)")
    if rgb.shape[1:3] != clip.rgb.shape[1:3]:
        raise UserError(f"{method} {setting}: decoded {rgb.shape[2]}x{rgb.shape[1]}, but the reference "
                        f"{clip.name} is {clip.width}x{clip.height} (see --size)")
    ref = clip.rgb[:n]
    if clip.yuv_as_stored and isinstance(decoded, Yuv420):
        psnr_y = _psnr_planes(clip.yuv.y[:n], decoded.y)
    else:
        psnr_y = _chunked(metrics.psnr_y, ref, rgb)
    lp = _chunked(_lpips, ref, rgb).mean() if lpips_model()[0] is not None else NAN
    return Point(method, clip.name, setting, n, bits / (n * clip.width * clip.height), bpp_tokens,
                 float(_chunked(metrics.psnr_rgb, ref, rgb).mean()), float(psnr_y.mean()),
                 float(_chunked(metrics.msssim, ref, rgb).mean()), float(lp),
                 _fps(n, enc_seconds), _fps(n, dec_seconds), bits * float(clip.fps) / n / 1000)


def curve_key(p: Point) -> str:
    """The setting, comparable across sources: VTM bitstream names begin with their source's name, dropped."""
    return p.setting[len(p.source):] if p.source and p.setting.startswith(p.source) else p.setting


def methods(points: list[Point]) -> list[str]:
    return list(dict.fromkeys(p.method for p in points if not math.isnan(p.bpp_total)))


def curve(points: list[Point], method: str, metric: str, sources: set[str] | None = None,
          rate: str = "bpp_total") -> tuple[np.ndarray, np.ndarray]:
    """(rate, quality) of a method averaged over sources (all it has, or those given): only the settings that
    every one of those sources has, sorted by rate. Empty arrays when there is nothing to draw."""
    mine = [p for p in points if p.method == method and not math.isnan(getattr(p, rate))
            and not math.isnan(getattr(p, metric)) and (sources is None or p.source in sources)]
    srcs = {p.source for p in mine}
    groups: dict[str, list[Point]] = {}
    for p in mine:
        groups.setdefault(curve_key(p), []).append(p)
    xy = sorted((float(np.mean([getattr(p, rate) for p in g])), float(np.mean([getattr(p, metric) for p in g])))
                for g in groups.values() if {p.source for p in g} == srcs)
    return np.array([x for x, _ in xy]), np.array([y for _, y in xy])
