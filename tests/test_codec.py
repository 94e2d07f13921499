"""Encode -> decode with the tiny network, and every user error of the CLI."""
import functools
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction

import numpy as np
import pytest

from imfcodec.codec import (DecodeOptions, EncodeOptions, decode_file, decode_tokens, encode_file, read_info,
                            repeat_keyframes)
from imfcodec.errors import BitstreamError, UserError
from imfcodec.options import parse_bitrate
from imfcodec.video_io import probe, read_frames

from tests.conftest import SHARED, make_clip


def enc_opts(tiny, **kw):
    """The untrained tiny network rebuilds frames as noise: keyframes only where a test asks for them, and in
    the middle of their segments (no search among candidates), and no decoder adaptation (tests/test_adapt.py)."""
    kw.setdefault("keyframe_psnr", 0)
    kw.setdefault("adapt_steps", 0)
    kw.setdefault("keyframe_candidates", 1)
    return EncodeOptions(weights=str(tiny), allow_untrained=True, chunk_frames=4, **kw)


def dec_opts(tiny, **kw):
    return DecodeOptions(weights=str(tiny), allow_untrained=True, **kw)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, clip, tiny):
    out = tmp_path_factory.mktemp("enc") / "a.imf"
    r = encode_file(str(clip), str(out), enc_opts(tiny, keep_tokens=True))
    return out, r


def test_encode_decode_keeps_count_rate_size(tmp_path, encoded, tiny):
    imf, r = encoded
    assert r.frames == 12 and r.bytes_total == os.path.getsize(imf)
    for ext in (".mp4", ".mkv", ".y4m"):
        out = tmp_path / f"rec{ext}"
        decode_file(str(imf), str(out), dec_opts(tiny))
        frames = list(read_frames(str(out)))
        assert len(frames) == 12
        assert frames[0].shape == (64, 64, 3)
        assert probe(str(out)).fps == Fraction(30000, 1001)
    out = tmp_path / "src.mp4"
    decode_file(str(imf), str(out), dec_opts(tiny, scale_to_source=True))
    assert list(read_frames(str(out)))[0].shape == (60, 60, 3)  # default --resize crop: the coded box


def test_decoder_tokens_equal_encoder_dequantized_tokens(encoded):
    imf, r = encoded
    dec = decode_tokens(str(imf))
    key = np.isnan(dec).all(1)
    assert key.nonzero()[0].tolist() == [5]  # one segment of 12 frames, its keyframe in the middle
    assert dec[~key].tobytes() == r.tokens.tobytes()


def test_decoded_frames_use_cached_reference(encoded, tiny):
    """The codec path (reference cached once, tokens batched) equals the plain forward pass."""
    import torch
    from imfcodec.model.weights import load_weights
    imf, r = encoded
    res = decode_file(str(imf), None, dec_opts(tiny, batch=3), keep_frames=True)
    lm = load_weights(str(tiny))
    key = torch.from_numpy(res.frames_rgb[5]).permute(2, 0, 1)[None].float() / 255  # the middle keyframe
    with torch.no_grad():
        ref = lm.model.reference(key)
        direct = lm.model.synthesize(torch.from_numpy(r.tokens[:3]), ref)
    got = np.stack(res.frames_rgb[0:3]).astype(np.float32) / 255
    want = direct.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert np.abs(got - want).max() <= 1 / 255 + 1e-6


def test_keyframe_interval_restarts_segments(tmp_path, clip, tiny):
    out = tmp_path / "k.imf"
    encode_file(str(clip), str(out), enc_opts(tiny, keyframe_interval=5))
    info = read_info(str(out))
    assert info["keyframes"] == 3 and info["frames"] == 12
    assert len(decode_file(str(out), None, dec_opts(tiny), keep_frames=True).frames_rgb) == 12
    assert keyframe_indices(out) == [2, 7, 10]  # segments 0-4, 5-9, 10-11, each keyed in its middle
    frames = decode_file(str(out), None, dec_opts(tiny), keep_frames=True).frames_rgb
    floor = repeat_keyframes(str(out))  # each segment's decoded keyframe over the segment
    assert floor.shape == (12, *frames[0].shape)
    for k, seg in ((2, range(0, 5)), (7, range(5, 10)), (10, range(10, 12))):
        assert all(np.array_equal(floor[i], frames[k]) for i in seg)
    encode_file(str(clip), str(out), enc_opts(tiny, keyframe_interval=5, keyframe_position="start"))
    assert keyframe_indices(out) == [0, 5, 10]


