"""Golden files: fixed clips encoded with fixed options give the same bytes, and decode to the same frames.

The hashes pin the bitstream: a refactor that changes a single byte of an encode, or a pixel of a decode,
fails here. The tiny network is a committed file (tests/golden/tiny.safetensors) so that its identity in
the header does not depend on how the config serialises. The .imf hashes hold for any number of torch
threads; the shipped network's decoded frames are float sums whose last bit depends on the thread count, so
these tests run on one thread. Changing an .imf hash is a format change.
"""
from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from imfcodec.codec import DecodeOptions, EncodeOptions, decode_file, encode_file
from imfcodec.video_io import VideoWriter, read_frames, to_model

from tests.conftest import SHARED, make_clip

TINY_WEIGHTS = Path(__file__).parent / "golden" / "tiny.safetensors"

#: name: (options, SHA-256 of the .imf, SHA-256 of the decoded frames), on the 12-frame test clip.
TINY_CASES = {
    "segments": (dict(keyframe_interval=5, refine_steps=2, adapt_steps=2, keyframe_psnr=0),
                 "3a73d35898a44dabd941019ff571cbd03da20853a2b23b4baaf170f766cde469",
                 "9d8de338bf11bc0f1fdc9d9ed5769f272a2a7141002cae85197f827b0ffeb4cd"),
    "segments-cap": (dict(keyframe_interval=5, refine_steps=1, adapt_steps=1, keyframe_psnr=0, max_bpp=0.12),
                     "f3de2085c40ebc6fd1bc373e5681e269301fb0def1f0c10dae20634ff64c3030",
                     "a1d3ac2166fb0073282c5b9c99fdced56dab217a54b7799176f456fa5eb82305"),
    "segments-target": (dict(keyframe_interval=5, refine_steps=2, adapt_steps=2, keyframe_psnr=0, target_bpp=0.5,
                             keyframe_codec="hevc", keyframe_quality=30),
                        "636175a73d27c4af3a01505e9f0938df656bb29cb741f6d1b63c19cde8b94b87",
                        "1a50862f442a02473ba166a6c52256e88e7153be4036e44e4f18e0b848ddbb49"),
    "stream-cap": (dict(keyframe_interval=5, keyframe_position="start", refine_steps=2, keyframe_psnr=0,
                        max_bpp=0.12, keyframe_codec="hevc", keyframe_quality=30),
                   "a1846303001251aaf51d2fc44139cdf1fed1e723cad47e722591f369fa7dafc2",
                   "19973ade43f899d1f58a7a24ec5bb47a03cf99a7218a5361c396e2726f6592d5"),
    "stream-psnr": (dict(keyframe_interval=0, keyframe_position="start", refine_steps=1, keyframe_psnr=9),
                    "10d0e12cecff7edf59eb1e9685d8b2717290c98a5d60cae9f38c8df8da314eae",
                    "0396349260fafc34f12518e39d3071bf043beda8a1976d06e146422d726013a1"),
}

#: The shipped weights on six frames of an eval clip, with the fast options.
SHIPPED_CASES = {
    "shipped-zfp": (dict(refine_steps=0, adapt_steps=0),
                    "cb229f905d74d6b2b3a06014e17d534f154191e941227375a04a0d49c77d4d0b",
                    "22df252d476a0323bc32886f15d25b914cca61c1476cdaaeb26e6ed960c6dc76"),
    "shipped-learned": (dict(refine_steps=0, adapt_steps=0, token_codec="learned", keyframe_interval=3),
                        "8d22f94787df824fc3bc234223ddb3b9f5968194dd418e510e32aa10da238f11",
                        "7ebafbf3cd355295912294d2a11094048f26356b6bae49fee75bf6181dbaed81"),
}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def raw_clip(tmp_path_factory) -> Path:
    """The test clip as raw frames (y4m), so no lossy source codec sits between runs."""
    return make_clip(tmp_path_factory.mktemp("golden") / "clip.y4m")


@pytest.fixture(scope="module")
def eval_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("golden") / "eval.y4m"
    with VideoWriter(str(path), 256, 256, Fraction(25)) as w:
        for f in read_frames(str(SHARED / "data" / "eval" / "lia-vox-driving2.mp4"), max_frames=6):
            w.write(to_model(f, 256, 256, "crop"))
    return path


def check(src: Path, out: Path, enc: EncodeOptions, dec: DecodeOptions, imf_sha: str, frames_sha: str) -> None:
    encode_file(str(src), str(out), enc)
    assert sha256(out.read_bytes()) == imf_sha
    frames = decode_file(str(out), None, dec, keep_frames=True).frames_rgb
    assert sha256(np.stack(frames).tobytes()) == frames_sha


@pytest.mark.parametrize("name", TINY_CASES)
def test_tiny_network_bytes_are_golden(name, raw_clip, tmp_path):
    kw, imf_sha, frames_sha = TINY_CASES[name]
    w = str(TINY_WEIGHTS)
    check(raw_clip, tmp_path / f"{name}.imf", EncodeOptions(weights=w, allow_untrained=True, chunk_frames=4, **kw),
          DecodeOptions(weights=w, allow_untrained=True), imf_sha, frames_sha)


@pytest.mark.parametrize("name", SHIPPED_CASES)
def test_shipped_weights_bytes_are_golden(name, eval_clip, tmp_path):
    kw, imf_sha, frames_sha = SHIPPED_CASES[name]
    check(eval_clip, tmp_path / f"{name}.imf", EncodeOptions(**kw), DecodeOptions(), imf_sha, frames_sha)
