"""VTM (the VVC reference software) as an anchor: its bitstreams decoded with FFmpeg's native VVC decoder
through PyAV, bpp from the file size, the encoder's log beside a bitstream (same stem, .log) read to
cross-check, and VTM's EncoderApp run over the reference clips when the user has it.

Two PSNR-Y values exist for a VTM stream. points.csv holds the 8-bit one, measured like every other codec:
the decoder's 10-bit output rounded to 8 bits ((v + 2) >> 2, as VTM's decoder writes 8-bit output) against
the 8-bit source. VTM's log compares at its internal bit depth instead: the 10-bit decode against the source
times 4, peak 1020. On the fixtures (VTM 23.13, 16 frames of lia-vox-driving2 at 256x256), the 10-bit way
gives the log's mean to 1e-4 dB (37.0793 dB at QP 37, 31.0462 dB at QP 47); the 8-bit way gives 0.032 dB
and 0.019 dB less (37.0469 dB and 31.0270 dB): rounding to 8 bits adds its own error to the coding error.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ..errors import UserError
from .clip import Clip, Yuv420
from .points import NAN, Point, measure

SUFFIXES = (".bin", ".266", ".vvc")
LOWDELAY_CFG = "encoder_lowdelay_vtm.cfg"


@dataclass
class Check:
    """How one bitstream measures against its encoder's log."""
    bitstream: str
    source: str
    frames: int
    bpp_file: float
    bpp_log: float  # the log's bitrate at the source's frame rate; NaN without a log
    psnr_y_log: float  # the log's mean Y-PSNR (10-bit, peak 1020)
    psnr_y_10bit: float  # recomputed here the log's way
    psnr_y_8bit: float  # as in points.csv


def list_bitstreams(paths: list[str]) -> list[str]:
    """Each path is a bitstream or a folder of them (.bin, .266, .vvc)."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(str(f) for f in Path(p).iterdir() if f.suffix.lower() in SUFFIXES and f.is_file())
            if not found:
                raise UserError(f"no VTM bitstreams ({', '.join(SUFFIXES)}) in {p}")
            out += found
        elif not os.path.isfile(p):
            raise UserError(f"VTM bitstream not found: {p}")
        elif Path(p).suffix.lower() not in SUFFIXES:
            raise UserError(f"not a VTM bitstream ({', '.join(SUFFIXES)}): {p}")
        else:
            out.append(p)
    return out


def match_source(path: str, names: list[str]) -> str | None:
    """The source whose name begins the file's name (the longest such name), or None."""
    stem = Path(path).stem
    hits = [n for n in names if stem.startswith(n)]
    return max(hits, key=len) if hits else None


def decode(path: str) -> tuple[np.ndarray, int]:
    """(T, H*3/2, W) packed 4:2:0 samples (uint16 above 8 bits) and their bit depth."""
    out, depth = [], 8
    try:
        with av.open(path, format="vvc") as c:
            for f in c.decode(video=0):
                name = f.format.name
                m = re.fullmatch(r"yuv420p(?:(\d+)le)?", name)
                if not m:
                    raise UserError(f"{path}: only 4:2:0 VTM streams are supported, this one is {name}")
                depth = int(m.group(1) or 8)
                out.append(f.to_ndarray())
    except (av.error.FFmpegError, ValueError) as e:
        raise UserError(f"cannot decode VTM bitstream {path}: {e}") from None
    if not out:
        raise UserError(f"no frames decoded from VTM bitstream {path}")
    return np.stack(out), depth


def to_8bit(packed: np.ndarray, depth: int) -> Yuv420:
    """Round higher bit depths to 8 bits, as VTM's decoder does for 8-bit output."""
    if depth == 8:
        return Yuv420(packed.astype(np.uint8))
    shift = depth - 8
    return Yuv420(np.clip((packed.astype(np.int32) + (1 << (shift - 1))) >> shift, 0, 255).astype(np.uint8))


def psnr_y_vtm(src_y: np.ndarray, dec_y: np.ndarray, depth: int) -> float:
    """Mean per-frame Y-PSNR the way VTM logs it: at the decode's bit depth, the 8-bit source scaled up,
    peak 255 * 2^(depth - 8)."""
    scale = 1 << (depth - 8)
    err = (src_y.astype(np.float64) * scale - dec_y.astype(np.float64)) ** 2
    return float(np.mean(10 * np.log10((255.0 * scale) ** 2 / err.mean(axis=(1, 2)))))


@dataclass
class Log:
    frames: int
    kbps: float
    psnr_y: float


def parse_log(path: str) -> Log | None:
    """The summary line of an EncoderApp log (`Total Frames | Bitrate Y-PSNR ...`), or None."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"Total Frames\s*\|[^\n]*\n\s*(\d+)\s+a\s+([\d.]+)\s+([\d.]+)", text)
    return Log(int(m.group(1)), float(m.group(2)), float(m.group(3))) if m else None


def measure_bitstream(path: str, clip: Clip) -> tuple[Point, Check]:
    """Score a bitstream against its source clip; bpp counts the whole file."""
    t0 = time.perf_counter()
    packed, depth = decode(path)
    dec_seconds = time.perf_counter() - t0
    n = len(packed)
    point = measure(clip, to_8bit(packed, depth), os.path.getsize(path) * 8, "VTM", os.path.basename(path),
                    dec_seconds=dec_seconds)
    log = parse_log(str(Path(path).with_suffix(".log")))
    pixels = clip.width * clip.height
    check = Check(os.path.basename(path), clip.name, n, point.bpp_total,
                  log.kbps * 1000 / float(clip.fps) / pixels if log else NAN, log.psnr_y if log else NAN,
                  psnr_y_vtm(clip.yuv.y[:n], packed[:, :clip.height], depth), point.psnr_y)
    return point, check


def default_cfg(encoder: str) -> str:
    """VTM's low-delay configuration, looked for in a cfg/ folder up the encoder's path (VTM's own layout)."""
    for d in Path(encoder).resolve().parents:
        cfg = d / "cfg" / LOWDELAY_CFG
        if cfg.is_file():
            return str(cfg)
    raise UserError(f"{LOWDELAY_CFG} not found in a cfg/ folder above {encoder}: give --vtm-cfg")


def encode(encoder: str, cfg: str, y4m: str, clip: Clip, qp: int, out_dir: str) -> tuple[str, float]:
    """Run EncoderApp over a y4m of the clip at one QP; its log goes beside the bitstream.
    Returns the bitstream's path and the encoder's wall time in seconds."""
    out = Path(out_dir) / f"{clip.name}_qp{qp}.bin"
    cmd = [encoder, "-c", cfg, "-i", y4m, "-fr", str(round(clip.fps)), "-f", str(len(clip)), "-q", str(qp),
           "--InputBitDepth=8", "--OutputBitDepth=8", "-b", str(out),
           "--ReconFile="]  # the configurations name a reconstruction file; none is wanted (nor left in the cwd)
    t0 = time.perf_counter()
    try:
        with open(out.with_suffix(".log"), "wb") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    except OSError as e:
        raise UserError(f"cannot run the VTM encoder {encoder}: {e.strerror or e}") from None
    seconds = time.perf_counter() - t0
    if rc != 0 or not out.is_file():
        lines = out.with_suffix(".log").read_text(errors="replace").strip().splitlines()
        raise UserError(f"VTM encoder failed (exit {rc}) at QP {qp} on {clip.name}: "
                        f"{lines[-1] if lines else 'no output'}")
    return str(out), seconds
