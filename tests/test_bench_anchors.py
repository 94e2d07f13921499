"""x264, x265 (low delay and with B-frames) and SVT-AV1 through PyAV on a tiny synthetic clip (64x64, 4 frames)."""
import io
import os
from fractions import Fraction

import av
import numpy as np
import pytest
from av.video.frame import PictureType

from imfcodec.bench.anchors import ANCHORS
from imfcodec.bench.clip import Yuv420, read_clip

from .conftest import make_clip


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Yuv420:
    return read_clip(str(make_clip(tmp_path_factory.mktemp("a") / "clip.y4m", frames=4, w=64, h=64)), 64).yuv


@pytest.mark.parametrize("name", list(ANCHORS))
def test_round_trip_and_frame_types(name, frames):
    codec = ANCHORS[name]
    best, lowest = codec.crfs[0], codec.crfs[-1]
    policy = os.sched_getscheduler(0), os.sched_getparam(0)
    decoded, bits, enc, dec = codec.encode_decode(frames, Fraction(25), best)
    assert (os.sched_getscheduler(0), os.sched_getparam(0)) == policy  # SVT-AV1's real-time policy undone
    assert decoded.packed.shape == frames.packed.shape
    assert enc > 0 and dec > 0
    err = np.abs(decoded.y.astype(int) - frames.y.astype(int)).mean()
    assert err < 8, "the best setting should resemble the source"
    assert len(codec.encode(frames, Fraction(25), lowest)) * 8 < bits, "the CRF sweep should end at fewer bits"
    with av.open(io.BytesIO(codec.encode(frames, Fraction(25), best)), format=codec.fmt) as c:
        kinds = [PictureType(f.pict_type).name for f in c.decode(video=0)]
    assert kinds[0] == "I" and "I" not in kinds[1:], kinds
    assert ("B" in kinds) == name.endswith("-ra"), kinds  # low delay: no B-frames


def test_sweeps_end_at_each_encoders_lowest_rate():
    assert ANCHORS["x264"].crfs[-1] == 51 and ANCHORS["x265"].crfs[-1] == 51 and ANCHORS["svtav1"].crfs[-1] == 63