@pytest.fixture
def rate_run(tmp_path, clip, tiny):
    """Encode the clip in segments of 5 frames without refinement: (result, the file's bytes)."""
    def run(name, position, **kw):
        out = tmp_path / name
        r = encode_file(str(clip), str(out), enc_opts(tiny, keyframe_interval=5, keyframe_position=position,
                                                      refine_steps=0, **kw))
        return r, out.read_bytes()
    return run


@pytest.mark.parametrize("position", ["middle", "start"])
def test_rate_cap_raises_keyframe_crf_only_when_needed(rate_run, position):
    run = functools.partial(rate_run, position=position)
    (free, data), (smallest, _) = run("free.imf"), run("q63.imf", keyframe_quality=63)
    assert run("loose.imf", max_bpp=free.bpp_total * 1.05)[1] == data  # a cap that does not bind changes nothing
    cap = (free.bpp_total + smallest.bpp_total) / 2
    capped, _ = run("capped.imf", max_bpp=cap)
    assert capped.bpp_total <= cap and capped.bytes_tokens == free.bytes_tokens
    assert free.bytes_keyframe > capped.bytes_keyframe > smallest.bytes_keyframe
    hopeless, _ = run("hopeless.imf", max_bpp=smallest.bpp_total / 2)  # beyond reach: the codec's smallest
    assert hopeless.bytes_keyframe == smallest.bytes_keyframe


@pytest.mark.parametrize("position", ["middle", "start"])
def test_rate_target_spends_the_rate_on_keyframes(rate_run, position):
    run = functools.partial(rate_run, position=position)
    (free, _), (best, _) = run("free.imf"), run("q0.imf", keyframe_quality=0)
    target = (free.bpp_total + best.bpp_total) / 2
    spent, _ = run("target.imf", target_bpp=target)
    assert spent.bpp_total <= target and spent.bytes_tokens == free.bytes_tokens
    assert best.bytes_keyframe > spent.bytes_keyframe > free.bytes_keyframe  # a lower CRF than the default
    below = free.bpp_total * 0.95  # less than the default CRF's rate: still within it
    assert run("below.imf", target_bpp=below)[0].bpp_total <= below


def test_bitrate_is_a_rate_target_within_budget(rate_run, clip):
    """--bitrate is --target-bpp at bitrate / (fps x coded pixels): files at three bitrates, from near the
    smallest the keyframe codec allows to above the default's, each stay within bitrate x duration."""
    run = functools.partial(rate_run, position="middle")
    (free, _), (smallest, _) = run("free.imf"), run("q63.imf", keyframe_quality=63)
    fps, pix = float(probe(str(clip)).fps), free.width * free.height
    keys = []
    for k, bpp in enumerate(np.linspace(smallest.bpp_total * 1.1, free.bpp_total * 1.2, 3)):
        bitrate = round(bpp * fps * pix)
        r, data = run(f"b{k}.imf", bitrate=float(bitrate))
        assert r.bytes_total * 8 <= bitrate * r.frames / fps
        keys.append(r.bytes_keyframe)
        if k == 1:
            assert run("bpp.imf", target_bpp=bitrate / (fps * pix))[1] == data
    assert keys == sorted(set(keys))  # each higher bitrate buys better keyframes


def test_bitrate_parsing_and_errors(tmp_path, clip, tiny):
    assert [parse_bitrate(v) for v in ("4000", "4k", "4.5k", "4.5K", " 2M")] == [4000, 4000, 4500, 4500, 2e6]
    for bad in ("", "abc", "-4k", "0", "0k", "inf", "nan", "4kk", "4 k", "1e400", "9" * 400):
        with pytest.raises(UserError, match="bitrate must be"):
            parse_bitrate(bad)
    line = assert_one_line_error(cli("encode", clip, "-o", tmp_path / "p.imf", "--weights", tiny,
                                     "--allow-untrained", "--bitrate", "fast"))
    assert "bitrate must be" in line and "'fast'" in line
    line = assert_one_line_error(cli("encode", clip, "-o", tmp_path / "p.imf", "--weights", tiny,
                                     "--allow-untrained", "--bitrate", "4k", "--target-bpp", "0.1"))
    assert "not two" in line and not (tmp_path / "p.imf").exists()
    with pytest.raises(UserError, match="lossy keyframe codec"):
        encode_file(str(clip), str(tmp_path / "p.imf"), enc_opts(tiny, keyframe_codec="png", bitrate=4000.0))


