"""The rd-curve command end to end on a tiny synthetic clip (64x64, 4 frames), with a stand-in for imfcodec's
codec API (no trained weights needed), and its errors."""
import csv
import json
import os
import sys
import types
from dataclasses import dataclass

import numpy as np
import pytest
from click.testing import CliRunner

import imfcodec
import imfcodec.model.weights
from cli.rd_curve import rd_curve
from imfcodec.bench.clip import Yuv420, read_clip, write_y4m

from .conftest import make_clip


COLUMNS = ["method", "source", "setting", "frames", "bpp_total", "bpp_tokens", "psnr_rgb", "psnr_y", "msssim",
           "lpips", "encode_fps", "decode_fps", "kbps"]


@dataclass
class EncodeOptions:
    dm: int = 32
    weights: str | None = None
    token_codec: str = "zfp"
    zfp_rate: float = 8.0
    qstep: float = 0.1
    refine_steps: int = 30
    max_frames: int | None = None
    keyframe_codec: str = "hevc"
    keyframe_quality: int = 32
    max_bpp: float = 0.0
    target_bpp: float = 0.0
    bitrate: float = 0.0


@dataclass
class DecodeOptions:
    pass


def fake_codec() -> types.ModuleType:
    """imfcodec.codec's API as rd-curve uses it: the 'decode' is the source plus noise that falls with rate."""
    made = {}

    def encode_file(src, dst, opts, progress=None):
        rate = opts.bitrate / 1000 if opts.bitrate else opts.zfp_rate  # a bitrate in kbit/s stands for a rate
        with open(dst, "wb") as f:
            f.write(bytes(200 + int(opts.dm * rate * 4 / 8)))  # a keyframe, then 4 tokens
        made[dst] = (src, rate)

    def decode_file(src, dst, opts, progress=None):
        source, rate = made[src]
        yuv = read_clip(source, 0).yuv
        noise = np.random.default_rng(0).normal(0, 24 / rate, yuv.packed.shape)
        write_y4m(Yuv420((yuv.packed + noise).clip(0, 255).astype(np.uint8)), 25, dst)

    def read_info(path):
        total = os.path.getsize(path)
        return {"bytes_total": total, "bytes_keyframe": 200, "bpp_tokens": (total - 200) * 8 / (4 * 64 * 64)}

    def repeat_keyframes(path):  # one segment, keyed at the rate's frame (so encodes differ): rgb frames
        rgb = read_clip(made[path][0], 0).rgb
        return np.broadcast_to(rgb[int(made[path][1]) % len(rgb)], rgb.shape)

    return types.SimpleNamespace(encode_file=encode_file, decode_file=decode_file, read_info=read_info,
                                 repeat_keyframes=repeat_keyframes, EncodeOptions=EncodeOptions,
                                 DecodeOptions=DecodeOptions)


def test_rd_curve_end_to_end(tmp_path, monkeypatch):
    codec = fake_codec()
    monkeypatch.setitem(sys.modules, "imfcodec.codec", codec)
    monkeypatch.setattr(imfcodec, "codec", codec, raising=False)
    weights = tmp_path / "dm32.safetensors"
    weights.write_bytes(b"stand-in")
    monkeypatch.setattr(imfcodec.model.weights, "shipped_path",
                        lambda dm, size=256: str(weights if dm == 32 else tmp_path / f"dm{dm}-absent"))
    src = str(make_clip(tmp_path / "tiny.y4m", frames=4, w=64, h=64))
    results = tmp_path / "synthetic_dcvc_dc.json"  # SYNTHETIC, after the schema: no real DCVC-DC output exists here
    results.write_text(json.dumps({"synthetic": {"tiny": {f"00{i}": {
        "frame_pixel_num": 64 * 64, "i_frame_num": 1, "p_frame_num": 3, "ave_all_frame_bpp": bpp,
        "ave_all_frame_psnr": psnr, "ave_all_frame_msssim": ssim} for i, (bpp, psnr, ssim) in
        enumerate([(0.05, 27.0, 0.85), (0.1, 31.0, 0.92), (0.2, 35.0, 0.96)])}}}))
    out = tmp_path / "out"
    res = CliRunner().invoke(rd_curve, [src, "-o", str(out), "--anchors", "x264", "--dm", "32,64", "--rates",
                                        "2,4,8,16", "--size", "64", "--dcvc-dc", str(results)])
    assert res.exit_code == 0, res.output
    with open(out / "points.csv") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    by_method = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    assert len(by_method["x264"]) == 5 and all(r["frames"] == "4" for r in by_method["x264"])
    assert [r["setting"] for r in by_method["imfcodec dm32 zfp"]] == ["rate 2", "rate 4", "rate 8", "rate 16"]
    assert all(float(r["bpp_tokens"]) < float(r["bpp_total"]) for r in by_method["imfcodec dm32 zfp"])
    (floor,) = by_method["repeat first frame"]  # the keyframe alone, repeated: the floor to beat
    assert floor["frames"] == "4" and 0 < float(floor["bpp_total"]) < float(by_method["imfcodec dm32 zfp"][0]["bpp_total"])
    (missing,) = by_method["imfcodec dm64 zfp"]
    assert missing["setting"].startswith("missing: no shipped weights") and missing["bpp_total"] == ""
    with open(out / "bd_rate.csv") as f:
        bd = list(csv.DictReader(f))
    assert {(r["method"], r["anchor"], r["metric"]) for r in bd} == \
        {("imfcodec dm32 zfp", "x264", m) for m in ("psnr_rgb", "psnr_y", "msssim")} | \
        {("imfcodec dm32 zfp", "DCVC-DC", m) for m in ("psnr_rgb", "msssim")}
    assert [r["setting"] for r in by_method["DCVC-DC"]] == ["rate_idx 000", "rate_idx 001", "rate_idx 002"]
    for name in ("report.md", "rd_psnr_rgb.png", "rd_psnr_rgb.svg", "rd_psnr_y.png", "rd_msssim.svg"):
        assert (out / name).stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "imfcodec dm64 zfp: missing" in report and "LPIPS" in report and "the Y plane as stored" in report


