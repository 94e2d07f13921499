"""The whole rd-curve job: load the reference clips, measure every method on them, then write points.csv,
bd_rate.csv, the plots and report.md. The work is planned first as a list of steps, so one progress bar
covers the job."""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import UserError
from ..video_io import probe
from . import dcvc, plots, report, vtm
from .anchors import ANCHORS
from .clip import Clip, read_clip, write_y4m
from .points import METRICS, NAN, Point, lpips_model, measure

TOKEN_CODECS = ("zfp", "learned", "predictive")


@dataclass
class Job:
    sources: list[str]
    outdir: str
    size: int = 256  # reference frames are size x size (0: each source's own size)
    frames: int | None = None  # at most this many frames of each source
    anchors: list[str] = field(default_factory=lambda: list(ANCHORS))
    dms: list[int] = field(default_factory=lambda: [32])
    token_codecs: list[str] = field(default_factory=lambda: ["zfp"])
    rates: list[float] = field(default_factory=lambda: [2.0, 4.0, 8.0])  # zfp: bits per token value
    qsteps: list[float] = field(default_factory=list)  # learned, predictive: quantisation steps (none: the codec's default)
    refine: list[int] = field(default_factory=list)  # encoder token-refinement steps (none: the encoder's default)
    preset: str | None = None  # the encoder's preset (imfcodec.presets; None: EncodeOptions' defaults, archive)
    max_bpp: float = 0.0  # the encoder's rate cap (0: off)
    target_bpp: float = 0.0  # the encoder's rate target (0: off)
    bitrates: list[float] = field(default_factory=list)  # a ladder of rate targets, bits per second: one point each
    vtm: list[str] = field(default_factory=list)  # bitstreams or folders of them
    vtm_encoder: str | None = None
    vtm_cfg: str | None = None
    vtm_qps: list[int] = field(default_factory=lambda: [37, 42, 47, 51])
    dcvc: list[str] = field(default_factory=list)  # DCVC-DC result JSON files
    dcvc_frames: str | None = None  # the folder DCVC-DC saved its decoded frames in
    earlier: list[str] = field(default_factory=list)  # points.csv files of earlier runs on the same clips


@dataclass
class Outcome:
    points: list[Point]
    bd: list[report.BdRow]
    checks: list[vtm.Check]
    notes: list[str]
    files: list[str]
    reused: int = 0  # points taken from earlier runs' points.csv


Step = tuple[str, Callable[[], list[Point]]]


