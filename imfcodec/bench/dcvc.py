"""DCVC-DC (Microsoft, CVPR 2023) as an anchor, from the result JSON its test_video.py writes (schema in
../shared/fixtures/dcvc-dc/README.md). Its own scores are used as they are unless its decoded frames are given;
then those frames are scored like every other method's and only the bits come from the JSON.

Its own scores differ from ours in how they are taken: in RGB mode PSNR and MS-SSIM are over unrounded float
RGB, and in 4:2:0 mode its `ave_*_psnr` weights the planes (6 Y + U + V) / 8, so there only its per-plane Y
PSNR is used, as PSNR-Y.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ..errors import UserError
from .clip import Clip, Yuv420
from .points import NAN, Point, measure
from .vtm import match_source

REQUIRED = ("frame_pixel_num", "i_frame_num", "p_frame_num", "ave_all_frame_bpp", "ave_all_frame_psnr")


@dataclass
class Result:
    dataset: str
    sequence: str
    rate: str  # the rate index key: "000", "001", ...
    values: dict


def read_results(path: str) -> list[Result]:
    """Every {dataset: {sequence: {rate: RESULT}}} entry of a result file, checked against the schema."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise UserError(f"cannot read DCVC-DC results {path}: {e.strerror}") from None
    except ValueError as e:
        raise UserError(f"DCVC-DC results {path} are not JSON: {e}") from None
    out = []
    try:
        for ds, seqs in data.items():
            for seq, rates in seqs.items():
                for rate, res in rates.items():
                    missing = [k for k in REQUIRED if k not in res]
                    if missing:
                        raise UserError(f"DCVC-DC results {path}: {ds}/{seq}/{rate} lacks {', '.join(missing)}")
                    out.append(Result(ds, seq, rate, res))
    except AttributeError:
        raise UserError(f"DCVC-DC results {path}: expected {{dataset: {{sequence: {{rate: result}}}}}}") from None
    if not out:
        raise UserError(f"DCVC-DC results {path} hold no results")
    return out


def find_decoded(root: str, r: Result) -> Path | None:
    """test_video.py saves a run's frames in <root>/<video_path>/<rate_idx>_<bpp>_<psnr>."""
    d = Path(root) / str(r.values.get("video_path", r.sequence))
    idx = r.values.get("rate_idx", r.rate)
    found = sorted(d.glob(f"{idx}_*")) if d.is_dir() else []
    return found[0] if found else None


def read_decoded(path: Path, width: int, height: int) -> Yuv420 | np.ndarray:
    """A folder of PNG files (RGB), or a raw 8-bit 4:2:0 .yuv file (or a folder holding one)."""
    if path.is_dir():
        pngs = sorted(path.glob("*.png"))
        if pngs:
            return np.stack([_read_png(p) for p in pngs])
        yuvs = sorted(path.glob("*.yuv"))
        if len(yuvs) != 1:
            raise UserError(f"{path}: expected PNG files or one .yuv file of decoded frames")
        path = yuvs[0]
    raw = np.fromfile(path, np.uint8)
    frame = width * height * 3 // 2
    if raw.size == 0 or raw.size % frame:
        raise UserError(f"{path}: {raw.size} bytes is not a whole number of {width}x{height} 4:2:0 frames")
    return Yuv420(raw.reshape(-1, height * 3 // 2, width))


def _read_png(path: Path) -> np.ndarray:
    try:
        with av.open(str(path)) as c:
            return next(c.decode(video=0)).to_ndarray(format="rgb24")
    except (av.error.FFmpegError, StopIteration) as e:
        raise UserError(f"cannot read decoded frame {path}: {e}") from None


def _nonzero(v: float) -> float:
    """MS-SSIM is written as 0 when the run did not compute it."""
    return float(v) if v else NAN


def points(results: list[Result], clips: dict[str, Clip], frames_root: str | None = None,
           method: str = "DCVC-DC") -> tuple[list[Point], list[str]]:
    """Points for the results whose sequence matches a source by name prefix, and notes on the rest."""
    out, notes = [], []
    for r in results:
        name = match_source(r.sequence, list(clips)) or match_source(str(r.values.get("video_path", "")),
                                                                      list(clips))
        where = f"{method} {r.dataset}/{r.sequence} rate {r.rate}"
        if name is None:
            notes.append(f"{where}: no source is named like this sequence; not shown")
            continue
        clip, v = clips[name], r.values
        frames = int(v["i_frame_num"]) + int(v["p_frame_num"])
        bpp = float(v["ave_all_frame_bpp"])
        setting = f"rate_idx {r.rate}"
        decoded_at = find_decoded(frames_root, r) if frames_root else None
        if decoded_at is not None:
            decoded = read_decoded(decoded_at, clip.width, clip.height)
            if len(decoded) != frames or int(v["frame_pixel_num"]) != clip.width * clip.height:
                raise UserError(f"{where}: {decoded_at} holds {len(decoded)} frames of {clip.width}x"
                                f"{clip.height}, the results say {frames} of {v['frame_pixel_num']} pixels")
            out.append(measure(clip, decoded, bpp * frames * clip.width * clip.height, method, setting))
            continue
        if frames_root:
            notes.append(f"{where}: no decoded frames under {frames_root}; its own scores are shown")
        if int(v["frame_pixel_num"]) != clip.width * clip.height:
            notes.append(f"{where}: coded {v['frame_pixel_num']} pixels a frame, the reference "
                         f"{clip.width * clip.height}")
        yuv = "ave_all_frame_psnr_y" in v
        out.append(Point(method, name, setting, frames, bpp,
                         psnr_rgb=NAN if yuv else float(v["ave_all_frame_psnr"]),
                         psnr_y=float(v["ave_all_frame_psnr_y"]) if yuv else NAN,
                         msssim=NAN if yuv else _nonzero(v.get("ave_all_frame_msssim", 0))))
    return out, notes