def use_codec(monkeypatch, tmp_path, codec):
    """Make rd-curve use the stand-in codec and find stand-in weights for every dm."""
    monkeypatch.setitem(sys.modules, "imfcodec.codec", codec)
    monkeypatch.setattr(imfcodec, "codec", codec, raising=False)
    weights = tmp_path / "dm32.safetensors"
    weights.write_bytes(b"stand-in")
    monkeypatch.setattr(imfcodec.model.weights, "shipped_path", lambda dm, size=256: str(weights))


def test_keyframe_floor_repeats_the_first_encodes_keyframes(tmp_path, monkeypatch):
    """The segment-keyframe floor is the clip's first imfcodec encode with its keyframes alone, at their bits."""
    use_codec(monkeypatch, tmp_path, fake_codec())
    src = str(make_clip(tmp_path / "tiny.y4m", frames=4, w=64, h=64))
    res = CliRunner().invoke(rd_curve, [src, "-o", str(tmp_path / "out"), "--anchors", "none", "--rates", "2,8",
                                        "--size", "64"])
    assert res.exit_code == 0, res.output
    with open(tmp_path / "out" / "points.csv") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    first, floor = rows["repeat first frame"], rows["repeat segment keyframe"]
    assert floor["setting"] == "the keyframes of imfcodec dm32 zfp rate 2"
    assert float(floor["bpp_total"]) == pytest.approx(200 * 8 / (4 * 64 * 64))
    assert float(floor["psnr_rgb"]) > float(first["psnr_rgb"])  # the square moves; frame 2 is closer


def imfcodec_curves(tmp_path, monkeypatch, option, *args):
    """rd-curve with the stand-in codec over a tiny clip: the imfcodec methods it reports, and the value of
    EncodeOptions.option at each encode."""
    codec = fake_codec()
    seen = []
    encode = codec.encode_file
    codec.encode_file = lambda src, dst, opts, progress=None: (seen.append(getattr(opts, option)),
                                                               encode(src, dst, opts))
    use_codec(monkeypatch, tmp_path, codec)
    src = str(make_clip(tmp_path / "tiny.y4m", frames=2, w=64, h=64))
    res = CliRunner().invoke(rd_curve, [src, "-o", str(tmp_path / "out"), "--anchors", "none", "--size", "64",
                                        *args])
    assert res.exit_code == 0, res.output
    with open(tmp_path / "out" / "points.csv") as f:
        return [r["method"] for r in csv.DictReader(f) if r["method"].startswith("imfcodec")], seen


def test_each_refine_setting_is_its_own_curve(tmp_path, monkeypatch):
    methods, seen = imfcodec_curves(tmp_path, monkeypatch, "refine_steps", "--rates", "4,8", "--refine", "0,5")
    assert methods.count("imfcodec dm32 zfp refine 0") == 2 and methods.count("imfcodec dm32 zfp refine 5") == 2
    assert seen == [0, 0, 5, 5]


@pytest.mark.parametrize("field, option, name", [("max_bpp", "--max-bpp", "max"),
                                                  ("target_bpp", "--target-bpp", "target")])
def test_rate_cap_or_target_reaches_the_encoder_and_names_the_curve(tmp_path, monkeypatch, field, option, name):
    methods, seen = imfcodec_curves(tmp_path, monkeypatch, field, "--rates", "4", option, "0.01")
    assert methods == [f"imfcodec dm32 zfp {name} 0.01 bpp"] and seen == [0.01]


