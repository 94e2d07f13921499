"""Encoder and decoder pipelines: video file <-> .imf, streaming in chunks so memory stays bounded.

Encode: frames -> model size -> keyframe (intra codec) or token t = E_T(x) -> token coder -> chunks.
Decode: chunks (CRC-checked) -> keyframe -> reference cache (E_F, t_r, keys, values: once per keyframe)
        -> tokens -> frames synthesised in batches -> output video.
Outputs are written to a temporary file beside the destination and renamed only on success.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

from . import bitstream as bs
from . import adapt, keyframe, keyplan
from .fast import SYNTHESIS, synthesis_for
from .errors import BitstreamError, UserError
from .model import IMF
from .model.imf import Reference
from .model.weights import LoadedModel, load_weights, shipped_path
from .refine import DEFAULT_REFINE_STEPS, refine_tokens
from .video_io import RESIZE_POLICIES, VideoWriter, probe, read_frames, source_size, to_model, to_source
from entropy import CODEC_IDS, ZfpCoder, coder_from_header, make_coder

Progress = Callable[[int, int], None]  # (frames done, frames expected or 0)

#: Defaults of `imfcodec encode` (the model card measures them): a keyframe at least every 34 frames (three in
#: a 100-frame clip), and wherever the decoder would rebuild a frame below 14 dB (scene cuts).
DEFAULT_KEYFRAME_INTERVAL = 34
DEFAULT_KEYFRAME_PSNR = 14.0
DEFAULT_ZFP_RATE = 6.0
KEYFRAME_POSITIONS = ("middle", "start")
DEFAULT_KEYFRAME_CANDIDATES = 5
#: Segments planned together (their keyframes and boundaries chosen jointly), and how densely a window of
#: several is scored: every PLAN_FRAME_STEP-th frame.
DEFAULT_PLAN_SEGMENTS = 3
PLAN_FRAME_STEP = 2
#: The highest CRF of each lossy keyframe codec: where a rate cap stops raising it.
MAX_KEYFRAME_QUALITY = {"av1": 63, "hevc": 51}


def keyframe_offset(length: int, position: str) -> int:
    """Where in a segment of length frames its keyframe goes: the middle halves the longest distance from a
    frame to its reference (+0.62 dB on the eval clips, MODEL_CARD.md); the start lets frames be coded as
    they arrive."""
    return (length - 1) // 2 if position == "middle" else 0


def keyframe_candidates(length: int, count: int) -> list[int]:
    """The frames of a segment tried as its keyframe (the encoder keeps the one that rebuilds the segment
    best): count of them, evenly spaced over the middle half, the middle one included."""
    mid, step, lo = keyframe_offset(length, "middle"), max(1, length // 8), count // 2
    return sorted({min(length - 1, max(0, mid + j * step)) for j in range(-lo, count - lo)})


@dataclass
class EncodeOptions:
    dm: int = 32
    weights: str | None = None          # default: the shipped weights for dm
    token_codec: str = "zfp"
    zfp_rate: float = DEFAULT_ZFP_RATE  # bits per token value
    qstep: float | None = None          # learned coder's quantization step (None: its default)
    resize: str = "crop"
    keyframe_codec: str = keyframe.DEFAULT_CODEC
    keyframe_quality: int = keyframe.DEFAULT_QUALITY  # CRF of the keyframe codec
    keyframe_interval: int = DEFAULT_KEYFRAME_INTERVAL  # one keyframe per this many frames; 0: no limit (start)
    keyframe_psnr: float = DEFAULT_KEYFRAME_PSNR  # dB; a frame rebuilt below it becomes a keyframe; 0: off
    keyframe_position: str = "middle"   # of its segment ("start": low delay, frames coded as they arrive)
    keyframe_candidates: int = DEFAULT_KEYFRAME_CANDIDATES  # frames near the middle tried as the keyframe
    plan_segments: int = DEFAULT_PLAN_SEGMENTS  # segments whose keyframes and boundaries are chosen together
    chunk_frames: int = 32
    batch: int = 8
    device: str = "auto"
    max_frames: int | None = None
    allow_untrained: bool = False
    keep_tokens: bool = False           # return the dequantized tokens (tests, analysis)
    refine_steps: int = DEFAULT_REFINE_STEPS  # encoder-side token refinement (imfcodec.refine); 0: off
    max_bpp: float = 0.0                # rate cap over the whole file, bits per pixel at the model size; 0: off
    target_bpp: float = 0.0             # rate target: a cap that keyframes also spend (a lower CRF); 0: off
    adapt_steps: int = adapt.DEFAULT_ADAPT_STEPS  # per-window decoder adaptation (imfcodec.adapt); 0: off
    adapt_step: float = adapt.DEFAULT_STEP        # quantization step of its offsets
    keyframe_check: str = "every"       # frames the quality check synthesises: "every" one, or each batch's last
                                        # ("batch"; all of a batch whose last frame fails)
    synthesis: str = "exact"            # no-gradient syntheses (checks, planning): "exact" or "fast" (imfcodec.fast)

    @property
    def adapts(self) -> bool:
        """Windows get decoder offsets (only with keyframes mid-segment: low delay cannot look ahead)."""
        return self.adapt_steps > 0 and self.keyframe_position == "middle"

    @property
    def cap_bpp(self) -> float:
        """The rate the file must stay within (0: none): max_bpp or target_bpp."""
        return self.max_bpp or self.target_bpp


@dataclass
class DecodeOptions:
    weights: str | None = None
    device: str = "auto"
    batch: int = 8
    scale_to_source: bool = False
    allow_untrained: bool = False
    synthesis: str = "exact"            # "fast": imfcodec.fast's path on CPU (within 0.05 dB of "exact")


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

    @property
    def bpp_total(self) -> float:
        return self.bytes_total * 8 / max(1, self.frames * self.width * self.height)

    @property
    def bpp_tokens(self) -> float:
        return self.bytes_tokens * 8 / max(1, self.frames * self.width * self.height)


@dataclass
class DecodeResult:
    frames: int
    seconds: float
    frames_rgb: list[np.ndarray] = field(default_factory=list)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available on this machine")
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


def resolve_model(weights: str | None, dm: int, device: torch.device, allow_untrained: bool) -> LoadedModel:
    """The weights to use: an explicit file, or the shipped ones for dm; refuse untrained weights."""
    path = weights or shipped_path(dm)
    if not os.path.isfile(path):
        if weights:
            raise UserError(f"weights file not found: {weights}")
        raise UserError(f"no trained weights for dm={dm} are installed (expected {path}); "
                        f"train them with `imfcodec train` or pass --weights")
    lm = load_weights(path, device)
    if not lm.trained and not allow_untrained:
        raise UserError(f"the weights in {path} are untrained: they would produce noise; "
                        f"train them with `imfcodec train` first")
    return lm


@contextlib.contextmanager
def atomic_output(dst: str) -> Iterator[str]:
    """A temporary path beside dst, renamed to dst on success and removed on any failure."""
    d = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(d):
        raise UserError(f"output folder does not exist: {d}")
    ext = os.path.splitext(dst)[1]
    fd, tmp = tempfile.mkstemp(prefix=".imfcodec-", suffix=ext, dir=d)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _to_tensor(frames: list[np.ndarray], device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).float() / 255


def _to_images(x: torch.Tensor) -> list[np.ndarray]:
    arr = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return list(arr)


def _same_file(a: str, b: str) -> bool:
    return os.path.exists(b) and os.path.samefile(a, b)


class _Encoder:
    """Writes keyframes and tokens for a stream of frames at the model size; keeps what the decoder will
    derive from the latest keyframe (the reference), which refinement and keyframe decisions need."""

    def __init__(self, model: IMF, header: bs.Header, coder, writer: bs.Writer, opts: EncodeOptions,
                 device: torch.device, progress: Callable[[int], None] | None, expected: int = 0):
        self.model, self.header, self.coder, self.w = model, header, coder, writer
        self.opts, self.device, self.progress, self.expected = opts, device, progress, expected
        searches = opts.keyframe_position == "middle" and opts.keyframe_candidates > 1
        self.needs_ref = opts.refine_steps > 0 or opts.keyframe_psnr > 0 or searches or opts.adapts
        self.ref: Reference | None = None
        self.done = self.bytes_key = self.bytes_tok = self.frames_tok = self.bytes_adapt = 0
        # Bytes a window's keyframes leave for its decoder offsets under a rate cap: the last window's at the
        # configured step, or a prior before any (the offsets are fitted after the keyframes are coded).
        self.adapt_reserve = adapt.expected_bytes(model) + bs.CHUNK_OVERHEAD if opts.adapts else 0
        self.kept: list[np.ndarray] = []
        self.synth = synthesis_for(model, opts.synthesis, device)  # no-gradient syntheses

    def advance(self, k: int) -> None:
        self.done += k
        if self.progress:
            self.progress(self.done)

    def code_keyframe(self, x: np.ndarray, before: int, after: int) -> bytes:
        """Intra-code x, the keyframe of its segment's before frames before it and after frames after it, and
        make what the decoder will derive from it the reference."""
        (data,) = self.intra([x], before + 1 + after, self.runs(before, after))
        self.use(data)
        return data

    def use(self, data: bytes) -> None:
        """Make what the decoder will derive from keyframe data the reference."""
        if self.needs_ref:
            self.ref = self.reference_of(data)

    def reference_of(self, data: bytes) -> Reference:
        """What the decoder derives from keyframe data: its decoded picture's features and token."""
        h = self.header
        img = keyframe.decode(data, h.keyframe_codec, h.width, h.height)
        return self.model.reference(_to_tensor([img], self.device))

    def runs(self, before: int, after: int) -> list[int]:
        """The sizes of the token chunks of a segment with before and after frames around its keyframe."""
        c = self.opts.chunk_frames
        return [n for n in (c,) * (before // c) + (before % c,) + (c,) * (after // c) + (after % c,) if n]

    def intra(self, pics: list[np.ndarray], frames: int, runs: list[int],
              coded: list[bytes] | None = None) -> list[bytes]:
        """The keyframes pics, which with token chunks of the sizes runs code the next frames frames, at the
        keyframe CRF (coded: pics at that CRF, when known). Under a rate cap, at the lowest CRF above it (one
        for all) that keeps the file within the cap once those frames are coded, the codec's highest when none
        does; under a rate target, below it too when the cap and the keyframes still to come allow."""
        o = self.opts

        def code(q: int) -> list[bytes]:
            return [keyframe.encode(x, o.keyframe_codec, q) for x in pics]

        data = coded or code(o.keyframe_quality)
        if not o.cap_bpp:
            return data
        budget = self.keyframe_budget(frames, runs, len(pics))
        lo, hi, best = o.keyframe_quality + 1, MAX_KEYFRAME_QUALITY[o.keyframe_codec], None
        size = sum(map(len, data))
        if size <= budget:
            if not o.target_bpp:
                return data
            budget -= self.later_deficit(frames, size // len(pics))  # what the keyframes to come will need
            lo, hi, best = 0, o.keyframe_quality - 1, data
        while lo <= hi:  # bisect for the smallest CRF that fits: bytes fall as the CRF rises
            mid = (lo + hi) // 2
            d = code(mid)
            if sum(map(len, d)) <= budget:
                hi, best = mid - 1, d
            else:
                lo = mid + 1
        return best or code(MAX_KEYFRAME_QUALITY[o.keyframe_codec])

    def later_deficit(self, frames: int, key_bytes: int) -> int:
        """Bytes the frames after the next frames frames (to the probed end) will lack, beyond their own share
        of the cap, to give their keyframes key_bytes each: a rate target leaves them that much."""
        o, h = self.opts, self.header
        later = self.expected - self.done - frames
        if later <= 0:
            return 0
        keys = -(-later // o.keyframe_interval) if o.keyframe_interval else 1
        windows = -(-later // (o.keyframe_interval * o.plan_segments)) if o.adapts else 0
        share = int(o.cap_bpp * h.width * h.height * later / 8) - self.token_bytes(later) - \
            (keys + -(-later // o.chunk_frames)) * bs.CHUNK_OVERHEAD - windows * self.adapt_reserve
        return max(0, keys * key_bytes - share)

    def keyframe_budget(self, frames: int, runs: list[int], keys: int) -> int:
        """Bytes keys keyframes may take: what the cap allows up to the end of the next frames frames, less what
        the file holds so far and what their token chunks of sizes runs, the chunks' framing, the file's end
        and (when adapting) the window's decoder offsets will take. What earlier segments left unspent carries
        over, so the cap holds over the file."""
        h = self.header
        allowed = int(self.opts.cap_bpp * h.width * h.height * (self.done + frames) / 8)
        tokens = sum(self.token_bytes(n) for n in runs) + (len(runs) + keys + 1) * bs.CHUNK_OVERHEAD
        return allowed - self.w.f.tell() - tokens - self.adapt_reserve

    def token_bytes(self, n: int) -> int:
        """Bytes a chunk of n tokens will take: exact for ZFP's fixed rate; for the learned coder the file's
        mean so far (a byte a value before any token is coded)."""
        if isinstance(self.coder, ZfpCoder):
            return len(self.coder.encode(np.zeros((n, self.header.dm), np.float32))[0])
        per = self.bytes_tok / self.frames_tok if self.frames_tok else self.header.dm
        return int(per * n + 0.5)

    def put_keyframe(self, n: int, data: bytes, advance: bool = True) -> None:
        self.w.chunk(bs.KEYF, bs.pack_keyframe(n, data))
        self.bytes_key += len(data)
        self.coder.reset()
        if advance:
            self.advance(1)

    def put_tokens(self, start: int, toks: list[torch.Tensor]) -> None:
        t = torch.cat(toks) if toks else None
        if t is None or not len(t):
            return  # no frames in this run
        payload, deq = self.coder.encode(t.numpy())
        self.w.chunk(bs.TOKN, bs.pack_tokens(start, len(t), payload))
        self.bytes_tok += len(payload)
        self.frames_tok += len(t)
        if self.opts.keep_tokens:
            self.kept.append(deq)

    def tokens(self, x: torch.Tensor, refine: bool = True) -> torch.Tensor:
        """E_T's tokens for frames x, refined against the reference unless refine is False."""
        t = self.model.encode_tokens(x)
        if refine and self.opts.refine_steps:
            t = refine_tokens(self.model, self.ref, x, t, self.opts.refine_steps)
        return t

    def psnr(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """PSNR (dB, RGB) of each frame of x as tokens t rebuild it from the reference."""
        mse = (self.synth.synthesize(t, self.ref).clamp(0, 1) - x).pow(2).mean(dim=(1, 2, 3))
        return -10 * torch.log10(mse.clamp_min(1e-10))

    def below(self, x: torch.Tensor, t: torch.Tensor) -> list[bool]:
        """Which frames of x tokens t rebuild below the keyframe threshold (none when it is off)."""
        if not self.opts.keyframe_psnr:
            return [False] * len(x)
        if self.opts.keyframe_check == "batch" and len(x) > 1 and \
                not bool(self.psnr(x[-1:], t[-1:])[0] < self.opts.keyframe_psnr):
            return [False] * len(x)  # the batch's last frame, furthest from the reference, passes
        return (self.psnr(x, t) < self.opts.keyframe_psnr).tolist()

    def stream(self, frames: Iterator[np.ndarray]) -> int:
        """Low delay: each keyframe starts its segment and frames are coded as they arrive. A frame rebuilt
        below the threshold becomes a keyframe, and the frames after it are redone against it."""
        o = self.opts
        pending: list[np.ndarray] = []  # frames first, first + 1, ... waiting to become tokens
        first = last_key = 0

        def flush() -> None:
            nonlocal pending, first, last_key
            toks: list[torch.Tensor] = []
            i = 0
            while i < len(pending):
                x = _to_tensor(pending[i:i + o.batch], self.device)
                t = self.tokens(x)
                low = self.below(x, t)
                if not any(low):
                    toks.append(t.float().cpu())
                    self.advance(len(x))
                    i += len(x)
                    continue
                j = low.index(True)
                toks.append(t[:j].float().cpu())
                self.advance(j)
                self.put_tokens(first, toks)
                last_key = first + i + j
                self.put_keyframe(last_key, self.code_keyframe(pending[i + j], 0, serves() - 1))
                first, pending, toks, i = last_key + 1, pending[i + j + 1:], [], 0
            self.put_tokens(first, toks)
            pending = []

        def serves() -> int:  # frames until the next keyframe falls due (or the expected end)
            left = max(1, self.expected - last_key)
            return min(o.keyframe_interval, left) if o.keyframe_interval else left

        def keyframe_due(n: int) -> bool:
            return n == 0 or (o.keyframe_interval > 0 and n - last_key >= o.keyframe_interval)

        n = 0
        for x in frames:
            if keyframe_due(n):
                flush()  # may turn a pending frame into a keyframe, which moves last_key
            if keyframe_due(n):
                last_key = n
                self.put_keyframe(n, self.code_keyframe(x, 0, serves() - 1))
            else:
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
        and boundaries are chosen together (_plan): frames are nearer a reference that suits them than with
        keyframes at the starts, at the cost of buffering a window."""
        window = self.opts.keyframe_interval * self.opts.plan_segments
        buf: list[np.ndarray] = []
        n = 0
        for x in frames:
            buf.append(x)
            if len(buf) == window:
                m = self._window(buf, n)
                n, buf = n + m, buf[m:]
        while buf:
            m = self._window(buf, n)
            n, buf = n + m, buf[m:]
        return n

    def _window(self, frames: list[np.ndarray], first: int) -> int:
        """Code the segments _plan makes of frames (first is the index of frames[0]); returns how many frames
        they took."""
        segs, refs = self._plan(frames)
        runs = [n for s, e, k in segs for n in self.runs(k - s, e - k - 1)]
        coded = [refs[k][0] for _, _, k in segs] if all(k in refs for _, _, k in segs) else None
        keys = self.intra([frames[k] for _, _, k in segs], segs[-1][1], runs, coded)  # the window shares the cap
        coded_segs = []
        for (s, e, k), data in zip(segs, keys):
            if k in refs and refs[k][0] == data:
                self.ref = refs[k][1]
            else:
                self.use(data)
            coded_segs.append((s, e, k, data, self.ref, self._tokens(frames, s, e, k)))
        if self.opts.adapts:
            self._adapt(frames, coded_segs)
        for s, e, k, data, _, toks in coded_segs:
            self.put_keyframe(first + k, data, advance=False)
            for c, t in toks:
                self.put_tokens(first + c, t)
        return segs[-1][1]

    def _tokens(self, frames: list[np.ndarray], s: int, e: int, k: int) -> list[tuple[int, list[torch.Tensor]]]:
        """The token chunks (first frame in frames, token batches) of frames[s:e] keyed at frames[k]."""
        o, out = self.opts, []
        self.advance(1)
        for lo, hi in ((s, k), (k + 1, e)):
            for c in range(lo, hi, o.chunk_frames):
                toks = []
                for b in range(c, min(hi, c + o.chunk_frames), o.batch):
                    x = _to_tensor(frames[b:min(hi, c + o.chunk_frames, b + o.batch)], self.device)
                    toks.append(self.tokens(x).float().cpu())
                    self.advance(len(x))
                out.append((c, toks))
        return out

    def _adapt(self, frames: list[np.ndarray], segs: list) -> None:
        """Fit the window's decoder offsets to its frames and tokens and write them (an ADPT chunk) unless,
        quantized, they do not lower the window's loss or a rate cap leaves no room for them; the model is back
        at the shipped weights afterwards."""
        o, refs, which, toks, idx = self.opts, [], [], [], []
        for i, (s, e, k, _, ref, chunks) in enumerate(segs):
            refs.append(ref)
            for c, t in chunks:
                t = torch.cat(t) if t else torch.zeros(0, self.header.dm)
                toks.append(t)
                idx += range(c, c + len(t))
                which += [i] * len(t)
        if not idx:
            return
        x, t = _to_tensor([frames[j] for j in idx], self.device), torch.cat(toks).to(self.device)
        room = self._adapt_room(segs) if o.cap_bpp else None
        with adapt.adaptable(self.model) as a:
            offsets = a.fit(self.model, refs, which, t, x, o.adapt_steps, batch=o.batch)
            sizes = []
            for step in (o.adapt_step * 2 ** i for i in range(adapt.COARSER_STEPS)):
                q = adapt.quantize(offsets, step)
                payload = adapt.pack(q, step)
                sizes.append(len(payload))
                if room is None or len(payload) <= room:
                    break
            # the next window's keyframes leave room for offsets at the configured step
            self.adapt_reserve = sizes[0] + bs.CHUNK_OVERHEAD
            if room is not None and sizes[-1] > room:
                return  # a rate cap leaves no room even for the coarsest offsets
            a.set(adapt.dequantize(q, step))
            after = adapt.loss(self.model, refs, which, t, x, o.batch)
            a.set(None)
            if after >= adapt.loss(self.model, refs, which, t, x, o.batch):
                return
        self.w.chunk(bs.ADPT, payload)
        self.bytes_adapt += len(payload)

    def _adapt_room(self, segs: list) -> int:
        """Bytes a window's ADPT payload may take under the rate cap, its keyframes and tokens coded."""
        h = self.header
        later = sum(len(d) + bs.CHUNK_OVERHEAD for *_, d, _, _ in segs) + \
            sum(self.token_bytes(sum(map(len, t))) + bs.CHUNK_OVERHEAD for *_, ch in segs for _, t in ch)
        allowed = int(self.opts.cap_bpp * h.width * h.height * self.done / 8) - bs.CHUNK_OVERHEAD
        return allowed - self.w.f.tell() - later - bs.CHUNK_OVERHEAD

    def _references(self, frames: list[np.ndarray], keys: list[int]) -> dict[int, tuple[bytes, Reference]]:
        """Each of frames[k], k in keys, coded at the keyframe CRF, and the reference the decoder derives."""
        out = {}
        for k in keys:
            data = keyframe.encode(frames[k], self.opts.keyframe_codec, self.opts.keyframe_quality)
            out[k] = data, self.reference_of(data)
        return out

    def _scores(self, frames: list[np.ndarray], sampled: list[int], refs: dict) -> dict[int, torch.Tensor]:
        """PSNR of each sampled frame as E_T's tokens rebuild it from each reference in refs."""
        o, out = self.opts, {}
        batches = [_to_tensor([frames[j] for j in sampled[b:b + o.batch]], self.device)
                   for b in range(0, len(sampled), o.batch)]
        toks = [self.model.encode_tokens(x) for x in batches]
        for k, (_, self.ref) in refs.items():
            out[k] = torch.cat([self.psnr(x, t) for x, t in zip(batches, toks)])
        return out

    def _plan(self, frames: list[np.ndarray]) -> tuple[list[keyplan.Segment], dict]:
        """Segments (start, end, keyframe) covering frames, one per keyframe_interval frames, and the coded
        keyframes and references computed on the way.

        Search (keyframe_candidates > 1): every candidate keyframe is coded and scored by how well E_T's
        tokens rebuild the window's frames from its decoded picture, and keyplan.plan picks keyframes and
        boundaries together: which pose a keyframe catches matters. A single segment tries keyframe_candidates
        frames over its middle half (every frame scored); a window of several tries every
        keyframe_interval // 8-th frame (every PLAN_FRAME_STEP-th frame scored). Without search, segments
        are keyframe_interval long and keyed at their middles.

        No frame may be rebuilt below keyframe_psnr: one that is (a scene cut, or content the network cannot
        follow) ends the window on the side away from its keyframe, and the shorter window is planned again.
        E_T's tokens find such frames cheaply; refinement confirms them, nearest a keyframe first."""
        o, m = self.opts, len(frames)
        while True:
            count, size = -(-m // o.keyframe_interval), o.keyframe_interval
            refs: dict = {}
            if o.keyframe_candidates > 1 and m > 1:
                if count == 1:
                    cands, sampled = keyframe_candidates(m, o.keyframe_candidates), list(range(m))
                else:
                    step = max(1, size // 8)
                    cands, sampled = list(range(step // 2, m, step)), list(range(0, m, PLAN_FRAME_STEP))
                refs = self._references(frames, cands)
                scores = self._scores(frames, sampled, refs)
                segs = keyplan.plan(torch.stack([scores[c] for c in cands]).cpu().numpy(), cands, sampled, m, count)
                refs = {k: refs[k] for _, _, k in segs}
                if sampled != list(range(m)):
                    scores = {}
            else:
                segs = [(b, min(m, b + size), b + keyframe_offset(min(m, b + size) - b, "middle"))
                        for b in range(0, m, size)]
                scores = {}
            if not o.keyframe_psnr or m == 1:
                return segs, refs
            if not refs:
                refs = self._references(frames, [k for _, _, k in segs])
            cut = self._first_low(frames, segs, refs, scores)
            if cut is None:
                return segs, refs
            m = cut

    def _first_low(self, frames: list[np.ndarray], segs: list[keyplan.Segment], refs: dict,
                   scores: dict[int, torch.Tensor]) -> int | None:
        """Where the window must end for no frame to be rebuilt below keyframe_psnr (None: nowhere): just
        after the first such frame if it comes before its keyframe, just before it if after."""
        o = self.opts
        for s, e, k in segs:
            p = scores[k][s:e] if k in scores else self._scores(frames, list(range(s, e)), {k: refs[k]})[k]
            cand = sorted((s + j for j in range(e - s) if s + j != k and p[j] < o.keyframe_psnr),
                          key=lambda j: abs(j - k))
            low = cand[:1]
            if cand and o.refine_steps:
                self.ref, low = refs[k][1], []
                for b in range(0, len(cand), o.batch):
                    js = cand[b:b + o.batch]
                    x = _to_tensor([frames[j] for j in js], self.device)
                    low = [j for j, bad in zip(js, self.below(x, self.tokens(x))) if bad]
                    if low:
                        break
            if low:
                return low[0] + 1 if low[0] < k else low[0]
        return None

@torch.no_grad()  # not inference_mode: token refinement needs autograd through the decoder
def encode_file(src: str, dst: str, opts: EncodeOptions, progress: Progress | None = None) -> EncodeResult:
    t0 = time.time()
    if opts.resize not in RESIZE_POLICIES:
        raise UserError(f"unknown resize policy {opts.resize!r}: use {', '.join(RESIZE_POLICIES)}")
    if opts.keyframe_codec not in bs.KEYFRAME_CODECS:
        raise UserError(f"unknown keyframe codec {opts.keyframe_codec!r}: use {', '.join(bs.KEYFRAME_CODECS)}")
    if opts.token_codec not in CODEC_IDS:
        raise UserError(f"unknown token codec {opts.token_codec!r}: use {', '.join(CODEC_IDS)}")
    if opts.keyframe_interval < 0 or not 0 <= opts.keyframe_quality <= 63:
        raise UserError("keyframe interval must be >= 0 and keyframe quality 0..63")
    if opts.keyframe_position not in KEYFRAME_POSITIONS:
        raise UserError(f"unknown keyframe position {opts.keyframe_position!r}: use "
                        f"{', '.join(KEYFRAME_POSITIONS)}")
    if opts.keyframe_position == "middle" and opts.keyframe_interval == 0:
        raise UserError("keyframes in the middle of segments need a keyframe interval; "
                        "with no limit, use keyframe position start")
    if not 1 <= opts.keyframe_candidates <= 64:
        raise UserError("keyframe candidates must be 1 to 64")
    if not 1 <= opts.plan_segments <= 16:
        raise UserError("plan segments must be 1 to 16")
    if not 0 <= opts.keyframe_psnr <= 100:
        raise UserError("keyframe PSNR threshold must be 0 (off) to 100 dB")
    if opts.refine_steps < 0:
        raise UserError("refine steps must be >= 0")
    if opts.keyframe_check not in ("every", "batch"):
        raise UserError(f"unknown keyframe check {opts.keyframe_check!r}: use every or batch")
    if opts.synthesis not in SYNTHESIS:
        raise UserError(f"unknown synthesis {opts.synthesis!r}: use {', '.join(SYNTHESIS)}")
    if opts.max_bpp < 0 or opts.target_bpp < 0:
        raise UserError("max bpp and target bpp must be >= 0")
    if opts.max_bpp and opts.target_bpp:
        raise UserError("give a rate cap (max bpp) or a rate target (target bpp), not both")
    if opts.cap_bpp and opts.keyframe_codec not in MAX_KEYFRAME_QUALITY:
        raise UserError(f"a rate cap or target needs a lossy keyframe codec ({', '.join(MAX_KEYFRAME_QUALITY)})")
    if _same_file(src, dst):
        raise UserError("output would overwrite the input")
    info = probe(src)
    device = pick_device(opts.device)
    lm = resolve_model(opts.weights, opts.dm, device, opts.allow_untrained)
    model, size = lm.model, lm.model.cfg.size
    dm = model.cfg.dm
    kw = {"rate": opts.zfp_rate} if opts.token_codec == "zfp" else \
        ({"qstep": opts.qstep} if opts.qstep is not None else {})
    try:
        coder = make_coder(opts.token_codec, dm, **kw)
    except (ValueError, OSError) as e:
        raise UserError(f"token codec: {e}") from None
    header = bs.Header(frames=0, fps=info.fps, src_width=info.width, src_height=info.height, width=size,
                       height=size, resize=RESIZE_POLICIES[opts.resize], dm=dm, model_id=lm.model_id,
                       keyframe_codec=bs.KEYFRAME_CODECS[opts.keyframe_codec],
                       keyframe_quality=opts.keyframe_quality, keyframe_interval=opts.keyframe_interval,
                       token_codec=CODEC_IDS[opts.token_codec], token_params=coder.params())
    expected = min(info.frames, opts.max_frames or info.frames)

    with atomic_output(dst) as tmp, open(tmp, "wb") as f:
        w = bs.Writer(f, bs.ADAPT_VERSION if opts.adapts else bs.VERSION)
        w.chunk(bs.HEAD, header.pack())
        enc = _Encoder(model, header, coder, w, opts, device,
                       (lambda k: progress(k, max(expected, k))) if progress else None, expected)
        frames = (to_model(img, size, size, opts.resize) for img in read_frames(src, max_frames=opts.max_frames))
        n = enc.stream(frames) if opts.keyframe_position == "start" else enc.segments(frames)
        header.frames = n
        w.rewrite_header(header)
        w.close()
        f.flush()
        total = f.tell()
    kept = enc.kept
    return EncodeResult(n, size, size, total, enc.bytes_key, enc.bytes_tok, time.time() - t0,
                        np.concatenate(kept) if kept else (np.zeros((0, dm), np.float32) if opts.keep_tokens
                                                           else None), enc.bytes_adapt)


def _parse_file(path: str) -> tuple[int, Iterator[bs.Chunk]]:
    if not os.path.isfile(path):
        raise UserError(f"input not found: {path}")
    size = os.path.getsize(path)
    f = open(path, "rb")

    def gen():
        with f:
            yield from bs.read_chunks(f, size)
    return size, gen()


class _Segments:
    """Walks the chunks of a file in order, checking that frame indices are contiguous and the header's."""

    def __init__(self, path: str):
        self.size, self.chunks = _parse_file(path)
        first = next(self.chunks)
        self.header = bs.Header.unpack(first.payload)
        h = self.header
        if h.resize not in RESIZE_POLICIES.values():
            raise BitstreamError(f"unknown resize policy id {h.resize} in the header")
        try:
            self.coder = coder_from_header(h.token_codec, h.dm, h.token_params)
        except (ValueError, OSError) as e:
            raise BitstreamError(f"header: {e}") from None

    def __iter__(self) -> Iterator[tuple[str, int, object]]:
        """Yields ('ref', index, rgb) when a keyframe arrives (it is the reference from then on), ('adapt',
        index, (scheme, offsets, step)) when decoder offsets do (for the frames from index on), and
        ('key', index, rgb) and ('tokens', first, array) in frame order. A segment's keyframe may come after
        frames it serves: its chunk comes first, and the frames before it follow as tokens."""
        h, nxt, have_key = self.header, 0, False
        key: tuple[int, np.ndarray] | None = None  # the current segment's keyframe, until its frame is reached
        for c in self.chunks:
            name = bs.chunk_name(c)
            if c.ctype == bs.HEAD:
                raise BitstreamError(f"corrupt {name}: a second header")
            if c.ctype == bs.END:
                break
            if c.ctype == bs.ADPT:
                if key is not None:
                    raise BitstreamError(f"corrupt {name}: decoder offsets before frame {key[0]}, the "
                                         f"keyframe, was reached")
                yield "adapt", nxt, adapt.unpack(c.payload)
                continue
            if c.ctype == bs.KEYF:
                idx, data = bs.unpack_keyframe(c.payload)
                if key is not None:
                    raise BitstreamError(f"corrupt {name}: a keyframe before frame {key[0]}, the previous "
                                         f"keyframe, was reached")
                if not nxt <= idx < h.frames:
                    raise BitstreamError(f"corrupt {name}: keyframe for frame {idx}, expected {nxt} to "
                                         f"{h.frames - 1}")
                img = keyframe.decode(data, h.keyframe_codec, h.width, h.height)
                self.coder.reset()
                have_key = True
                yield "ref", idx, img
                key = (idx, img)
            else:
                first, count, payload = bs.unpack_tokens(c.payload)
                if first != nxt or not have_key:
                    raise BitstreamError(f"corrupt {name}: tokens for frame {first}, expected {nxt}")
                if first + count > (key[0] if key else h.frames):
                    raise BitstreamError(f"corrupt {name}: tokens run past "
                                         f"{f'the keyframe at frame {key[0]}' if key else 'the last frame'}")
                try:
                    toks = self.coder.decode(payload, count)
                except ValueError as e:
                    raise BitstreamError(f"corrupt {name}: {e}") from None
                nxt += count
                yield "tokens", first, toks
            if key is not None and key[0] == nxt:
                yield "key", nxt, key[1]
                key, nxt = None, nxt + 1
        if nxt != h.frames:
            raise BitstreamError(f"the file holds {nxt} frames, its header says {h.frames}")


def decode_tokens(path: str) -> np.ndarray:
    """All tokens of a file in frame order (keyframe rows are NaN): what the decoder feeds the model."""
    seg = _Segments(path)
    rows = []
    for kind, _, val in seg:
        if kind in ("key", "tokens"):
            rows.append(np.full((1, seg.header.dm), np.nan, np.float32) if kind == "key" else val)
    return np.concatenate(rows) if rows else np.zeros((0, seg.header.dm), np.float32)


def repeat_keyframes(path: str) -> np.ndarray:
    """Every frame of a file as its segment's decoded keyframe (T, H, W, 3): what the keyframes alone give,
    the floor its tokens must beat. Needs no weights."""
    frames, img = [], None
    for kind, _, val in _Segments(path):
        if kind == "ref":
            img = val
        elif kind != "adapt":
            frames += [img] * (len(val) if kind == "tokens" else 1)
    return np.stack(frames)


@torch.inference_mode()
def decode_file(src: str, dst: str | None, opts: DecodeOptions, progress: Progress | None = None,
                keep_frames: bool = False) -> DecodeResult:
    """Decode src to dst (.mp4/.mkv/.y4m); with dst None only keep frames in memory (tests, metrics)."""
    t0 = time.time()
    if dst is not None and _same_file(src, dst):
        raise UserError("output would overwrite the input")
    if dst is not None and os.path.splitext(dst)[1].lower() not in (".mp4", ".mkv", ".y4m"):
        raise UserError(f"unsupported output extension {os.path.splitext(dst)[1] or '(none)'}: "
                        f"use .mp4, .mkv or .y4m")
    if opts.synthesis not in SYNTHESIS:
        raise UserError(f"unknown synthesis {opts.synthesis!r}: use {', '.join(SYNTHESIS)}")
    seg = _Segments(src)
    h = seg.header
    device = pick_device(opts.device)
    lm = resolve_model(opts.weights, h.dm, device, opts.allow_untrained)
    if lm.model_id != h.model_id:
        raise UserError(f"{src} was made with other weights (model id {h.model_id.hex()[:16]}…), "
                        f"not {os.path.basename(lm.path)} ({lm.model_id.hex()[:16]}…); pass the right --weights")
    model = lm.model
    if (model.cfg.size, model.cfg.size, model.cfg.dm) != (h.width, h.height, h.dm):
        raise UserError("the weights do not match the file's coded size or token size")
    policy = {v: k for k, v in RESIZE_POLICIES.items()}[h.resize]
    out_w, out_h = (source_size(h.src_width, h.src_height, h.width, h.height, policy) if opts.scale_to_source
                    else (h.width, h.height))
    result = DecodeResult(0, 0.0)
    synth = synthesis_for(model, opts.synthesis, device)

    def emit(images: list[np.ndarray], writer) -> None:
        for img in images:
            if opts.scale_to_source:
                img = to_source(img, out_w, out_h, policy)
            if writer:
                writer.write(img)
            if keep_frames:
                result.frames_rgb.append(img)
            result.frames += 1
        if progress:
            progress(result.frames, h.frames)

    def run(writer, adapter: adapt.Adapter) -> None:
        ref = None
        for kind, idx, val in seg:
            if kind == "ref":
                ref = model.reference(_to_tensor([val], device))
                continue
            if kind == "adapt":
                scheme, q, step = val
                if len(q) != adapt.count(model, scheme):
                    raise BitstreamError(f"decoder offsets for frame {idx} on: {len(q)} values, the weights "
                                         f"have {adapt.count(model, scheme)}")
                adapter.set(adapt.dequantize(q, step))
                continue
            if kind == "key":
                emit([val], writer)
                continue
            toks = torch.from_numpy(val)
            for i in range(0, len(toks), opts.batch):
                frames = synth.synthesize(toks[i:i + opts.batch].to(device), ref)
                emit(_to_images(frames), writer)

    with adapt.adaptable(model) as adapter:
        if dst is None:
            run(None, adapter)
        else:
            with atomic_output(dst) as tmp:
                with VideoWriter(tmp, out_w, out_h, h.fps, fmt_hint=os.path.splitext(dst)[1]) as writer:
                    run(writer, adapter)
    result.seconds = time.time() - t0
    return result


def read_info(path: str) -> dict:
    """Header fields and a size breakdown of a .imf file (every chunk CRC-checked)."""
    size, chunks = _parse_file(path)
    head = next(chunks)
    h = bs.Header.unpack(head.payload)
    with open(path, "rb") as f:
        version = f.read(6)[4:]
    kb = tb = ab = nkey = 0
    for c in chunks:
        if c.ctype == bs.ADPT:
            ab += len(c.payload)
        elif c.ctype == bs.KEYF:
            kb += len(c.payload) - 4
            nkey += 1
        elif c.ctype == bs.TOKN:
            tb += len(c.payload) - 6
    pix = max(1, h.frames * h.width * h.height)
    names = {v: k for k, v in CODEC_IDS.items()}
    knames = {v: k for k, v in bs.KEYFRAME_CODECS.items()}
    rnames = {v: k for k, v in RESIZE_POLICIES.items()}
    return {
        "frames": h.frames, "width": h.width, "height": h.height,
        "fps": float(h.fps), "fps_rational": f"{h.fps.numerator}/{h.fps.denominator}",
        "dm": h.dm, "token_codec": names.get(h.token_codec, f"unknown({h.token_codec})"),
        "bytes_total": size, "bytes_keyframe": kb, "bytes_tokens": tb, "bytes_adapt": ab,
        "bytes_container": size - kb - tb - ab,
        "bpp_total": size * 8 / pix, "bpp_tokens": tb * 8 / pix,
        "keyframes": nkey, "keyframe_codec": knames.get(h.keyframe_codec, f"unknown({h.keyframe_codec})"),
        "keyframe_quality": h.keyframe_quality, "keyframe_interval": h.keyframe_interval,
        "source_width": h.src_width, "source_height": h.src_height,
        "resize": rnames.get(h.resize, f"unknown({h.resize})"),
        "model_id": h.model_id.hex(), "version": ".".join(map(str, version)),
        "duration_s": float(h.frames / h.fps) if h.fps else 0.0,
        "kbps": size * 8 / 1000 / float(h.frames / h.fps) if h.frames else 0.0,
    }


__all__ = ["EncodeOptions", "DecodeOptions", "EncodeResult", "DecodeResult", "encode_file", "decode_file",
           "decode_tokens", "repeat_keyframes", "read_info"]