def test_rate_cap_and_target_exclude_each_other(tmp_path, clip, tiny):
    line = assert_one_line_error(cli("encode", clip, "-o", tmp_path / "p.imf", "--weights", tiny,
                                     "--allow-untrained", "--max-bpp", "0.1", "--target-bpp", "0.1"))
    assert "not both" in line and not (tmp_path / "p.imf").exists()
    with pytest.raises(UserError, match="lossy keyframe codec"):
        encode_file(str(clip), str(tmp_path / "p.imf"), enc_opts(tiny, keyframe_codec="png", target_bpp=0.1))


def test_rate_cap_needs_a_lossy_keyframe_codec(tmp_path, clip, tiny):
    with pytest.raises(UserError, match="lossy keyframe codec"):
        encode_file(str(clip), str(tmp_path / "p.imf"), enc_opts(tiny, keyframe_codec="png", max_bpp=0.1))


def keyframe_indices(path):
    """decode_tokens marks keyframes with NaN rows."""
    return np.flatnonzero(np.isnan(decode_tokens(str(path))[:, 0])).tolist()


def test_keyframe_psnr_threshold_decides_keyframes(tmp_path, clip, tiny):
    """Every frame is rebuilt below 100 dB, so each becomes a keyframe; none is rebuilt below 1 dB."""
    for psnr, keys in ((100, list(range(12))), (1, [5])):
        out = tmp_path / f"p{psnr}.imf"
        r = encode_file(str(clip), str(out), enc_opts(tiny, keyframe_psnr=psnr, refine_steps=2, keep_tokens=True))
        assert keyframe_indices(out) == keys
        assert read_info(str(out))["frames"] == 12 and len(r.tokens) == 12 - len(keys)
        assert len(decode_file(str(out), None, dec_opts(tiny), keep_frames=True).frames_rgb) == 12


def eval_frames(*names_and_counts) -> list[np.ndarray]:
    """The first frames of eval clips at the model size, in the order given: ("clip", count), ..."""
    from imfcodec.video_io import to_model
    return [to_model(f, 256, 256, "crop") for name, count in names_and_counts
            for f in read_frames(str(SHARED / "data" / "eval" / f"{name}.mp4"), max_frames=count)]


def write_clip(path, frames) -> str:
    from imfcodec.video_io import VideoWriter
    with VideoWriter(str(path), 256, 256, Fraction(25)) as w:
        for f in frames:
            w.write(f)
    return str(path)


def test_scene_cut_starts_a_keyframe(tmp_path):
    """Six frames of one eval clip, then six of another: with the shipped weights, the cut ends the first
    segment, so each scene gets its own keyframe; without the threshold, one keyframe serves all twelve
    frames. With keyframes at segment starts (low delay) the frame after the cut is the keyframe."""
    src = write_clip(tmp_path / "cut.y4m", eval_frames(("lia-vox-driving2", 6), ("videoretalking-face-3", 6)))
    out = tmp_path / "cut.imf"
    encode_file(src, str(out), EncodeOptions(refine_steps=0, adapt_steps=0, keyframe_psnr=14))
    keys = keyframe_indices(out)
    assert len(keys) == 2 and keys[0] < 6 <= keys[1]
    encode_file(src, str(out), EncodeOptions(refine_steps=0, adapt_steps=0, keyframe_psnr=14, keyframe_candidates=1))
    assert keyframe_indices(out) == [2, 8]  # the middles of the two scenes
    encode_file(src, str(out), EncodeOptions(refine_steps=0, adapt_steps=0, keyframe_psnr=0, keyframe_candidates=1))
    assert keyframe_indices(out) == [5]
    encode_file(src, str(out), EncodeOptions(refine_steps=0, adapt_steps=0, keyframe_psnr=14, keyframe_position="start"))
    assert keyframe_indices(out) == [0, 6]


