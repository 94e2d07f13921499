"""Golden files: fixed clips encoded with fixed options give the same bytes, and decode to the same frames.

The hashes pin the bitstream: a refactor that changes a single byte of an encode, or a pixel of a decode,
fails here. The tiny network is a committed file (tests/golden/tiny.safetensors) so that its identity in
the header does not depend on how the config serialises. The .imf hashes hold for any number of torch
threads; the shipped network's decoded frames are float sums whose last bit depends on the thread count, so
these tests run on one thread. The decoded frames' last bits also depend on the CPU's vector instructions
(oneDNN picks other kernels on AVX2 than on AVX-512, and on an Intel AVX-512 CPU than on an AMD one):
where they differ, the frames' hash is given per `torch.backends.cpu.get_cpu_capability()` and CPU vendor,
and on a CPU with none recorded only the .imf is checked (the bits that drive entropy decoding are the
same everywhere). Changing an .imf hash is a format change.
"""
from __future__ import annotations

import hashlib
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from imfcodec.codec import DecodeOptions, EncodeOptions, decode_file, encode_file
from imfcodec.model.weights import shipped_path
from imfcodec.video_io import VideoWriter, read_frames, to_model

from tests.conftest import SHARED, make_clip, reframe

TINY_WEIGHTS = Path(__file__).parent / "golden" / "tiny.safetensors"

#: name: (options, SHA-256 of the .imf, SHA-256 of the decoded frames: one for every CPU, or one per CPU
#: capability), on the 12-frame test clip.
TINY_CASES = {
    "segments": (dict(keyframe_interval=5, refine_steps=2, adapt_steps=2, keyframe_psnr=0),
                 "e4b6a0daf7de4f8867d6ff1983cdba1acd47cd86f7ff23fdb6966cf456a6ce81",
                 "9d8de338bf11bc0f1fdc9d9ed5769f272a2a7141002cae85197f827b0ffeb4cd"),
    "segments-cap": (dict(keyframe_interval=5, refine_steps=1, adapt_steps=1, keyframe_psnr=0, max_bpp=0.12),
                     "e5189c5351bbaabf5755ba2a3758245de5ffeb26cc7af5e9641d971eb55ed2b0",
                     "7fa0d27b6b84c2b512a650469b0b1f9f606623b1a05d754d0d25962d687bd463"),
    "segments-target": (dict(keyframe_interval=5, refine_steps=2, adapt_steps=2, keyframe_psnr=0, target_bpp=0.5,
                             keyframe_codec="hevc", keyframe_quality=30),
                        "db4acaa2362d8f8441d5f38e5f3352405806d603d23882f9d25a79ef33742818",
                        "1a50862f442a02473ba166a6c52256e88e7153be4036e44e4f18e0b848ddbb49"),
    "stream-cap": (dict(keyframe_interval=5, keyframe_position="start", refine_steps=2, keyframe_psnr=0,
                        max_bpp=0.12, keyframe_codec="hevc", keyframe_quality=30),
                   "337002fde88eb619f29a47c71120995824e55b9e10087ed65f121c38038527d8",
                   {"AVX512 AuthenticAMD": "a6de84af77e3957af156e9942aaa55c69ae6003544e200c50593239fb6e8c26d",
                    "AVX512 GenuineIntel": "a6de84af77e3957af156e9942aaa55c69ae6003544e200c50593239fb6e8c26d",
                    "AVX2 AuthenticAMD": "28aaf2c7c55b2bfe65e496f0b1c3a13b1c528f11dd5bce3cfeedb312e03db72d"}),
    "stream-psnr": (dict(keyframe_interval=0, keyframe_position="start", refine_steps=1, keyframe_psnr=9),
                    "146b009c74b389ebd741e912c8bf97c0ab807d450c4c9a21460771183fcb8a1a",
                    "0396349260fafc34f12518e39d3071bf043beda8a1976d06e146422d726013a1"),
}