class _Run:
    """State shared by the steps: clips as they load, their y4m copies, notes and VTM checks."""

    def __init__(self, job: Job, tmp: str):
        self.job, self.tmp = job, tmp
        self.clips: dict[str, Clip] = {}
        self.y4ms: dict[str, str] = {}
        self.notes: list[str] = []
        self.checks: list[vtm.Check] = []
        self.names = [Path(s).stem for s in job.sources]
        self.keyframe_floors: dict[str, Point] = {}  # per clip, from its first imfcodec encode

    def y4m(self, name: str) -> str:
        """The clip as an 8-bit 4:2:0 y4m, for encoders that read files."""
        if name not in self.y4ms:
            self.y4ms[name] = os.path.join(self.tmp, f"{name}.y4m")
            write_y4m(self.clips[name].yuv, self.clips[name].fps, self.y4ms[name])
        return self.y4ms[name]

    def load(self, path: str, name: str) -> list[Point]:
        self.clips[name] = read_clip(path, self.job.size, self.job.frames)
        return []

    def anchor(self, codec, name: str, crf: int) -> list[Point]:
        clip = self.clips[name]
        decoded, bits, enc, dec = codec.encode_decode(clip.yuv, clip.fps, crf)
        return [measure(clip, decoded, bits, codec.name, f"crf {crf}", enc, dec)]

    def vtm_stream(self, path: str, name: str) -> list[Point]:
        point, check = vtm.measure_bitstream(path, self.clips[name])
        self.checks.append(check)
        return [point]

    def vtm_encode(self, name: str, qp: int, cfg: str) -> list[Point]:
        out_dir = os.path.join(self.job.outdir, "vtm")
        os.makedirs(out_dir, exist_ok=True)
        path, seconds = vtm.encode(self.job.vtm_encoder, cfg, self.y4m(name), self.clips[name], qp, out_dir)
        point = self.vtm_stream(path, name)[0]
        return [dataclasses.replace(point, encode_fps=point.frames / seconds)]

    def dcvc(self, results: list[dcvc.Result], method: str) -> list[Point]:
        points, notes = dcvc.points(results, self.clips, self.job.dcvc_frames, method)
        self.notes += notes
        return points

    def imfcodec(self, codec, name: str, method: str, setting: str, options: dict) -> list[Point]:
        """Encode and decode through imfcodec's own pipeline (y4m in, y4m out) and measure like the rest."""
        clip = self.clips[name]
        imf, rec = os.path.join(self.tmp, "run.imf"), os.path.join(self.tmp, "run-decoded.y4m")
        t0 = time.perf_counter()
        try:
            if self.job.preset:
                from ..presets import preset_options
                opts = preset_options(self.job.preset, **options)
            else:
                opts = codec.EncodeOptions(**options)
            codec.encode_file(self.y4m(name), imf, opts)
            t1 = time.perf_counter()
            codec.decode_file(imf, rec, codec.DecodeOptions())
        except UserError as e:
            self.notes.append(f"{method} {setting} on {name} failed: {e}")
            return [Point(method, name, f"{setting} (failed)", 0, NAN)]
        t2 = time.perf_counter()
        info = codec.read_info(imf)
        decoded = read_clip(rec, 0).yuv
        if name not in self.keyframe_floors:
            self.keyframe_floors[name] = measure(clip, codec.repeat_keyframes(imf), info["bytes_keyframe"] * 8,
                                                 report.KEYFRAME_FLOOR, f"the keyframes of {method} {setting}")
        return [measure(clip, decoded, info["bytes_total"] * 8, method, setting, t1 - t0, t2 - t1,
                        info["bpp_tokens"])]


def _floor(run: _Run, name: str) -> list[Point]:
    """The floors every frame-synthesis codec must beat: the first frame coded as `imfcodec encode`'s default
    keyframe (its codec and quality), decoded and repeated for every frame, at the keyframe's bits; and the
    keyframes and segments of the clip's first imfcodec encode, each keyframe repeated over its segment, at
    their bits (what that file's tokens add to)."""
    from .. import keyframe
    from ..codec import EncodeOptions
    opts = EncodeOptions()
    clip, kc, kq = run.clips[name], opts.keyframe_codec, opts.keyframe_quality
    data = keyframe.encode(clip.rgb[0], kc, kq)
    first = keyframe.decode(data, kc, clip.width, clip.height)
    points = [measure(clip, np.broadcast_to(first, clip.rgb.shape), len(data) * 8, report.FLOOR, f"{kc} crf {kq}")]
    return points + ([run.keyframe_floors[name]] if name in run.keyframe_floors else [])