def test_keyframe_search_avoids_an_odd_middle_frame(tmp_path):
    """Eleven copies of one picture with another in the middle: the middle frame would be a poor reference
    for the rest, and the search among candidates near the middle takes one of the copies instead."""
    a, b = eval_frames(("lia-vox-driving2", 1), ("videoretalking-face-3", 1))
    src = write_clip(tmp_path / "odd.y4m", [a] * 5 + [b] + [a] * 6)
    out = tmp_path / "odd.imf"
    encode_file(src, str(out), EncodeOptions(refine_steps=0, adapt_steps=0, keyframe_psnr=0, keyframe_candidates=1))
    assert keyframe_indices(out) == [5]
    encode_file(src, str(out), EncodeOptions(refine_steps=0, adapt_steps=0, keyframe_psnr=0))
    (k,) = keyframe_indices(out)
    assert k != 5 and 3 <= k <= 7  # five candidates, 3..7, around the middle of 12 frames


def test_joint_plan_puts_boundaries_at_scene_changes(tmp_path):
    """Two, six and four frames of three pictures, planned as one window of three 4-frame segments: the
    keyframes and boundaries chosen together give each picture a keyframe of its own, where fixed 4-frame
    segments would key frames 0-3 with one picture and rebuild the other from it."""
    a, b, c = eval_frames(("lia-vox-driving2", 1), ("videoretalking-face-3", 1), ("liveportrait-driving-d12", 1))
    src = write_clip(tmp_path / "abc.y4m", [a] * 2 + [b] * 6 + [c] * 4)
    out = tmp_path / "abc.imf"
    opts = dict(refine_steps=0, adapt_steps=0, keyframe_psnr=0, keyframe_interval=4)
    encode_file(src, str(out), EncodeOptions(plan_segments=3, **opts))
    k1, k2, k3 = keyframe_indices(out)
    assert k1 < 2 <= k2 < 8 <= k3
    frames = decode_file(str(out), None, DecodeOptions(), keep_frames=True).frames_rgb
    assert len(frames) == 12
    encode_file(src, str(out), EncodeOptions(plan_segments=1, keyframe_candidates=1, **opts))
    assert keyframe_indices(out) == [1, 5, 9]


def test_info_json_keys(encoded):
    imf, r = encoded
    info = read_info(str(imf))
    for k in ("frames", "width", "height", "fps", "dm", "token_codec", "bytes_total", "bytes_keyframe",
              "bytes_tokens", "bpp_total", "bpp_tokens"):
        assert k in info
    assert info["bytes_total"] == os.path.getsize(imf)
    assert info["bytes_keyframe"] == r.bytes_keyframe and info["bytes_tokens"] == r.bytes_tokens
    assert info["bpp_total"] == pytest.approx(info["bytes_total"] * 8 / (12 * 64 * 64))
    assert info["bpp_tokens"] == pytest.approx(r.bytes_tokens * 8 / (12 * 64 * 64))


# ---- errors ---------------------------------------------------------------------------------------

def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cli.main", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": os.getcwd()})


def assert_one_line_error(p):
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, p.stderr
    return lines[0]


def no_leftovers(folder):
    return [f for f in os.listdir(folder) if f.startswith(".imfcodec-") or f.endswith(".part")]


def test_cli_round_trip_and_json(tmp_path, clip, tiny):
    imf = tmp_path / "c.imf"
    p = cli("encode", clip, "-o", imf, "--weights", tiny, "--allow-untrained", "--json", "--refine", "2",
            "--keyframe-psnr", "0")
    assert p.returncode == 0, p.stderr
    p = cli("info", imf, "--json")
    assert p.returncode == 0 and '"frames": 12' in p.stdout
    p = cli("decode", imf, "-o", tmp_path / "c.mkv", "--weights", tiny, "--allow-untrained", "-q")
    assert p.returncode == 0, p.stderr


def test_missing_input(tmp_path, tiny):
    line = assert_one_line_error(cli("encode", tmp_path / "nope.mp4", "-o", tmp_path / "x.imf", "--weights", tiny,
                                     "--allow-untrained"))
    assert "not found" in line
    assert not (tmp_path / "x.imf").exists()


