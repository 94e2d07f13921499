"""Encoder options: impossible values and combinations are refused in one line before any work."""
import pytest

from imfcodec.codec import EncodeOptions, encode_file
from imfcodec.errors import UserError
from imfcodec.options import parse_bitrate

from tests.conftest import assert_one_line_error, cli, enc_opts


def test_rate_cap_and_target_exclude_each_other(tmp_path, clip, tiny):
    line = assert_one_line_error(cli("encode", clip, "-o", tmp_path / "p.imf", "--weights", tiny,
                                     "--allow-untrained", "--max-bpp", "0.1", "--target-bpp", "0.1"))
    assert "not both" in line and not (tmp_path / "p.imf").exists()
    with pytest.raises(UserError, match="lossy keyframe codec"):
        encode_file(str(clip), str(tmp_path / "p.imf"), enc_opts(tiny, keyframe_codec="png", target_bpp=0.1))


def test_rate_cap_needs_a_lossy_keyframe_codec(tmp_path, clip, tiny):
    with pytest.raises(UserError, match="lossy keyframe codec"):
        encode_file(str(clip), str(tmp_path / "p.imf"), enc_opts(tiny, keyframe_codec="png", max_bpp=0.1))


@pytest.mark.parametrize("kw, message", [
    (dict(resize="zoom"), "unknown resize policy 'zoom'"),
    (dict(keyframe_codec="jpeg"), "unknown keyframe codec 'jpeg'"),
    (dict(token_codec="gzip"), "unknown token codec 'gzip'"),
    (dict(keyframe_position="end"), "unknown keyframe position 'end'"),
    (dict(keyframe_interval=0), "need a keyframe interval"),
    (dict(keyframe_candidates=0), "keyframe candidates must be 1 to 64"),
    (dict(plan_segments=17), "plan segments must be 1 to 16"),
    (dict(keyframe_psnr=101), "keyframe PSNR threshold"),
    (dict(refine_steps=-1), "refine steps must be >= 0"),
    (dict(max_bpp=-1.0), "must be >= 0"),
])
def test_validate_refuses_in_one_line(kw, message):
    with pytest.raises(UserError, match=message) as e:
        EncodeOptions(**kw).validate()
    assert "\n" not in str(e.value)
    EncodeOptions().validate()  # the defaults are valid


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
