"""The command line: a round trip, and every user error as one line, a non-zero exit and no output left."""
import os
import signal
import subprocess
import sys
import time

from tests.conftest import assert_one_line_error, claims_version, cli, make_clip, no_leftovers


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
    bad = claims_version(imf, tmp_path / "v9.imf", 9)
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
