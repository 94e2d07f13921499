"""DCVC-DC result files. No real DCVC-DC output exists here (its weights cannot be had), so every result file
in these tests is SYNTHETIC: built by hand after the schema in ../shared/fixtures/dcvc-dc/README.md."""
import json
import math

import numpy as np
import pytest
from PIL import Image

from imfcodec.bench import dcvc
from imfcodec.bench.clip import Yuv420, read_clip
from imfcodec.bench.points import measure
from imfcodec.errors import UserError

from .conftest import make_clip


def result(rate_idx: int, bpp: float, psnr: float, msssim: float = 0.0, yuv: bool = False,
           video_path: str = "clip_64x64_25") -> dict:
    """A synthetic RESULT entry: 1 I frame and 3 P frames of 64x64."""
    r = {"frame_pixel_num": 64 * 64, "i_frame_num": 1, "p_frame_num": 3, "ave_i_frame_bpp": bpp * 3,
         "ave_i_frame_psnr": psnr + 1, "ave_i_frame_msssim": msssim, "ave_p_frame_bpp": bpp / 3,
         "ave_p_frame_psnr": psnr - 0.3, "ave_p_frame_msssim": msssim, "ave_all_frame_bpp": bpp,
         "ave_all_frame_psnr": psnr, "ave_all_frame_msssim": msssim, "test_time": 1.5,
         "ds_name": "synthetic", "video_path": video_path, "rate_idx": rate_idx}
    if yuv:
        r.update(ave_all_frame_psnr_y=psnr - 1, ave_all_frame_psnr_u=psnr + 3, ave_all_frame_psnr_v=psnr + 3)
    return r


@pytest.fixture()
def clips(tmp_path):
    return {"clip": read_clip(str(make_clip(tmp_path / "clip.y4m", frames=4, w=64, h=64)), 64)}


def write(tmp_path, data) -> str:
    path = tmp_path / "synthetic_dcvc_dc.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_rgb_results_used_as_they_are(tmp_path, clips):
    path = write(tmp_path, {"synthetic": {"clip_64x64_25": {"000": result(0, 0.05, 31.5, 0.95),
                                                             "001": result(1, 0.02, 28.0)},
                                          "elsewhere": {"000": result(0, 0.05, 30.0, video_path="elsewhere")}}})
    points, notes = dcvc.points(dcvc.read_results(path), clips)
    assert [(p.method, p.source, p.setting, p.frames) for p in points] == \
        [("DCVC-DC", "clip", "rate_idx 000", 4), ("DCVC-DC", "clip", "rate_idx 001", 4)]
    assert (points[0].bpp_total, points[0].psnr_rgb, points[0].msssim) == (0.05, 31.5, 0.95)
    assert math.isnan(points[0].psnr_y)
    assert math.isnan(points[1].msssim), "MS-SSIM written as 0 means it was not computed"
    assert len(notes) == 1 and "elsewhere" in notes[0]


def test_yuv420_results_give_psnr_y_only(tmp_path, clips):
    path = write(tmp_path, {"synthetic": {"clip": {"000": result(0, 0.05, 31.5, 0.9, yuv=True)}}})
    (p,), _ = dcvc.points(dcvc.read_results(path), clips)
    assert p.psnr_y == 30.5 and math.isnan(p.psnr_rgb) and math.isnan(p.msssim)


@pytest.mark.parametrize("kind", ["png", "yuv"])
def test_decoded_frames_are_scored_here(tmp_path, clips, kind):
    clip = clips["clip"]
    noisy = (clip.yuv.packed.astype(int) + np.random.default_rng(2).integers(-3, 4, clip.yuv.packed.shape))
    decoded = Yuv420(noisy.clip(0, 255).astype(np.uint8))
    folder = tmp_path / "decoded" / "clip_64x64_25" / "0_0.0500_31.5000"
    folder.mkdir(parents=True)
    if kind == "png":
        for i, img in enumerate(decoded.rgb()):
            Image.fromarray(img).save(folder / f"im{i + 1:05d}.png")
        expected = measure(clip, decoded.rgb(), 0.05 * 4 * 64 * 64, "DCVC-DC", "rate_idx 000")
    else:
        decoded.packed.tofile(folder / "out.yuv")
        expected = measure(clip, decoded, 0.05 * 4 * 64 * 64, "DCVC-DC", "rate_idx 000")
    path = write(tmp_path, {"synthetic": {"clip_64x64_25": {"000": result(0, 0.05, 99.0, 0.5)}}})
    (p,), notes = dcvc.points(dcvc.read_results(path), clips, str(tmp_path / "decoded"))
    assert p == expected and p.psnr_rgb != 99.0 and not notes
    assert p.bpp_total == pytest.approx(0.05)


def test_bad_files(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(UserError, match="not JSON"):
        dcvc.read_results(str(broken))
    with pytest.raises(UserError, match="lacks ave_all_frame_bpp"):
        bad = result(0, 0.05, 30.0)
        del bad["ave_all_frame_bpp"]
        dcvc.read_results(write(tmp_path, {"synthetic": {"clip": {"000": bad}}}))
    with pytest.raises(UserError, match="expected"):
        dcvc.read_results(write(tmp_path, {"synthetic": [1, 2]}))
