"""Live through pipes: `encode - -o -` (y4m in, a 4.0 .imf stream out) and `decode - -o -` (y4m out)."""
import io
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from imfcodec import bitstream as bs
from imfcodec.codec import read_info
from imfcodec.video_io import read_frames

from tests.conftest import assert_one_line_error, cli, make_clip


@pytest.fixture(scope="module")
def y4m(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("y4m") / "clip.y4m")


def base(tiny):
    return ["--weights", str(tiny), "--allow-untrained"]


def imfcodec(*args, **kw):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.Popen([sys.executable, "-m", "cli.main", *map(str, args)], env=env, **kw)


def encode_args(tiny):
    return [*base(tiny), "--preset", "realtime", "--keyframe-psnr", "0", "--keyframe-interval", "5", "--batch",
            "4", "-q"]


def test_pipe_round_trip_equals_the_file_path(tmp_path, y4m, tiny):
    """stdin -> encode -> decode -> stdout gives the frames (and bytes) the file path gives."""
    enc = imfcodec("encode", "-", "-o", "-", *encode_args(tiny), stdin=open(y4m, "rb"), stdout=subprocess.PIPE)
    dec = imfcodec("decode", "-", "-o", "-", *base(tiny), "-q", stdin=enc.stdout, stdout=subprocess.PIPE)
    enc.stdout.close()
    piped, _ = dec.communicate(timeout=300)
    assert enc.wait(timeout=60) == 0 and dec.returncode == 0
    imf, rec = tmp_path / "file.imf", tmp_path / "file.y4m"
    assert cli("encode", y4m, "-o", imf, *encode_args(tiny)).returncode == 0
    assert cli("decode", imf, "-o", rec, *base(tiny), "-q").returncode == 0
    (tmp_path / "piped.y4m").write_bytes(piped)
    a, b = np.stack(list(read_frames(str(tmp_path / "piped.y4m")))), np.stack(list(read_frames(str(rec))))
    assert a.shape == (12, 64, 64, 3) and np.array_equal(a, b)
    assert piped == rec.read_bytes()  # the y4m writer for pipes writes what the file writer does


@pytest.mark.parametrize("codec, hold", [("av1", "--no-hold"), ("hevc-inter", "--no-hold"), ("av1", "--hold"),
                                         ("hevc-inter", "--hold")])
def test_stream_file_reads_like_any_file(tmp_path, y4m, tiny, codec, hold):
    """A stream (7.0, as every file) with either keyframe codec, holding frames or not (the realtime preset
    holds)."""
    version = 7
    out = tmp_path / "stream.imf"
    with open(out, "wb") as f:
        args = [*encode_args(tiny), "--keyframe-codec", codec, hold]
        assert imfcodec("encode", y4m, "-o", "-", *args, stdout=f).wait(timeout=300) == 0
    data = out.read_bytes()
    assert data[4:6] == bytes([version, 0])
    info = read_info(str(out))
    assert info["frames"] == 12 and info["version"] == f"{version}.0" and info["keyframes"] == 3
    rec = tmp_path / "r.mkv"
    assert cli("decode", out, "-o", rec, *base(tiny), "-q").returncode == 0
    assert len(list(read_frames(str(rec)))) == 12


def _frames_of_y4m(data: bytes) -> tuple[bytes, list[bytes]]:
    head = data.index(b"\n") + 1
    size = data.index(b"FRAME", head + 6) - head
    return data[:head], [data[head + i * size:head + (i + 1) * size] for i in range((len(data) - head) // size)]


def test_frames_come_out_while_frames_still_go_in(tmp_path, tiny):
    """Live: with 10 of 16 frames sent and the encoder's input still open, the decoder has already written
    all 10 (keyframes at 0 and 5, each followed by a batch of 4): nothing waits for the end of the stream,
    and the delay is at most a batch."""
    src = make_clip(tmp_path / "long.y4m", frames=16)
    head, frames = _frames_of_y4m(src.read_bytes())
    enc = imfcodec("encode", "-", "-o", "-", *encode_args(tiny), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    dec = imfcodec("decode", "-", "-o", "-", *base(tiny), "-q", stdin=enc.stdout, stdout=subprocess.PIPE)
    enc.stdout.close()
    out, ten = bytearray(), threading.Event()
    frame_bytes = len(b"FRAME\n") + 64 * 64 * 3 // 2  # a decoded frame: the tiny network's 64x64, 4:2:0

    def read():
        while chunk := os.read(dec.stdout.fileno(), 1 << 16):
            out.extend(chunk)
            if out.count(b"FRAME") >= 10 and len(out) >= out.index(b"\n") + 1 + 10 * frame_bytes:
                ten.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    enc.stdin.write(head + b"".join(frames[:10]))
    enc.stdin.flush()
    try:
        assert ten.wait(timeout=120), f"{bytes(out).count(b'FRAME')} frames out before the input ended"
    finally:
        enc.stdin.write(b"".join(frames[10:]))
        enc.stdin.close()
        assert enc.wait(timeout=120) == 0 and dec.wait(timeout=120) == 0
        reader.join(timeout=60)
    assert bytes(out).count(b"FRAME") == 16


def test_truncated_stream_is_a_one_line_error_and_no_output(tmp_path, y4m, tiny):
    full = tmp_path / "s.imf"
    with open(full, "wb") as f:
        assert imfcodec("encode", y4m, "-o", "-", *encode_args(tiny), stdout=f).wait(timeout=300) == 0
    data = full.read_bytes()
    rec = tmp_path / "r.y4m"
    p = subprocess.run([sys.executable, "-m", "cli.main", "decode", "-", "-o", str(rec), *base(tiny)],
                       input=data[:len(data) - 30], capture_output=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    p.stderr = p.stderr.decode()
    assert_one_line_error(p)
    assert "truncated" in p.stderr and not rec.exists()


def test_end_chunk_count_is_checked(tmp_path, y4m, tiny):
    from imfcodec.errors import BitstreamError
    from imfcodec.reader import Segments
    full = tmp_path / "s.imf"
    with open(full, "wb") as f:
        assert imfcodec("encode", y4m, "-o", "-", *encode_args(tiny), stdout=f).wait(timeout=300) == 0
    data = full.read_bytes()
    end = list(bs.read_chunks(io.BytesIO(data), len(data)))[-1]
    assert bs.unpack_end(end.payload, 7) == 12
    bad = tmp_path / "bad.imf"
    bad.write_bytes(data[:end.offset] + bs.frame_chunk(bs.END, bs.pack_end(11, (7, 0)), True))  # one frame short
    with pytest.raises(BitstreamError, match="holds 12 frames, its header says 11"):
        list(Segments(str(bad)))


def test_json_with_output_to_stdout_is_refused(tiny, y4m):
    p = cli("encode", y4m, "-o", "-", "--json", *base(tiny))
    assert_one_line_error(p)