def test_bitrate_ladder_gives_a_curve_with_bd_rates(tmp_path, monkeypatch):
    """--bitrates: one point per rate target, each reaching the encoder, plotted against kbit/s, and a curve
    that overlaps an anchor's has BD-rate rows."""
    methods, seen = imfcodec_curves(tmp_path, monkeypatch, "bitrate", "--bitrates", "2k,4k,8k,16k",
                                    "--anchors", "x264")
    assert methods == ["imfcodec dm32 zfp"] * 4 and seen == [2000.0, 4000.0, 8000.0, 16000.0]
    with open(tmp_path / "out" / "points.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["method"] == "imfcodec dm32 zfp"]
    assert [r["setting"] for r in rows] == ["2 kbit/s", "4 kbit/s", "8 kbit/s", "16 kbit/s"]
    fps = 30000 / 1001  # the test clip's
    assert all(float(r["kbps"]) == pytest.approx(float(r["bpp_total"]) * 64 * 64 * fps / 1000) for r in rows)
    with open(tmp_path / "out" / "bd_rate.csv") as f:
        bd = [r for r in csv.DictReader(f) if r["anchor"] == "x264" and r["bd_rate_percent"]]
    assert {r["metric"] for r in bd} >= {"psnr_rgb", "msssim"}
    assert (tmp_path / "out" / "rd_psnr_rgb_kbps.png").stat().st_size > 0


def test_earlier_points_stand_in_for_methods_not_measured_again(tmp_path, monkeypatch):
    """--points: an earlier run's anchor rows are compared with this run's imfcodec curve (BD-rates included)
    without coding the anchor again; rows of a method measured again, or of another clip length, are not used."""
    use_codec(monkeypatch, tmp_path, fake_codec())
    src = str(make_clip(tmp_path / "tiny.y4m", frames=4, w=64, h=64))
    first = CliRunner().invoke(rd_curve, [src, "-o", str(tmp_path / "a"), "--anchors", "x264", "--bitrates",
                                          "2k,4k,8k,16k", "--size", "64"])
    assert first.exit_code == 0, first.output
    with open(tmp_path / "a" / "points.csv") as f:
        rows = list(csv.DictReader(f))
    with open(tmp_path / "a" / "points.csv", "a", newline="") as f:  # a row of another clip length
        csv.writer(f).writerow(["VTM", "tiny", "qp 63", "9", "0.01"] + [""] * 8)
    res = CliRunner().invoke(rd_curve, [src, "-o", str(tmp_path / "b"), "--anchors", "none", "--bitrates",
                                        "2k,4k,8k,16k", "--size", "64", "--points", str(tmp_path / "a" / "points.csv")])
    assert res.exit_code == 0, res.output
    assert "points measured (5 from earlier runs)" in res.output
    with open(tmp_path / "b" / "points.csv") as f:
        again = list(csv.DictReader(f))
    assert [r for r in again if r["method"] == "x264"] == [r for r in rows if r["method"] == "x264"]
    methods = [r["method"] for r in again]
    assert len([m for m in methods if m.startswith("imfcodec")]) == 4 and "VTM" not in methods
    assert len([r for r in again if r["method"] == "repeat first frame"]) == 1  # measured again, not doubled
    with open(tmp_path / "b" / "bd_rate.csv") as f:
        assert any(r["anchor"] == "x264" and r["bd_rate_percent"] for r in csv.DictReader(f))
    report = (tmp_path / "b" / "report.md").read_text()
    assert "1 earlier points not used" in report and "5 points taken from earlier runs" in report


@pytest.mark.parametrize("args, message", [
    (["absent.mp4"], "input not found"),
    (["{src}", "--dm", "32,x"], "--dm: expected comma-separated int"),
    (["{src}", "--anchors", "x266"], "unknown anchor 'x266'"),
    (["{src}", "--size", "63"], "--size must be 0 or an even number"),
    (["{src}", "--frames", "0"], "--frames must be at least 1"),
    (["{src}", "--token-codec", "gzip"], "unknown token codec"),
    (["{src}", "--refine", "-1"], "--refine steps must be >= 0"),
    (["{src}", "--vtm", "{src}"], "not a VTM bitstream"),
    (["{src}", "--dcvc-dc", "absent.json"], "cannot read DCVC-DC results"),
    (["{src}", "--points", "absent.csv"], "cannot read earlier points absent.csv"),
    (["{src}", "--points", "{src}"], "cannot read earlier points"),
])
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    src = str(make_clip(tmp_path / "tiny.y4m", frames=1, w=64, h=64))
    res = CliRunner().invoke(rd_curve, [a.format(src=src) for a in args] + ["-o", str(tmp_path / "out")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    (line,) = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert message in line, res.stderr


def test_reference_clips(tmp_path):
    src = str(make_clip(tmp_path / "wide.y4m", frames=3, w=80, h=48))
    as_stored = read_clip(src, 0)
    assert as_stored.yuv_as_stored and (as_stored.width, as_stored.height, len(as_stored)) == (80, 48, 3)
    mapped = read_clip(src, 32, max_frames=2)
    assert not mapped.yuv_as_stored and mapped.rgb.shape == (2, 32, 32, 3) and mapped.yuv.packed.shape == (2, 48, 32)
