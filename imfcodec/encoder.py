"""The encoder pipeline: frames at the model size -> keyframes and token chunks -> an .imf file.

Two GOP modes: `stream` (low delay, each keyframe starts its segment, frames coded as they arrive) and
`segments` (windows of planned segments, each keyed near its middle, with per-window decoder offsets).
Keyframe planning (keyplan), rate control (ratecontrol), measurements against a reference (analysis) and
decoder adaptation (adapt) are their own modules; this one orders their work and writes the chunks.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from . import adapt, bitstream as bs, keyframe
from .analysis import Analysis
from .errors import UserError
from .files import atomic_output, refuse_overwrite
from .keyplan import Planner
from .model import IMF, Reference
from .options import DEFAULT_KEYFRAME_INTERVAL, EncodeOptions
from .pipes import is_pipe, output, read_stream
from .ratecontrol import RateControl, Tally, retry_bits, retry_step, token_step
from .runtime import pick_device, resolve_guess, resolve_model, shipped_prior_path
from .video_io import RESIZE_POLICIES, probe, read_frames, to_model
from entropy import CODEC_IDS, PredictiveCoder, TokenCoder, make_coder

Progress = Callable[[int, int], None]  # (frames done, frames expected or 0)
# a segment's chunks in frame order: (first frame, token batches), or (first frame, count) for held frames
Chunks = list[tuple[int, list[torch.Tensor] | int]]


@dataclass
class EncodeResult:
    frames: int
    width: int
    height: int
    bytes_total: int
    bytes_keyframe: int
    bytes_tokens: int
    seconds: float
    tokens: np.ndarray | None = None
    bytes_adapt: int = 0    # ADPT payloads (decoder offsets)
    cap_bpp: float = 0.0    # the rate cap or target it was coded to (0: none)

    @property
    def over_cap(self) -> bool:
        """Whether the file is over its cap or target: the keyframes at the codec's highest CRF and the
        tokens at their coarsest step could not fit in it."""
        return bool(self.cap_bpp) and self.bpp_total > self.cap_bpp

    @property
    def bpp_total(self) -> float:
        return self.bytes_total * 8 / max(1, self.frames * self.width * self.height)

    @property
    def bpp_tokens(self) -> float:
        return self.bytes_tokens * 8 / max(1, self.frames * self.width * self.height)


class Encoder:
    """Writes the keyframes and token chunks of a stream of frames at the model size."""

    def __init__(self, model: IMF, header: bs.Header, coder: TokenCoder, writer: bs.Writer, opts: EncodeOptions,
                 device: torch.device, progress: Callable[[int], None] | None, expected: int = 0,
                 guess: torch.nn.Module | None = None):
        self.model, self.header, self.coder, self.w = model, header, coder, writer
        self.opts, self.progress, self.expected = opts, progress, expected
        self.analysis = Analysis(model, device, opts.keyframe_codec, header.width, header.height,
                                 opts.refine_steps, opts.keyframe_psnr, opts.synthesis, opts.keyframe_check, guess)
        self.keys = keyframe.Encoder(opts.keyframe_codec, opts.intra_every)
        self.plan = Planner(opts, self.analysis, self.keys)
        self.tally = Tally()
        reserve = bs.chunk_size(adapt.expected_bytes(model)) if opts.adapts else 0
        self.rate = RateControl(opts, header, coder, writer, self.tally, expected, reserve, self.keys)
        self.kept: list[np.ndarray] = []

    def advance(self, k: int) -> None:
        """Account for k more frames coded (or planned into chunks about to be written)."""
        self.tally.frames += k
        if self.progress:
            self.progress(self.tally.frames)

    def refine_rate(self) -> float:
        """The weight of refinement's rate term (imfcodec.refine.token_rate) in low delay: --refine-lambda
        (loss per bit) times the bits a unit of distance costs the predictive coder at a residual scale
        of one step, log2(e) / step. 0 for other coders, which code each token alone."""
        if not self.opts.refine_lambda or not isinstance(self.coder, PredictiveCoder):
            return 0.0
        return self.opts.refine_lambda * math.log2(math.e) / self.coder.qstep

    def reference(self, data: bytes) -> Reference | None:
        """What the decoder will derive from keyframe data, when anything measures against it."""
        if self.opts.needs_reference or self.analysis.guess is not None:  # the guess reads the keyframe too
            return self.analysis.reference(data)
        if self.opts.keyframe_codec == keyframe.INTER:
            self.analysis.keys.decode(data)  # pictures that decode only in order: keep the twin in step
        return None

    def runs(self, before: int, after: int) -> list[int]:
        """The sizes of the token chunks of a segment with before and after frames around its keyframe."""
        c = self.opts.chunk_frames
        return [n for n in (c,) * (before // c) + (before % c,) + (c,) * (after // c) + (after % c,) if n]

    def put_keyframe(self, n: int, data: bytes, advance: bool = True) -> None:
        """Write the keyframe data of frame n; the token coder's context restarts."""
        self.w.chunk(bs.KEYF, bs.pack_keyframe(n, data, self.w.compact))
        self.tally.key_bytes += len(data)
        self.coder.reset()
        if advance:
            self.advance(1)

    def put_hold(self, start: int, n: int) -> None:
        """Write frames start to start + n - 1 as held: the decoder shows their keyframe."""
        self.w.chunk(bs.HOLD, bs.pack_hold(start, n, self.w.compact))
        if self.opts.keep_tokens:
            self.kept.append(np.full((n, self.header.dm), np.nan, np.float32))

    def chunk_fits(self, t: torch.Tensor) -> bool:
        """Whether tokens t, coded as the next chunk, keep the file within its whole budget: coded on a copy
        of the coder, whose context (the tokens before) must not move unless the chunk is written."""
        if not self.opts.cap_bpp:
            return True
        payload, _ = copy.deepcopy(self.coder).encode(t.numpy())
        return self.rate.chunk_fits(len(payload), len(t))

    def put_tokens(self, start: int, toks: list[torch.Tensor]) -> None:
        """Write the token batches toks, frames start on, as one chunk."""
        t = torch.cat(toks) if toks else None
        if t is None or not len(t):
            return  # no frames in this run
        payload, deq = self.coder.encode(t.numpy())
        self.w.chunk(bs.TOKN, bs.pack_tokens(start, len(t), payload, self.w.compact))
        self.tally.token_bytes += len(payload)
        self.tally.token_frames += len(t)
        if self.opts.keep_tokens:
            self.kept.append(deq)

    def stream(self, frames: Iterator[np.ndarray]) -> int:
        """Low delay: each keyframe starts its segment and frames are coded as they arrive. A frame rebuilt
        below the threshold becomes a keyframe, and the frames after it are redone against it."""
        o, a = self.opts, self.analysis
        pending: list[np.ndarray] = []  # frames first, first + 1, ... waiting to become tokens
        first = last_key = 0
        ref: Reference | None = None    # the latest keyframe's
        last: torch.Tensor | None = None  # the segment's latest token, which the predictive coder predicts from
        rate = self.refine_rate()

        def key(n: int, x: np.ndarray, refresh: bool = False) -> bool:
            """Make frame n a keyframe. A refresh (one the interval or spare rate asks for) the rate cannot
            pay for even at the codec's highest CRF is put off instead (False); with --hold, so is one the
            quality check asks for that would take the file past its whole budget, and its frame is held
            (the first keyframe never is)."""
            nonlocal last_key, ref, retry, broke
            q = o.keyframe_quality
            quality = n > 0 and not refresh and o.hold  # the quality check's, which --hold may put off
            if quality and broke:
                return False  # one found the whole budget spent: later ones are not tried
            if o.cap_bpp:  # a trial first: hevc-inter's refreshes cannot be taken back once coded
                frames, runs = serves(n), self.runs(0, serves(n) - 1)
                (trial,), q = self.rate.intra([x], frames, runs)
                early = refresh and not 0 < o.keyframe_interval <= n - last_key  # by spare rate alone
                if refresh and not (self.rate.spare(0, len(trial)) if early else
                                    self.rate.affordable([trial], frames, runs)):
                    retry = n + (1 if early else max(1, o.keyframe_interval // 4))
                    return False
                if quality and not self.rate.key_fits(len(trial)):
                    broke = True
                    return False
            data = self.keys.commit(x, q)
            last_key, last = n, None
            ref = self.reference(data)
            self.put_keyframe(n, data)
            return True

        def flush() -> None:
            """Code the pending frames: runs of tokens and of held frames, and a keyframe where the quality
            check fails (the frames after it redone against it)."""
            nonlocal pending, first, last
            run: list[torch.Tensor | None] = []  # frames from `first` not yet written: token rows, None if held

            def close() -> None:
                nonlocal first, run
                if run and run[0] is None:
                    self.put_hold(first, len(run))
                elif run and o.hold and not self.chunk_fits(torch.cat(run)):
                    self.put_hold(first, len(run))  # coded, they would take the file past its budget
                    self.tally.starved += len(run)
                elif run:
                    self.put_tokens(first, [torch.cat(run)])
                first, run = first + len(run), []

            i = 0
            while i < len(pending):
                x = a.tensor(pending[i:i + o.batch])
                t = a.tokens(x, ref, rate=rate, prev=last)
                low, held = a.check(x, t, ref, o.hold)
                j = low.index(True) if any(low) else len(x)
                if o.hold and not all(held[:j]):
                    tokens_so_far = len(run) if run and run[0] is not None else 0
                    if not self.rate.tokens_fit(tokens_so_far, j - sum(held[:j])):
                        held = [True] * len(x)  # out of budget: the keyframe shows them
                        self.tally.starved += j
                rows = t[:j].float().cpu()
                for k in range(j):
                    row = None if held[k] else rows[k:k + 1]
                    last = last if row is None else row
                    if run and (run[0] is None) != (row is None):
                        close()
                    run.append(row)
                self.advance(j)
                if j == len(x):
                    i += len(x)
                    continue
                close()
                if key(first, pending[i + j]):  # the quality check's
                    first, pending, i = last_key + 1, pending[i + j + 1:], 0
                    continue
                run.append(None)  # out of budget for a keyframe: the frame is held, the segment goes on
                self.advance(1)
                self.tally.starved += 1
                i += j + 1
            close()
            pending = []

        def serves(n: int) -> int:
            """Frames a keyframe at n serves until the next falls due or the expected end; an interval
            when the length is not known (a pipe, a source without a frame count)."""
            if self.expected <= n:
                return o.keyframe_interval or DEFAULT_KEYFRAME_INTERVAL
            left = self.expected - n
            return min(o.keyframe_interval, left) if o.keyframe_interval else left

        def keyframe_due(n: int) -> bool:
            """The first frame; a refresh when the interval is up; or, under a rate target, as soon as the
            rate left over pays for one (the last keyframe of its kind's size)."""
            return n == 0 or n >= retry and (o.keyframe_interval > 0 and n - last_key >= o.keyframe_interval
                                             or self.rate.spare(len(pending), self.keys.estimate()))

        n = retry = 0
        broke = False  # a quality keyframe found the file's whole budget spent
        for x in frames:
            if keyframe_due(n):
                flush()  # may turn a pending frame into a keyframe, which moves last_key
            if not (keyframe_due(n) and key(n, x, refresh=n > 0)):
                if not pending:
                    first = n
                pending.append(x)
                if len(pending) == o.chunk_frames:
                    flush()
            n += 1
        flush()
        return n

    def segments(self, frames: Iterator[np.ndarray]) -> int:
        """Windows of plan_segments x keyframe_interval frames, each split into segments whose keyframes
        and boundaries are chosen together (keyplan): frames are nearer a reference that suits them than with
        keyframes at the starts, at the cost of buffering a window."""
        window = self.opts.keyframe_interval * self.opts.plan_segments
        buf: list[np.ndarray] = []
        n = 0
        for x in frames:
            buf.append(x)
            if len(buf) == window:
                m = self.window(buf, n)
                n, buf = n + m, buf[m:]
        while buf:
            m = self.window(buf, n)
            n, buf = n + m, buf[m:]
        return n

    def window(self, frames: list[np.ndarray], first: int) -> int:
        """Code the segments the planner makes of frames (first is the index of frames[0]); returns how many
        frames they took."""
        segs, refs = self.plan(frames)
        runs = [n for s, e, k in segs for n in self.runs(k - s, e - k - 1)]
        coded = [refs[k][0] for _, _, k in segs] if all(k in refs for _, _, k in segs) else None
        keys, q = self.rate.intra([frames[k] for _, _, k in segs], segs[-1][1], runs, coded)  # one cap for all
        coded_segs = []
        for (s, e, k), data in zip(segs, keys):
            if self.opts.keyframe_codec == keyframe.INTER:  # one segment: code it as the file's next keyframe
                data = self.keys.commit(frames[k], q)
                if k in refs and refs[k][0] == data:
                    self.analysis.keys.decode(data)  # the twin moves on; the trial's reference stands
            ref = refs[k][1] if k in refs and refs[k][0] == data else self.reference(data)
            coded_segs.append((s, e, k, data, ref, self.tokens(frames, s, e, k, ref)))
        if self.opts.adapts:
            self.adapt(frames, coded_segs)
        for s, e, k, data, _, toks in coded_segs:
            self.put_keyframe(first + k, data, advance=False)
            for c, t in toks:
                if isinstance(t, int):
                    self.put_hold(first + c, t)
                else:
                    self.put_tokens(first + c, t)
        return segs[-1][1]

    def tokens(self, frames: list[np.ndarray], s: int, e: int, k: int, ref: Reference | None) -> Chunks:
        """The token chunks of frames[s:e] keyed at frames[k], whose reference is ref; with --hold, runs of
        the frames that ref's own picture shows better than their synthesis are held instead."""
        o, a, out = self.opts, self.analysis, []
        self.advance(1)
        for lo, hi in ((s, k), (k + 1, e)):
            for c in range(lo, hi, o.chunk_frames):
                rows: list[torch.Tensor | None] = []  # a token row per frame, None where held
                for b in range(c, min(hi, c + o.chunk_frames), o.batch):
                    x = a.tensor(frames[b:min(hi, c + o.chunk_frames, b + o.batch)])
                    t = a.tokens(x, ref)
                    held = a.shown_better(x, t, ref) if o.hold else [False] * len(x)
                    t = t.float().cpu()
                    rows += [None if h else t[i:i + 1] for i, h in enumerate(held)]
                    self.advance(len(x))
                out += _runs(c, rows)
        return out

    def adapt(self, frames: list[np.ndarray], segs: list) -> None:
        """Fit the window's decoder offsets and write them (an ADPT chunk) unless, quantized, they do not
        lower the window's loss or a rate cap leaves no room for them."""
        o, refs, which, toks, idx = self.opts, [], [], [], []
        for i, (s, e, k, _, ref, chunks) in enumerate(segs):
            refs.append(ref)
            for c, t in chunks:
                if isinstance(t, int):
                    continue  # held frames: the decoder shows the keyframe, offsets do not touch them
                t = torch.cat(t) if t else torch.zeros(0, self.header.dm)
                toks.append(t)
                idx += range(c, c + len(t))
                which += [i] * len(t)
        if not idx:
            return
        x, t = self.analysis.tensor([frames[j] for j in idx]), torch.cat(toks).to(self.analysis.device)
        room = self.rate.adapt_room([len(d) for *_, d, _, _ in segs],
                                    [sum(map(len, t)) for *_, ch in segs for _, t in ch]) if o.cap_bpp else None
        payload, size = adapt.fit_window(self.model, refs, which, t, x, o.adapt_steps, o.adapt_step, o.batch, room)
        # the next window's keyframes leave room for offsets at the configured step
        self.rate.adapt_reserve = bs.chunk_size(size)
        if payload is not None:
            self.w.chunk(bs.ADPT, payload)
            self.tally.adapt_bytes += len(payload)


def _runs(first: int, rows: list[torch.Tensor | None]) -> Chunks:
    """Chunks of consecutive rows from frame first: a token chunk per run of token rows, a held one per
    run of None."""
    out: Chunks = []
    for held, run in itertools.groupby(enumerate(rows), key=lambda r: r[1] is None):
        run = list(run)
        out.append((first + run[0][0], len(run) if held else [torch.cat([t for _, t in run])]))
    return out


def _coder(opts: EncodeOptions, dm: int, pixels: int, prior_bits: float | None = None) -> TokenCoder:
    """The token coder the options ask for (a learned one with the shipped prior for dm); under a rate
    target the predictive coder's step suits it (ratecontrol.token_step), and prior_bits (measured) sets
    the bits a value it expects."""
    step = opts.qstep if opts.qstep is not None else token_step(opts, dm, pixels)
    kw = {"rate": opts.zfp_rate} if opts.token_codec == "zfp" else ({"qstep": step} if step is not None else {})
    if prior_bits is not None and opts.token_codec == "predictive":
        kw["prior_bits"] = prior_bits
    if opts.token_codec == "learned":
        kw["prior"] = shipped_prior_path(dm)
    try:
        return make_coder(opts.token_codec, dm, **kw)
    except (ValueError, OSError) as e:
        raise UserError(f"token codec: {e}") from None


@torch.no_grad()  # not inference_mode: token refinement needs autograd through the decoder
def encode_file(src: str, dst: str, opts: EncodeOptions, progress: Progress | None = None) -> EncodeResult:
    """Encode the video src to the .imf file dst (written whole or not at all). Either may be a pipe ("-":
    standard input or output): frames are then read as they arrive, and the .imf is a stream whose
    chunks are flushed as they are coded (its header does not know the frame count; its END chunk does)."""
    t0 = time.time()
    opts.validate()
    pipe_in, pipe_out = is_pipe(src), is_pipe(dst)
    if not (pipe_in or pipe_out):
        refuse_overwrite(src, dst)
    info, source = read_stream(src, opts.max_frames) if pipe_in else (probe(src), None)
    device = pick_device(opts.device)
    lm = resolve_model(opts.weights, opts.dm, device, opts.allow_untrained)
    model, size = lm.model, lm.model.cfg.size
    dm = model.cfg.dm
    guess = resolve_guess(opts.token_guess, lm, device)
    opts = opts.at_frame_rate(info.fps, size, size)
    coder = _coder(opts, dm, size * size)
    header = bs.Header(frames=0, fps=info.fps, src_width=info.width, src_height=info.height, width=size,
                       height=size, resize=RESIZE_POLICIES[opts.resize], dm=dm, model_id=lm.model_id,
                       keyframe_codec=bs.KEYFRAME_CODECS[opts.keyframe_codec],
                       keyframe_quality=opts.keyframe_quality, keyframe_interval=opts.keyframe_interval,
                       token_codec=CODEC_IDS[opts.token_codec], token_params=coder.params())
    expected = min(info.frames, opts.max_frames or info.frames)

    def code(w: bs.Writer) -> tuple[int, Encoder]:
        w.chunk(bs.HEAD, header.pack(w.compact))
        enc = Encoder(model, header, coder, w, opts, device,
                      (lambda k: progress(k, max(expected, k))) if progress else None, expected, guess)
        frames = (to_model(img, size, size, opts.resize)
                  for img in (source or read_frames(src, max_frames=opts.max_frames)))
        return enc.stream(frames) if opts.keyframe_position == "start" else enc.segments(frames), enc

    if pipe_out:
        header.frames = bs.UNKNOWN_FRAMES
        with output(dst) as f:
            w = bs.Writer(f, bs.COMPACT_VERSION, stream=True)
            n, enc = code(w)
            w.close(n)
        total = w.tell()
    else:
        with atomic_output(dst) as tmp:
            for second in (False, True):  # a second pass at a coarser token step when the first ends over
                with open(tmp, "wb") as f:
                    w = bs.Writer(f, bs.COMPACT_VERSION)
                    n, enc = code(w)
                    header.frames = n
                    w.rewrite_header(header)
                    w.close(n)
                    f.flush()
                    total = f.tell()
                step = None if second or pipe_in or not isinstance(coder, PredictiveCoder) else \
                    retry_step(opts, coder.qstep, enc.tally, total, size * size, dm)
                if step is None:
                    break
                bits = retry_bits(enc.tally, dm, coder.qstep, step)
                coder = _coder(dataclasses.replace(opts, qstep=step), dm, size * size, bits)
                header.frames, header.token_params = 0, coder.params()
    tl, kept = enc.tally, enc.kept
    tokens = np.concatenate(kept) if kept else (np.zeros((0, dm), np.float32) if opts.keep_tokens else None)
    return EncodeResult(n, size, size, total, tl.key_bytes, tl.token_bytes, time.time() - t0, tokens,
                        tl.adapt_bytes, opts.cap_bpp)