def _imfcodec_steps(run: _Run) -> tuple[list[Step], list[Point]]:
    """A step per source x dm x token codec x rate; a 'missing' row for each dm and codec that cannot run."""
    try:
        from .. import codec
        from ..model.weights import shipped_path
    except ImportError:
        codec = None
    job, steps, missing = run.job, [], []
    for dm, tc, r in ((dm, tc, r) for dm in job.dms for tc in job.token_codecs for r in job.refine or [None]):
        method = (f"imfcodec dm{dm} {tc}" + (f" {job.preset}" if job.preset else "")
                  + ("" if r is None else f" refine {r}")
                  + (f" max {job.max_bpp:g} bpp" if job.max_bpp else "")
                  + (f" target {job.target_bpp:g} bpp" if job.target_bpp else ""))
        weights = shipped_path(dm, job.size) if codec and job.size else ""
        reason = ("imfcodec.codec is not available" if codec is None else
                  "--size 0: imfcodec codes at its model size" if not job.size else
                  "" if os.path.isfile(weights) else f"no shipped weights at {weights}")
        if reason:
            missing.append(Point(method, "", f"missing: {reason}", 0, NAN))
            run.notes.append(f"{method}: missing ({reason})")
            continue
        ladder = [("bitrate", b) for b in job.bitrates] or \
            [("zfp_rate" if tc == "zfp" else "qstep", v) for v in (job.rates if tc == "zfp" else job.qsteps or [None])]
        for field_, v in ladder:
            options = {"dm": dm, "weights": weights, "token_codec": tc}
            if r is not None:
                options["refine_steps"] = r
            if job.max_bpp:
                options["max_bpp"] = job.max_bpp
            if job.target_bpp:
                options["target_bpp"] = job.target_bpp
            if v is None:
                setting = "qstep default"
            else:
                options[field_] = v
                setting = {"bitrate": f"{v / 1000:g} kbit/s", "zfp_rate": f"rate {v:g}"}.get(field_, f"qstep {v:g}")
            steps += [(f"{method} {setting} · {n}", lambda n=n, m=method, s=setting, o=options:
                       run.imfcodec(codec, n, m, s, o)) for n in run.names]
    if job.dms and codec and job.size:
        steps += [(f"repeat first frame · {n}", lambda n=n: _floor(run, n)) for n in run.names]
    return steps, missing


def _check(job: Job) -> None:
    if not job.sources:
        raise UserError("no sources given")
    if job.size < 0 or job.size % 2:
        raise UserError(f"--size must be 0 or an even number of pixels, not {job.size}")
    if job.frames is not None and job.frames < 1:
        raise UserError(f"--frames must be at least 1, not {job.frames}")
    for a in job.anchors:
        if a not in ANCHORS:
            raise UserError(f"unknown anchor {a!r}: choose from {', '.join(ANCHORS)}")
    for tc in job.token_codecs:
        if tc not in TOKEN_CODECS:
            raise UserError(f"unknown token codec {tc!r}: choose from {', '.join(TOKEN_CODECS)}")
    if any(r < 0 for r in job.refine):
        raise UserError("--refine steps must be >= 0")
    if job.max_bpp < 0 or job.target_bpp < 0:
        raise UserError("--max-bpp and --target-bpp must be >= 0")
    if job.max_bpp and job.target_bpp:
        raise UserError("give --max-bpp or --target-bpp, not both")
    if job.bitrates and (job.max_bpp or job.target_bpp):
        raise UserError("--bitrates is a ladder of rate targets: give it, --max-bpp or --target-bpp, not two")
    for s in job.sources:
        probe(s)  # a missing or unreadable source fails here, before any work
    names = [Path(s).stem for s in job.sources]
    if len(set(names)) < len(names):
        raise UserError("two sources share a file name; results are matched to sources by name")
    if job.vtm_encoder and not os.access(job.vtm_encoder, os.X_OK):
        raise UserError(f"VTM encoder not found or not executable: {job.vtm_encoder}")
    if job.vtm_cfg and not os.path.isfile(job.vtm_cfg):
        raise UserError(f"VTM configuration not found: {job.vtm_cfg}")
    if job.dcvc_frames and not os.path.isdir(job.dcvc_frames):
        raise UserError(f"DCVC-DC decoded frames folder not found: {job.dcvc_frames}")