#: name: (major version, SHA-256 of the .imf) as the 6.x encoder wrote it, for the cases whose coding
#: decisions do not depend on the container's size (no rate cap or target spent by it): the 7.0 file,
#: framed again as that version, must be that file byte for byte, so 7.0 changed the framing and nothing
#: it frames. (A cap or target counts the framing's bytes, so its decisions moved with 7.0.)
LEGACY = {
    "segments": (3, "3a73d35898a44dabd941019ff571cbd03da20853a2b23b4baaf170f766cde469"),
    "segments-target": (3, "636175a73d27c4af3a01505e9f0938df656bb29cb741f6d1b63c19cde8b94b87"),
    "stream-psnr": (2, "10d0e12cecff7edf59eb1e9685d8b2717290c98a5d60cae9f38c8df8da314eae"),
    "shipped-zfp": (2, "cb229f905d74d6b2b3a06014e17d534f154191e941227375a04a0d49c77d4d0b"),
    "shipped-learned": (2, "8d22f94787df824fc3bc234223ddb3b9f5968194dd418e510e32aa10da238f11"),
}

#: The shipped weights on six frames of an eval clip, with the fast options.
SHIPPED_CASES = {
    "shipped-zfp": (dict(refine_steps=0, adapt_steps=0),
                    "2719d01d1d05541e8916c230d5f96993d24156ccf21f802026237ff131f41c09",
                    {"AVX512 AuthenticAMD": "22df252d476a0323bc32886f15d25b914cca61c1476cdaaeb26e6ed960c6dc76",
                     "AVX512 GenuineIntel": "6b180d36763a40793587ed1f31984696473478cec18597bcc7de54052936bdbd",
                     "AVX2 AuthenticAMD": "10ececf71ce19cc0ebd044a455197bce4c3ac747236085be7a94ccd5672a19f1"}),
    "shipped-learned": (dict(refine_steps=0, adapt_steps=0, token_codec="learned", keyframe_interval=3),
                        "a5e36eb25631757d5aca9600af7efed628e4904a5399bcd44e2bd170816ed802",
                        {"AVX512 AuthenticAMD": "7ebafbf3cd355295912294d2a11094048f26356b6bae49fee75bf6181dbaed81",
                         "AVX512 GenuineIntel": "ccee898ead758aba91d4eb6b9e323d7b9019feb609eab9a380aefca16e233fb4",
                         "AVX2 AuthenticAMD": "dc9ea015c88193db793f9d18401e39db505afeebd6c84aab25e7bc7b9f35498a"}),
}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cpu_kind() -> str:
    """The vector instructions torch's CPU kernels use, and the CPU's vendor: oneDNN's kernels differ by both."""
    vendor = ""
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            vendor = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("vendor_id")), "")
    return f"{torch.backends.cpu.get_cpu_capability()} {vendor}".strip()


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


def check(src: Path, out: Path, enc: EncodeOptions, dec: DecodeOptions, imf_sha: str,
          frames_sha: str | dict[str, str], legacy: tuple[int, str] | None, weights: Path) -> None:
    encode_file(str(src), str(out), enc)
    assert sha256(out.read_bytes()) == imf_sha
    if legacy:
        assert sha256(reframe(out.read_bytes(), legacy[0], weights)) == legacy[1]
    frames = decode_file(str(out), None, dec, keep_frames=True).frames_rgb
    if isinstance(frames_sha, dict):
        cpu = cpu_kind()
        if cpu not in frames_sha:
            pytest.skip(f"the .imf matches; no decoded-frames hash recorded for a {cpu} CPU")
        frames_sha = frames_sha[cpu]
    assert sha256(np.stack(frames).tobytes()) == frames_sha


@pytest.mark.parametrize("name", TINY_CASES)
def test_tiny_network_bytes_are_golden(name, raw_clip, tmp_path):
    kw, imf_sha, frames_sha = TINY_CASES[name]
    w = str(TINY_WEIGHTS)
    check(raw_clip, tmp_path / f"{name}.imf", EncodeOptions(weights=w, allow_untrained=True, chunk_frames=4, **kw),
          DecodeOptions(weights=w, allow_untrained=True), imf_sha, frames_sha, LEGACY.get(name), TINY_WEIGHTS)


@pytest.mark.parametrize("name", SHIPPED_CASES)
def test_shipped_weights_bytes_are_golden(name, eval_clip, tmp_path):
    kw, imf_sha, frames_sha = SHIPPED_CASES[name]
    check(eval_clip, tmp_path / f"{name}.imf", EncodeOptions(**kw), DecodeOptions(), imf_sha, frames_sha,
          LEGACY.get(name), Path(shipped_path(32, 256)))
