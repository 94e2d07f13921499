import av
import numpy as np
import pytest

from imfcodec.errors import UserError
from imfcodec.video_io import probe, read_frames, to_model, to_source


def test_display_rotation_is_applied(tmp_path):
    path = tmp_path / "rot.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.set_display_rotation(90)  # counter-clockwise, as phones store portrait video
        for _ in range(2):
            img = np.zeros((32, 64, 3), np.uint8)
            img[:, :8] = 255  # a bar on the left of the stored picture
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    info = probe(str(path))
    assert (info.width, info.height) == (32, 64)
    frame = next(read_frames(str(path)))
    assert frame.shape == (64, 32, 3)
    assert frame[-8:].mean() > 200 and frame[:8].mean() < 50  # rotated CCW: the bar is at the bottom


@pytest.mark.parametrize("policy", ["stretch", "crop", "pad"])
def test_resize_policies_round_trip_shapes(policy):
    img = np.random.default_rng(0).integers(0, 255, (90, 160, 3), dtype=np.uint8)
    m = to_model(img, 64, 64, policy)
    assert m.shape == (64, 64, 3) and m.dtype == np.uint8
    back = to_source(m, 160, 90, policy)
    assert back.shape == ((90, 90, 3) if policy == "crop" else (90, 160, 3))  # crop: the coded box only
    if policy == "pad":
        assert m[:10].max() == 0  # letterbox bars
    if policy == "crop":
        ramp = np.broadcast_to(np.linspace(0, 255, 160, dtype=np.float32)[None, :, None], (90, 160, 3))
        ramp = ramp.astype(np.uint8)
        back = to_source(to_model(ramp, 64, 64, policy), 160, 90, policy)
        assert np.abs(back.astype(int) - ramp[:, 35:125]).mean() < 3  # the centre, at source scale


def test_unreadable_inputs(tmp_path):
    with pytest.raises(UserError, match="not found"):
        probe(str(tmp_path / "missing.mp4"))
    (tmp_path / "d.mp4").mkdir()
    with pytest.raises(UserError):
        list(read_frames(str(tmp_path / "d.mp4")))


def test_frame_count_of_containers_that_do_not_store_it(tmp_path):
    """y4m stores no frame count: probe takes it from the stream's duration (rate control budgets by it)."""
    from tests.conftest import make_clip
    assert probe(str(make_clip(tmp_path / "c.y4m", frames=7))).frames == 7
