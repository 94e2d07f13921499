"""VTM against real VTM 23.13 streams in ../shared/fixtures/vtm: bpp from the file size, Y-PSNR the log's way,
and a stand-in script in place of VTM's EncoderApp."""
import csv
import math
import shlex
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from imfcodec.bench import vtm
from imfcodec.bench.clip import read_clip
from imfcodec.bench.runner import Job, run
from imfcodec.errors import UserError

from .conftest import SHARED


FIXTURES = SHARED / "fixtures" / "vtm"
SOURCE = FIXTURES / "lia-vox-driving2_16f.y4m"
PIXELS = 16 * 256 * 256

STAND_IN = """import shutil, sys
args = sys.argv[1:]
open({calls!r}, "a").write(" ".join(args) + "\\n")
qp, out = args[args.index("-q") + 1], args[args.index("-b") + 1]
shutil.copyfile({fixtures!r} + "/lia-vox-driving2_16f_qp" + qp + ".bin", out)
sys.stdout.write(open({fixtures!r} + "/lia-vox-driving2_16f_qp" + qp + ".log").read())
"""


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    """One run over the fixture source: the QP 47 stream given as a file, QP 37 made by the stand-in encoder."""
    tmp = tmp_path_factory.mktemp("vtm")
    script = tmp / "stand_in.py"
    script.write_text(STAND_IN.format(calls=str(tmp / "calls.txt"), fixtures=str(FIXTURES)))
    encoder = tmp / "EncoderApp"
    encoder.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(script))} \"$@\"\n")
    encoder.chmod(encoder.stat().st_mode | stat.S_IXUSR)
    cfg = tmp / "lowdelay.cfg"
    cfg.write_text("# stand-in\n")
    job = Job([str(SOURCE)], str(tmp / "out"), anchors=[], dms=[],
              vtm=[str(FIXTURES / "lia-vox-driving2_16f_qp47.bin")], vtm_encoder=str(encoder), vtm_cfg=str(cfg),
              vtm_qps=[37])
    return run(job, quiet=True), tmp


def test_bpp_is_the_file_size_exactly(outcome):
    result, tmp = outcome
    sizes = {"lia-vox-driving2_16f_qp47.bin": (FIXTURES / "lia-vox-driving2_16f_qp47.bin").stat().st_size,
             "lia-vox-driving2_16f_qp37.bin": (FIXTURES / "lia-vox-driving2_16f_qp37.bin").stat().st_size}
    with open(tmp / "out" / "points.csv") as f:
        rows = {r["setting"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(sizes)
    for name, size in sizes.items():
        assert rows[name]["method"] == "VTM" and rows[name]["frames"] == "16"
        assert float(rows[name]["bpp_total"]) == size * 8 / PIXELS
    for c in result.checks:
        assert c.bpp_file == c.bpp_log == sizes[c.bitstream] * 8 / PIXELS


def test_psnr_y_two_ways_against_the_log(outcome):
    result, _ = outcome
    assert len(result.checks) == 2
    for c in result.checks:
        assert abs(c.psnr_y_10bit - c.psnr_y_log) < 0.1
        assert 0 < c.psnr_y_10bit - c.psnr_y_8bit < 0.1  # rounding to 8 bits costs a little
        point = next(p for p in result.points if p.setting == c.bitstream)
        assert point.psnr_y == c.psnr_y_8bit


@pytest.mark.parametrize("qp", [37, 47])
def test_psnr_y_the_log_way(qp):
    packed, depth = vtm.decode(str(FIXTURES / f"lia-vox-driving2_16f_qp{qp}.bin"))
    src = read_clip(str(SOURCE))
    assert depth == 10 and packed.shape == (16, 384, 256)
    log = vtm.parse_log(str(FIXTURES / f"lia-vox-driving2_16f_qp{qp}.log"))
    assert log.frames == 16
    assert abs(vtm.psnr_y_vtm(src.yuv.y, packed[:, :256], depth) - log.psnr_y) < 0.1


def test_stand_in_encoder_was_run_as_vtm(outcome):
    result, tmp = outcome
    call = (tmp / "calls.txt").read_text().split()
    assert call[call.index("-q") + 1] == "37" and call[call.index("-f") + 1] == "16"
    assert call[call.index("-c") + 1] == str(tmp / "lowdelay.cfg")
    assert call[call.index("-i") + 1].endswith(".y4m") and "--InputBitDepth=8" in call
    out = tmp / "out" / "vtm"
    assert (out / "lia-vox-driving2_16f_qp37.bin").is_file() and (out / "lia-vox-driving2_16f_qp37.log").is_file()
    made = next(p for p in result.points if p.setting == "lia-vox-driving2_16f_qp37.bin")
    assert math.isfinite(made.encode_fps) and math.isfinite(made.decode_fps)
    report = (tmp / "out" / "report.md").read_text()
    assert "VTM cross-check" in report and "37.0793" in report


def test_matching_by_prefix():
    assert vtm.match_source("/x/lia-vox-driving2_16f_qp37.bin", ["lia", "lia-vox-driving2", "other"]) == \
        "lia-vox-driving2"
    assert vtm.match_source("/x/lia-vox-driving2_16f_qp37.bin", ["dagan-driving"]) is None


def test_bitstream_listing_and_errors(tmp_path):
    assert [Path(p).name for p in vtm.list_bitstreams([str(FIXTURES)])] == \
        ["lia-vox-driving2_16f_qp37.bin", "lia-vox-driving2_16f_qp47.bin"]
    with pytest.raises(UserError, match="not a VTM bitstream"):
        vtm.list_bitstreams([str(SOURCE)])
    with pytest.raises(UserError, match="no VTM bitstreams"):
        vtm.list_bitstreams([str(tmp_path)])
    stray = tmp_path / "someone-else_qp37.bin"
    stray.write_bytes((FIXTURES / "lia-vox-driving2_16f_qp37.bin").read_bytes())
    with pytest.raises(UserError, match="matches no source"):
        run(Job([str(SOURCE)], str(tmp_path / "o"), anchors=[], dms=[], vtm=[str(stray)]), quiet=True)
    bad = tmp_path / "broken.bin"
    bad.write_bytes(b"\x00\x00\x01garbage")
    with pytest.raises(UserError, match="VTM bitstream"):
        vtm.decode(str(bad))


def test_rounding_to_8_bits():
    packed = np.array([[[0, 1, 2, 1023]] * 3], np.uint16).reshape(1, 3, 4)
    assert vtm.to_8bit(packed, 10).packed.ravel()[:4].tolist() == [0, 0, 1, 255]


def test_default_configuration_is_found_in_vtms_layout(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "cfg").mkdir()
    encoder = tmp_path / "bin" / "EncoderAppStatic"
    encoder.write_text("")
    with pytest.raises(UserError, match="give --vtm-cfg"):
        vtm.default_cfg(str(encoder))
    (tmp_path / "cfg" / "encoder_lowdelay_vtm.cfg").write_text("")
    assert vtm.default_cfg(str(encoder)) == str(tmp_path / "cfg" / "encoder_lowdelay_vtm.cfg")
