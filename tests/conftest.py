"""Shared fixtures and helpers: a tiny network with a fixed seed, short synthetic clips, the ../shared
folder, encodes with the tiny network, and running the CLI."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from imfcodec import bitstream as bs
from imfcodec.reader import Segments
from imfcodec.codec import DecodeOptions, EncodeOptions, encode_file
from imfcodec.model import IMF, TINY
from imfcodec.model.weights import file_id, save_weights
from imfcodec.video_io import VideoWriter, read_frames, to_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

torch.set_num_threads(2)


def make_clip(path: Path, frames: int = 12, w: int = 80, h: int = 60, fps=Fraction(30000, 1001)) -> Path:
    """A moving white square over a colour ramp."""
    with VideoWriter(str(path), w, h, fps) as out:
        for t in range(frames):
            img = np.zeros((h, w, 3), np.uint8)
            img[:, :, 0] = np.linspace(0, 255, w)[None]
            img[:, :, 2] = np.linspace(255, 0, h)[:, None]
            img[8 + t:28 + t, 20 + t:40 + t] = 255
            out.write(img)
    return path


def tiny_weights(path: Path, seed: int = 0, steps: int = 0) -> Path:
    torch.manual_seed(seed)
    save_weights(IMF(TINY), str(path), steps=steps)
    return path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("w") / "tiny.safetensors")


@pytest.fixture(scope="session")
def other_tiny(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("w2") / "other.safetensors", seed=1)


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


# ---- encoding with the tiny network, and the CLI ------------------------------------------------

def enc_opts(tiny, **kw) -> EncodeOptions:
    """The untrained tiny network rebuilds frames as noise: keyframes only where a test asks for them, and in
    the middle of their segments (no search among candidates), and no decoder adaptation (tests/test_adapt.py)."""
    kw.setdefault("keyframe_psnr", 0)
    kw.setdefault("adapt_steps", 0)
    kw.setdefault("keyframe_candidates", 1)
    return EncodeOptions(weights=str(tiny), allow_untrained=True, chunk_frames=4, **kw)


def dec_opts(tiny, **kw) -> DecodeOptions:
    return DecodeOptions(weights=str(tiny), allow_untrained=True, **kw)


@pytest.fixture(scope="session")
def encoded(tmp_path_factory, clip, tiny):
    """The test clip encoded with enc_opts, tokens kept: (path, EncodeResult)."""
    out = tmp_path_factory.mktemp("enc") / "a.imf"
    r = encode_file(str(clip), str(out), enc_opts(tiny, keep_tokens=True))
    return out, r


def keyframe_indices(path) -> list[int]:
    """The frames a file's keyframe chunks code, in frame order."""
    return [i for kind, i, _ in Segments(str(path)) if kind == "key"]


def eval_frames(*names_and_counts) -> list[np.ndarray]:
    """The first frames of eval clips at the model size, in the order given: ("clip", count), ..."""
    return [to_model(f, 256, 256, "crop") for name, count in names_and_counts
            for f in read_frames(str(SHARED / "data" / "eval" / f"{name}.mp4"), max_frames=count)]


def write_clip(path, frames) -> str:
    with VideoWriter(str(path), 256, 256, Fraction(25)) as w:
        for f in frames:
            w.write(f)
    return str(path)


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": os.getcwd()})


def assert_one_line_error(p) -> str:
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, p.stderr
    return lines[0]


def no_leftovers(folder) -> list[str]:
    return [f for f in os.listdir(folder) if f.startswith(".imfcodec-") or f.endswith(".part")]


def reframe(data: bytes, major: int, weights: Path | None = None) -> bytes:
    """An .imf file's chunks written again as a major.0 file: in that version's framing and field encodings
    (7.x's, or the 4-byte types, CRC-32 and fixed-width fields before it), the chunks themselves unchanged.
    A 7.x header's short model id becomes the full one of weights for an older version."""
    src, dst = bs.compact((data[4], data[5])), (major, 0)
    f = io.BytesIO()
    w = bs.Writer(f, dst)
    nxt, key = 0, None  # the next frame and the keyframe not yet reached, as a reader tracks them
    for c in bs.read_chunks(io.BytesIO(data), len(data)):
        p = c.payload
        if c.ctype == bs.HEAD:
            h = bs.Header.unpack(p, src)
            if weights is not None:
                h.model_id = file_id(str(weights))
            p = h.pack(w.compact)
        elif c.ctype == bs.KEYF:
            key, img = bs.unpack_keyframe(p, src)
            p = bs.pack_keyframe(key, img, w.compact)
        elif c.ctype in (bs.TOKN, bs.HOLD):
            first, n, *rest = (bs.unpack_tokens if c.ctype == bs.TOKN else bs.unpack_hold)(p, src, nxt)
            p = bs.pack_tokens(first, n, rest[0], w.compact) if c.ctype == bs.TOKN else \
                bs.pack_hold(first, n, w.compact)
            nxt = first + n
        elif c.ctype == bs.END:
            w.close(bs.unpack_end(p, c.version[0]) or 0)
            break
        w.chunk(c.ctype, p)
        if key == nxt:
            key, nxt = None, nxt + 1
    return f.getvalue()


def with_version(src: Path, dst: Path, major: int, weights: Path | None = None) -> Path:
    """A copy of the .imf at src, re-framed (reframe) as a major.0 file."""
    dst.write_bytes(reframe(Path(src).read_bytes(), major, weights))
    return dst


def claims_version(src: Path, dst: Path, major: int) -> Path:
    """A copy of the .imf at src whose header claims bitstream version major.0 (nothing else changed)."""
    data = bytearray(Path(src).read_bytes())
    data[4] = major
    dst.write_bytes(bytes(data))
    return dst