def _plan(run: _Run) -> tuple[list[Step], list[Point]]:
    job = run.job
    steps: list[Step] = [(f"reading {n}", lambda p=p, n=n: run.load(p, n)) for p, n in zip(job.sources, run.names)]
    for a in job.anchors:
        steps += [(f"{a} crf {crf} · {n}", lambda c=ANCHORS[a], n=n, crf=crf: run.anchor(c, n, crf))
                  for crf in ANCHORS[a].crfs for n in run.names]
    imf_steps, missing = _imfcodec_steps(run)
    steps += imf_steps
    for given in job.vtm:
        for path in vtm.list_bitstreams([given]):
            name = vtm.match_source(path, run.names)
            if name is None and not os.path.isdir(given):
                raise UserError(f"VTM bitstream {path} matches no source: its name must begin with a source's")
            if name is None:
                run.notes.append(f"VTM {path}: no source is named like it; not measured")
                continue
            steps.append((f"VTM {Path(path).name}", lambda p=path, n=name: run.vtm_stream(p, n)))
    if job.vtm_encoder:
        cfg = job.vtm_cfg or vtm.default_cfg(job.vtm_encoder)
        steps += [(f"VTM encoding QP {qp} · {n}", lambda n=n, qp=qp: run.vtm_encode(n, qp, cfg))
                  for qp in job.vtm_qps for n in run.names]
    for path in job.dcvc:
        method = "DCVC-DC" if len(job.dcvc) == 1 else f"DCVC-DC {Path(path).stem}"
        results = dcvc.read_results(path)  # a bad file fails here, before any work
        steps.append((f"{method} results", lambda r=results, m=method: run.dcvc(r, m)))
    return steps, missing


def _earlier(run: _Run, measured: list[Point], earlier: list[Point]) -> list[Point]:
    """Earlier runs' points of the methods this run does not measure, on sources of the same name and length
    (VTM streams no longer at hand, say): new weights are compared with them without coding them again."""
    fresh = {p.method for p in measured}
    usable = [p for p in earlier if p.frames and p.method not in fresh]
    kept = [p for p in usable if p.source in run.clips and len(run.clips[p.source]) == p.frames]
    if len(kept) < len(usable):
        run.notes.append(f"{len(usable) - len(kept)} earlier points not used: their source or frame count is not "
                         f"one of this run's")
    if kept:
        run.notes.append(f"{len(kept)} points taken from earlier runs, not measured again: "
                         f"{', '.join(dict.fromkeys(p.method for p in kept))}")
    return kept


def _context(run: _Run) -> list[str]:
    lines = ["| source | frames | size | fps | PSNR-Y on |", "|---|---|---|---|---|"]
    lines += [f"| {c.name} | {len(c)} | {c.width}x{c.height} | {float(c.fps):g} | "
              f"{'the Y plane as stored' if c.yuv_as_stored else 'BT.601 luma from RGB'} |"
              for c in run.clips.values()]
    return lines


def run(job: Job, console: Console | None = None, quiet: bool = False) -> Outcome:
    """Run the job and write its outputs into job.outdir."""
    _check(job)
    earlier = [p for path in job.earlier for p in report.read_points(path)]  # a bad file fails before any work
    os.makedirs(job.outdir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rd-curve-") as tmp:
        state = _Run(job, tmp)
        steps, missing = _plan(state)
        points = []
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, disable=quiet) as progress:
            task = progress.add_task("rd-curve", total=len(steps))
            for label, step in steps:
                progress.update(task, description=label)
                points += step()
                progress.advance(task)
    points += missing
    reused = _earlier(state, points, earlier)
    points += reused
    if lpips_model()[0] is None:
        state.notes.append(lpips_model()[1])
    bd = report.bd_table(points)
    out = job.outdir
    files = [os.path.join(out, "points.csv"), os.path.join(out, "bd_rate.csv"), os.path.join(out, "report.md")]
    report.write_points(points, files[0])
    report.write_bd(bd, files[1])
    figures = [p for m in METRICS for rate in plots.RATES for p in plots.plot_metric(points, m, out, rate)]
    report.write_report(files[2], points, bd, state.checks, state.notes, figures, _context(state))
    return Outcome(points, bd, state.checks, state.notes, files + figures, len(reused))