def test_not_a_video(tmp_path, tiny):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 50)
    line = assert_one_line_error(cli("encode", bad, "-o", tmp_path / "x.imf", "--weights", tiny,
                                     "--allow-untrained"))
    assert "video" in line
    assert not (tmp_path / "x.imf").exists() and not no_leftovers(tmp_path)


def test_corrupt_imf_names_chunk_and_leaves_no_output(tmp_path, encoded, tiny):
    imf, _ = encoded
    data = bytearray(imf.read_bytes())
    data[-40] ^= 0x10  # inside the last token chunk
    bad = tmp_path / "bad.imf"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out.mp4"
    line = assert_one_line_error(cli("decode", bad, "-o", out, "--weights", tiny, "--allow-untrained"))
    assert "CRC mismatch in chunk" in line and "TOKN" in line
    assert not out.exists() and not no_leftovers(tmp_path)


def test_truncated_imf(tmp_path, encoded, tiny):
    imf, _ = encoded
    bad = tmp_path / "cut.imf"
    bad.write_bytes(imf.read_bytes()[:-30])
    out = tmp_path / "out.y4m"
    line = assert_one_line_error(cli("decode", bad, "-o", out, "--weights", tiny, "--allow-untrained"))
    assert "truncated" in line
    assert not out.exists() and not no_leftovers(tmp_path)
    assert_one_line_error(cli("info", bad))


def test_other_weights(tmp_path, encoded, other_tiny):
    imf, _ = encoded
    out = tmp_path / "out.mp4"
    line = assert_one_line_error(cli("decode", imf, "-o", out, "--weights", other_tiny, "--allow-untrained"))
    assert "other weights" in line
    assert not out.exists()


def test_unknown_version(tmp_path, encoded, tiny):
    imf, _ = encoded
    data = bytearray(imf.read_bytes())
    data[4] = 9
    bad = tmp_path / "v9.imf"
    bad.write_bytes(bytes(data))
    line = assert_one_line_error(cli("decode", bad, "-o", tmp_path / "o.mp4", "--weights", tiny,
                                     "--allow-untrained"))
    assert "unsupported .imf version 9.0" in line


def test_not_an_imf_and_bad_extension(tmp_path, clip, encoded, tiny):
    assert "bad magic" in assert_one_line_error(cli("info", clip))
    imf, _ = encoded
    assert "extension" in assert_one_line_error(cli("decode", imf, "-o", tmp_path / "o.avi", "--weights", tiny,
                                                    "--allow-untrained"))


def test_untrained_or_missing_weights_refused(tmp_path, clip, tiny):
    line = assert_one_line_error(cli("encode", clip, "-o", tmp_path / "x.imf", "--weights", tiny))
    assert "untrained" in line
    line = assert_one_line_error(cli("encode", clip, "-o", tmp_path / "x.imf", "--dm", 7))
    assert "no trained weights for dm=7" in line


def test_existing_output_kept_when_encode_fails(tmp_path, tiny):
    out = tmp_path / "keep.imf"
    out.write_bytes(b"precious")
    assert_one_line_error(cli("encode", tmp_path / "nope.mp4", "-o", out, "--weights", tiny, "--allow-untrained"))
    assert out.read_bytes() == b"precious"


def test_output_cannot_overwrite_input(tmp_path, tiny):
    src = make_clip(tmp_path / "s.mp4", frames=3)
    before = src.read_bytes()
    with pytest.raises(UserError):
        encode_file(str(src), str(src), enc_opts(tiny))
    assert src.read_bytes() == before


def test_api_errors_are_bitstream_errors(tmp_path, encoded, tiny):
    imf, _ = encoded
    bad = tmp_path / "b.imf"
    bad.write_bytes(imf.read_bytes()[:20])
    with pytest.raises(BitstreamError):
        decode_file(str(bad), None, dec_opts(tiny))


