"""The encoder pipeline: files it writes, the GOP modes' segments, inputs it accepts."""
import os
from fractions import Fraction

import numpy as np
import pytest

from imfcodec.codec import decode_file, encode_file, read_info, repeat_keyframes
from imfcodec.errors import UserError
from imfcodec.video_io import probe, read_frames

from tests.conftest import dec_opts, enc_opts, keyframe_indices, make_clip


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


def test_output_cannot_overwrite_input(tmp_path, tiny):
    src = make_clip(tmp_path / "s.mp4", frames=3)
    before = src.read_bytes()
    with pytest.raises(UserError):
        encode_file(str(src), str(src), enc_opts(tiny))
    assert src.read_bytes() == before


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
