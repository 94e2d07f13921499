"""The decoder pipeline: an .imf file -> frames, and what else can be read from a file without decoding it
(its tokens, its keyframes alone, its header and size breakdown).

Decode: chunks in frame order (reader) -> a reference per keyframe (E_F, t_r, keys, values: once per
keyframe) -> tokens -> frames synthesised in batches -> the output video, written whole or not at all.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from . import adapt
from . import bitstream as bs
from .errors import BitstreamError, UserError
from .fast import synthesis_for
from .files import atomic_output, refuse_overwrite
from .frames import to_images, to_tensor
from .model import IMF, Reference
from .options import DecodeOptions
from .pipes import Y4mWriter, is_pipe, output
from .reader import Segments, open_chunks
from .runtime import pick_device, resolve_model
from .video_io import RESIZE_POLICIES, VideoWriter, source_size, to_source
from entropy import CODEC_IDS, ZfpCoder, coder_from_header

Progress = Callable[[int, int], None]  # (frames done, frames expected or 0)
OUTPUT_EXTENSIONS = (".mp4", ".mkv", ".y4m")


@dataclass
class DecodeResult:
    frames: int
    seconds: float
    frames_rgb: list[np.ndarray] = field(default_factory=list)


def decode_tokens(path: str) -> np.ndarray:
    """All tokens of a file in frame order (keyframe and held frames' rows are NaN): what the decoder feeds
    the model."""
    seg = Segments(path)
    rows = []
    for kind, _, val in seg:
        if kind in ("key", "hold"):
            rows.append(np.full((1 if kind == "key" else val, seg.header.dm), np.nan, np.float32))
        elif kind == "tokens":
            rows.append(val)
    return np.concatenate(rows) if rows else np.zeros((0, seg.header.dm), np.float32)


def repeat_keyframes(path: str) -> np.ndarray:
    """Every frame of a file as its segment's decoded keyframe (T, H, W, 3): what the keyframes alone give,
    the floor its tokens must beat. Needs no weights."""
    frames, img = [], None
    for kind, _, val in Segments(path):
        if kind == "ref":
            img = val
        elif kind != "adapt":
            frames += [img] * (len(val) if kind == "tokens" else val if kind == "hold" else 1)
    return np.stack(frames)


def _model_for(src: str, h: bs.Header, opts: DecodeOptions) -> tuple[IMF, torch.device]:
    """The network that made src, on the device asked for; UserError when the weights are not it."""
    device = pick_device(opts.device)
    lm = resolve_model(opts.weights, h.dm, device, opts.allow_untrained, h.model_id)
    if lm.model_id[:len(h.model_id)] != h.model_id:
        raise UserError(f"{src} was made with other weights (model id {h.model_id.hex()[:16]}…), "
                        f"not {os.path.basename(lm.path)} ({lm.model_id.hex()[:16]}…), and no installed weights "
                        f"have its id: pass the weights it was made with (--weights)")
    model = lm.model
    if (model.cfg.size, model.cfg.size, model.cfg.dm) != (h.width, h.height, h.dm):
        raise UserError("the weights do not match the file's coded size or token size")
    return model, device


class _Ordered:
    """Emits frames in file order while up to `workers` batches synthesise at once, each on its own thread
    with one intra-op thread. Batches are independent given their reference, so they need no barrier: where
    one process's intra-op threads wait for each other whenever another process holds a core, workers only
    share the cores. Frames go out as soon as everything before them has (a live stream is not held back
    for the next batch), from whichever thread finished last, one at a time. With one worker every batch
    runs inline, as it always did."""

    def __init__(self, emit: Callable[[list[np.ndarray]], None], workers: int):
        self.emit, self.workers = emit, workers
        self.queue: deque = deque()  # futures, or frames ready to go, in file order
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.pool = None
        if workers > 1:
            self.pool = ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,))

    def put(self, images: list[np.ndarray]) -> None:
        """Frames that need no synthesis (keyframes, held frames): emitted after every batch before them."""
        if self.pool is None:
            self.emit(images)
            return
        with self.lock:
            self.queue.append(images)
        self._flush()

    def synthesize(self, synth, tokens: torch.Tensor, ref: Reference) -> None:
        if self.pool is None:
            self.emit(to_images(synth.synthesize(tokens, ref)))
            return
        job = self.pool.submit(_images, synth, tokens, ref)
        with self.lock:
            self.queue.append(job)
        job.add_done_callback(lambda _: self._flush())
        while len(running := self._running()) >= self.workers:
            wait(running, return_when=FIRST_COMPLETED)
        self._raise()

    def drain(self) -> None:
        """Emit everything queued (before the model's parameters change: decoder offsets)."""
        if self.pool is not None:
            wait(self._running())
            self._flush()
            self._raise()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _running(self) -> list[Future]:
        with self.lock:
            return [q for q in self.queue if isinstance(q, Future) and not q.done()]

    def _flush(self) -> None:
        """Emit the queue's head while it is ready; the first error stops everything and is raised in the
        decoding thread."""
        with self.lock:
            while self.queue and self.error is None:
                head = self.queue[0]
                if isinstance(head, Future) and not head.done():
                    return
                self.queue.popleft()
                try:
                    self.emit(head.result() if isinstance(head, Future) else head)
                except BaseException as e:  # noqa: BLE001 -- handed to the decoding thread
                    self.error = e

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


def _images(synth, tokens: torch.Tensor, ref: Reference) -> list[np.ndarray]:
    with torch.inference_mode():  # inference mode is per thread
        return to_images(synth.synthesize(tokens, ref))


def _synthesise(seg: Segments, model: IMF, device: torch.device, batch: int, adapter: adapt.Adapter,
                emit: Callable[[list[np.ndarray]], None], synthesis: str = "exact", workers: int = 1) -> None:
    """Every frame of seg, in order, to emit: keyframes as decoded, held frames as their keyframe, the others
    synthesised from tokens (by imfcodec.fast's path with synthesis "fast"), up to `workers` batches at once."""
    synth = synthesis_for(model, synthesis, device)
    ref = picture = None
    out = _Ordered(emit, workers if device.type == "cpu" else 1)
    try:
        for kind, idx, val in seg:
            if kind == "ref":
                ref, picture = model.reference(to_tensor([val], device)), val
            elif kind == "adapt":
                scheme, q, step = val
                if len(q) != adapt.count(model, scheme):
                    raise BitstreamError(f"decoder offsets for frame {idx} on: {len(q)} values, the weights "
                                         f"have {adapt.count(model, scheme)}")
                out.drain()
                adapter.set(adapt.dequantize(q, step))
            elif kind == "key":
                out.put([val])
            elif kind == "hold":
                out.put([picture] * val)
            else:
                toks = torch.from_numpy(val)
                for i in range(0, len(toks), batch):
                    out.synthesize(synth, toks[i:i + batch].to(device), ref)
        out.drain()
    finally:
        out.close()


@torch.inference_mode()
def decode_file(src: str, dst: str | None, opts: DecodeOptions, progress: Progress | None = None,
                keep_frames: bool = False) -> DecodeResult:
    """Decode src to dst (.mp4/.mkv/.y4m); with dst None only keep frames in memory (tests, metrics)."""
    t0 = time.time()
    pipe_out = dst is not None and is_pipe(dst)
    if dst is not None and not pipe_out:
        if not is_pipe(src):
            refuse_overwrite(src, dst)
        if os.path.splitext(dst)[1].lower() not in OUTPUT_EXTENSIONS:
            raise UserError(f"unsupported output extension {os.path.splitext(dst)[1] or '(none)'}: "
                            f"use .mp4, .mkv or .y4m")
    opts.validate()
    seg = Segments(src)
    h = seg.header
    model, device = _model_for(src, h, opts)
    policy = {v: k for k, v in RESIZE_POLICIES.items()}[h.resize]
    out_w, out_h = (source_size(h.src_width, h.src_height, h.width, h.height, policy) if opts.scale_to_source
                    else (h.width, h.height))
    result = DecodeResult(0, 0.0)
    writer = None

    def emit(images: list[np.ndarray]) -> None:
        for img in images:
            if opts.scale_to_source:
                img = to_source(img, out_w, out_h, policy)
            if writer:
                writer.write(img)
            if keep_frames:
                result.frames_rgb.append(img)
            result.frames += 1
        if progress:
            progress(result.frames, seg.frames or 0)

    with adapt.adaptable(model) as adapter:
        if dst is None:
            _synthesise(seg, model, device, opts.batch, adapter, emit, opts.synthesis, opts.workers)
        elif pipe_out:  # y4m, flushed frame by frame
            with output(dst) as f, Y4mWriter(f, out_w, out_h, h.fps) as writer:
                _synthesise(seg, model, device, opts.batch, adapter, emit, opts.synthesis, opts.workers)
        else:
            with atomic_output(dst) as tmp:
                with VideoWriter(tmp, out_w, out_h, h.fps, fmt_hint=os.path.splitext(dst)[1]) as writer:
                    _synthesise(seg, model, device, opts.batch, adapter, emit, opts.synthesis, opts.workers)
    result.seconds = time.time() - t0
    return result


def read_info(path: str) -> dict:
    """Header fields and a size breakdown of a .imf file (every chunk CRC-checked)."""
    size, chunks = open_chunks(path)
    head = next(chunks)
    h, version = bs.Header.unpack(head.payload, bs.compact(head.version)), head.version
    coded = {bs.KEYF: 0, bs.TOKN: 0, bs.ADPT: 0}
    nkey = total = 0
    for c in chunks:
        total = c.end
        if c.ctype in coded:
            coded[c.ctype] += bs.coded_size(c)
            nkey += c.ctype == bs.KEYF
        elif c.ctype == bs.END:
            end = bs.unpack_end(c.payload, version[0])
            if h.frames == bs.UNKNOWN_FRAMES:
                h.frames = end if end is not None else 0
    size = size if size is not None else total
    kb, tb, ab = coded[bs.KEYF], coded[bs.TOKN], coded[bs.ADPT]
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
        **_token_setting(h),
    }


def _token_setting(h: bs.Header) -> dict:
    """The token coder's setting the header stores: ZFP's rate or the predictive coder's step."""
    if h.token_codec not in (CODEC_IDS["zfp"], CODEC_IDS["predictive"]):
        return {}
    try:
        c = coder_from_header(h.token_codec, h.dm, h.token_params)
    except ValueError:
        return {}
    return {"token_rate": c.rate} if isinstance(c, ZfpCoder) else {"token_qstep": c.qstep}