def test_hostile_payloads_with_valid_crcs_fail_cleanly(encoded, tiny):
    """Random damage behind recomputed CRCs: the decoder raises a user error or decodes; never crashes."""
    import io
    import struct
    import zlib

    from imfcodec import bitstream as bs
    imf, _ = encoded
    data = imf.read_bytes()
    chunks = list(bs.read_chunks(io.BytesIO(data), len(data)))
    rng = np.random.default_rng(0)
    for trial in range(30):
        c = chunks[trial % (len(chunks) - 1)]
        payload = bytearray(c.payload)
        for _ in range(1 + trial % 4):
            payload[rng.integers(len(payload))] = rng.integers(256)
        body = c.ctype + struct.pack("<I", len(payload)) + bytes(payload)
        new = body + struct.pack("<I", zlib.crc32(body))
        old_len = 12 + len(c.payload)
        mutated = data[:c.offset] + new + data[c.offset + old_len:]
        path = imf.parent / f"fuzz{trial}.imf"
        path.write_bytes(mutated)
        try:
            decode_file(str(path), None, dec_opts(tiny))
        except UserError:
            pass


def test_keyframe_order_rules(tmp_path, encoded):
    """A segment's keyframe chunk comes first and may serve frames before its own; a file that breaks the
    order (a keyframe before the last one's frame was reached, one past the end, tokens running over a
    keyframe) is refused, naming the chunk."""
    import io

    from imfcodec import bitstream as bs
    imf, _ = encoded
    data = imf.read_bytes()
    head, key, *toks, _ = list(bs.read_chunks(io.BytesIO(data), len(data)))
    assert bs.unpack_keyframe(key.payload)[0] == 5 and bs.unpack_tokens(toks[0].payload)[:2] == (0, 4)

    def rebuilt(*chunks):
        path = tmp_path / "r.imf"
        with open(path, "wb") as f:
            w = bs.Writer(f)
            for ctype, payload in chunks:
                w.chunk(ctype, payload)
            w.close()
        return str(path)

    c = [(x.ctype, x.payload) for x in (head, key, *toks)]
    assert np.isnan(decode_tokens(rebuilt(*c))[5]).all()
    _, kdata = bs.unpack_keyframe(key.payload)
    cases = {
        "a keyframe before frame 5": c[:2] + [c[1]] + c[2:],
        "keyframe for frame 12, expected 0 to 11": [c[0], (bs.KEYF, bs.pack_keyframe(12, kdata))] + c[2:],
        "tokens run past the keyframe at frame 3": [c[0], (bs.KEYF, bs.pack_keyframe(3, kdata))] + c[2:],
        "tokens for frame 0, expected 1": [c[0], (bs.KEYF, bs.pack_keyframe(0, kdata))] + c[2:],
    }
    for message, chunks in cases.items():
        with pytest.raises(BitstreamError, match=message):
            decode_tokens(rebuilt(*chunks))


def test_audio_stream_is_ignored(tmp_path, tiny):
    import av
    path = tmp_path / "av.mkv"
    with av.open(str(path), "w") as c:
        v = c.add_stream("ffv1", rate=25)
        v.width, v.height, v.pix_fmt = 48, 36, "yuv420p"
        a = c.add_stream("pcm_s16le", rate=8000)
        for i in range(5):
            f = av.VideoFrame.from_ndarray(np.full((36, 48, 3), 40 * i, np.uint8), format="rgb24")
            for p in v.encode(f):
                c.mux(p)
            af = av.AudioFrame.from_ndarray(np.zeros((1, 320), np.int16), format="s16", layout="mono")
            af.sample_rate = 8000
            for p in a.encode(af):
                c.mux(p)
        for s in (v, a):
            for p in s.encode():
                c.mux(p)
    r = encode_file(str(path), str(tmp_path / "av.imf"), enc_opts(tiny))
    assert r.frames == 5


def test_sigterm_leaves_no_partial_output(tmp_path, tiny):
    src = make_clip(tmp_path / "long.y4m", frames=400, w=64, h=64)
    out = tmp_path / "x.imf"
    p = subprocess.Popen([sys.executable, "-m", "cli.main", "encode", src, "-o", out, "--weights", tiny,
                          "--allow-untrained", "--refine", "50", "-q"], stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    deadline = time.time() + 60
    while not no_leftovers(tmp_path) and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)  # wait until the encoder has its temporary output open
    assert no_leftovers(tmp_path), "the encoder finished or failed before it could be interrupted"
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert not out.exists() and not no_leftovers(tmp_path)
