"""Rate control: a rate cap raises keyframe CRFs only where needed, a rate target spends the rate, a
bitrate is a rate target."""
import functools
import json

import numpy as np
import pytest

from imfcodec.analysis import Analysis
from imfcodec.codec import encode_file, read_info
from imfcodec.ratecontrol import Tally, retry_bits
from imfcodec.reader import Segments
from imfcodec.video_io import probe

from tests.conftest import cli, enc_opts, keyframe_indices


@pytest.fixture
def rate_run(tmp_path, clip, tiny):
    """Encode the clip in segments of 5 frames without refinement: (result, the file's bytes)."""
    def run(name, position, **kw):
        out = tmp_path / name
        r = encode_file(str(clip), str(out), enc_opts(tiny, keyframe_interval=5, keyframe_position=position,
                                                      refine_steps=0, **kw))
        return r, out.read_bytes()
    run.path = lambda name: tmp_path / name
    return run


@pytest.mark.parametrize("position", ["middle", "start"])
def test_rate_cap_raises_keyframe_crf_only_when_needed(rate_run, position, tmp_path):
    run = functools.partial(rate_run, position=position)
    (free, data), (smallest, _) = run("free.imf"), run("q63.imf", keyframe_quality=63)
    assert run("loose.imf", max_bpp=free.bpp_total * 1.05)[1] == data  # a cap that does not bind changes nothing
    cap = (free.bpp_total + smallest.bpp_total) / 2
    capped, _ = run("capped.imf", max_bpp=cap)
    assert capped.bpp_total <= cap and capped.bytes_tokens == free.bytes_tokens
    assert free.bytes_keyframe > capped.bytes_keyframe > smallest.bytes_keyframe
    hopeless, _ = run("hopeless.imf", max_bpp=smallest.bpp_total / 2)  # beyond reach: the codec's smallest
    assert hopeless.over_cap and not capped.over_cap and not free.over_cap
    if position == "middle":
        assert hopeless.bytes_keyframe == smallest.bytes_keyframe
    else:  # low delay puts off the refreshes the cap cannot pay for: the first keyframe alone, at CRF 63
        assert keyframe_indices(tmp_path / "hopeless.imf") == [0] == keyframe_indices(tmp_path / "q63.imf")[:1]
        assert hopeless.bytes_keyframe < smallest.bytes_keyframe


def test_rate_target_spends_the_rate_on_keyframes(rate_run):
    """Planned windows spend a target on a lower CRF."""
    run = functools.partial(rate_run, position="middle")
    (free, _), (best, _) = run("free.imf"), run("q0.imf", keyframe_quality=0)
    target = (free.bpp_total + best.bpp_total) / 2
    spent, _ = run("target.imf", target_bpp=target)
    assert spent.bpp_total <= target and spent.bytes_tokens == free.bytes_tokens
    assert best.bytes_keyframe > spent.bytes_keyframe > free.bytes_keyframe  # a lower CRF than the default
    below = free.bpp_total * 0.95  # less than the default CRF's rate: still within it
    assert run("below.imf", target_bpp=below)[0].bpp_total <= below


def test_low_delay_spends_a_rate_target_on_more_refreshes(rate_run, tmp_path):
    """Low delay spends a target on refreshes at the keyframe CRF, each once the rate allowed so far pays
    for it: more keyframes than the interval asks for, the file within its target."""
    run = functools.partial(rate_run, position="start")
    (free, data), (q0, _) = run("free.imf"), run("q0.imf", keyframe_quality=0)
    target = free.bpp_total * 2.5
    spent, _ = run("target.imf", target_bpp=target)
    keys, free_keys = keyframe_indices(tmp_path / "target.imf"), keyframe_indices(tmp_path / "free.imf")
    assert free.bpp_total * 1.5 < spent.bpp_total <= target
    assert len(keys) > len(free_keys)
    assert spent.bytes_keyframe / len(keys) < q0.bytes_keyframe / len(free_keys)  # not a lower CRF
    below = free.bpp_total * 0.95
    assert run("below.imf", target_bpp=below)[0].bpp_total <= below


def test_bitrate_is_a_rate_target_within_budget(rate_run, clip):
    """--bitrate is --target-bpp at bitrate / (fps x coded pixels): files at three bitrates, from near the
    smallest the keyframe codec allows to above the default's, each stay within bitrate x duration."""
    run = functools.partial(rate_run, position="middle")
    (free, _), (smallest, _) = run("free.imf"), run("q63.imf", keyframe_quality=63)
    fps, pix = float(probe(str(clip)).fps), free.width * free.height
    files = ladder(run, "b", smallest.bpp_total * 1.1, free.bpp_total * 1.2, fps, pix)
    bitrate, _, data = files[1]
    assert run("bpp.imf", target_bpp=bitrate / (fps * pix))[1] == data
    keys = [r.bytes_keyframe for _, r, _ in files]
    assert keys == sorted(set(keys))  # each higher bitrate buys better keyframes


def ladder(run, name: str, low: float, high: float, fps: float, pix: int) -> list:
    """Files at three bitrates from low to high bpp, each checked to stay within bitrate x duration:
    [(bitrate, result, bytes)]."""
    out = []
    for k, bpp in enumerate(np.linspace(low, high, 3)):
        bitrate = round(bpp * fps * pix)
        r, data = run(f"{name}{k}.imf", bitrate=float(bitrate))
        assert r.bytes_total * 8 <= bitrate * r.frames / fps
        out.append((bitrate, r, data))
    return out


def test_bitrate_with_predictive_tokens_in_low_delay(rate_run, clip):
    """Tokens whose size is known only once coded (the predictive coder), frames coded as they arrive: files
    at three bitrates each stay within bitrate x duration, refreshes put off where the budget cannot pay."""
    run = functools.partial(rate_run, position="start", token_codec="predictive")
    free, _ = run("free.imf")
    least, _ = run("one.imf", max_bpp=1e-6)  # hopeless: the first keyframe alone, at the highest CRF
    fps, pix = float(probe(str(clip)).fps), free.width * free.height
    ladder(run, "p", least.bpp_total * 1.05, free.bpp_total * 1.1, fps, pix)
    keys = [len(keyframe_indices(rate_run.path(f"p{k}.imf"))) for k in range(3)]
    assert keys[0] < keys[-1]  # the lowest rate affords fewer refreshes


def test_a_low_target_coarsens_the_predictive_token_step(rate_run):
    """Where the predictive coder's tokens would take more than half a rate target at its default step, the
    file's step is coarser (in its header, so any decoder reads it) and its tokens cost fewer bytes; at a
    target that leaves them room, the default step."""
    run = functools.partial(rate_run, position="start", token_codec="predictive")
    free, _ = run("free.imf")
    roomy, _ = run("roomy.imf", target_bpp=free.bpp_total * 1.2)
    low, _ = run("low.imf", target_bpp=free.bpp_total / 50)
    steps = {n: read_info(str(rate_run.path(n)))["token_qstep"] for n in ("free.imf", "roomy.imf", "low.imf")}
    assert steps["roomy.imf"] == steps["free.imf"] < steps["low.imf"]
    assert low.bytes_tokens < free.bytes_tokens


def test_cli_warns_when_a_target_is_out_of_reach(tmp_path, clip, tiny):
    """A bitrate no file can meet is coded as small as it goes, with a one-line warning (and over_target in
    the JSON); one it meets gets none."""
    common = ["--weights", tiny, "--allow-untrained", "--preset", "realtime", "--keyframe-psnr", "0", "--json"]
    low = cli("encode", clip, "-o", tmp_path / "low.imf", *common, "--bitrate", "100")
    assert low.returncode == 0 and json.loads(low.stdout)["over_target"] is True
    assert [ln for ln in low.stderr.splitlines() if "over the rate asked for" in ln][0].startswith("warning:")
    ok = cli("encode", clip, "-o", tmp_path / "ok.imf", *common, "--bitrate", "1M")
    assert ok.returncode == 0 and json.loads(ok.stdout)["over_target"] is False and "warning" not in ok.stderr


def test_a_file_over_its_target_is_coded_again_at_a_coarser_token_step(rate_run):
    """The first pass, at the step the target's prior suggests, ends over the target; a second pass at the
    step its measured overshoot asks for fits (a pipe, which cannot be read twice, keeps the first)."""
    run = functools.partial(rate_run, position="start", token_codec="predictive", hold=False)
    free, _ = run("free.imf")
    target = free.bpp_total * 0.45  # keyframes at the highest CRF and tokens at the default step do not fit
    spent, _ = run("again.imf", target_bpp=target)
    step = read_info(str(rate_run.path("again.imf")))["token_qstep"]
    assert spent.bpp_total <= target and not spent.over_cap
    assert step > read_info(str(rate_run.path("free.imf")))["token_qstep"] and spent.bytes_tokens < free.bytes_tokens


def test_spare_refreshes_without_an_interval_stay_within_the_target(tmp_path, clip, tiny):
    """With no keyframe interval (only the first frame is due), refreshes come from spare rate alone, each
    within the rate allowed up to its frame."""
    def run(name, **kw):
        return encode_file(str(clip), str(tmp_path / name), enc_opts(tiny, keyframe_interval=0, refine_steps=0,
                                                                     keyframe_position="start", **kw))
    free = run("one.imf")
    assert keyframe_indices(tmp_path / "one.imf") == [0]
    target = free.bpp_total * 2
    spent = run("more.imf", target_bpp=target)
    assert spent.bpp_total <= target and len(keyframe_indices(tmp_path / "more.imf")) > 1


def test_low_delay_holds_the_frames_whose_tokens_the_budget_cannot_pay(tmp_path, clip, tiny, monkeypatch):
    """Where the first keyframe, at the codec's highest CRF, leaves the target room for only some frames'
    tokens, the rest are held (the keyframe shows them) and the file stays within its target, even at the
    coarsest token step. (Every frame is taken as one the synthesis shows better than the keyframe.)"""
    monkeypatch.setattr(Analysis, "check", lambda self, x, t, ref, hold=False: ([False] * len(x),) * 2)
    def run(name, **kw):
        return encode_file(str(clip), str(tmp_path / name), enc_opts(
            tiny, keyframe_interval=0, keyframe_position="start", refine_steps=0, token_codec="predictive",
            hold=True, keyframe_quality=63, qstep=0.064, **kw))
    free = run("free.imf")
    assert free.bytes_tokens and "hold" not in _kinds(tmp_path / "free.imf")
    target_bytes = free.bytes_total - free.bytes_tokens // 2
    tight = run("tight.imf", target_bpp=target_bytes * 8 / (free.frames * free.width * free.height))
    assert tight.bytes_total <= target_bytes and not tight.over_cap
    assert {"hold", "tokens"} <= _kinds(tmp_path / "tight.imf")


def test_low_delay_holds_a_frame_whose_quality_keyframe_the_budget_cannot_pay(tmp_path, clip, tiny, monkeypatch):
    """With --hold, a keyframe the quality check asks for that would take the file past its budget, even at
    the codec's highest CRF, is put off: its frame is held and the file stays within its target. Without
    a target the same check makes keyframes. (Every frame is taken as one the quality check fails.)"""
    monkeypatch.setattr(Analysis, "check", lambda self, x, t, ref, hold=False: ([True] * len(x), [False] * len(x)))
    def run(name, **kw):
        return encode_file(str(clip), str(tmp_path / name), enc_opts(
            tiny, keyframe_interval=0, keyframe_position="start", refine_steps=0, token_codec="predictive",
            hold=True, keyframe_quality=63, qstep=0.064, **kw))
    free = run("free.imf")
    assert len(keyframe_indices(tmp_path / "free.imf")) == free.frames
    target_bytes = free.bytes_total // 2
    tight = run("tight.imf", target_bpp=target_bytes * 8 / (free.frames * free.width * free.height))
    assert tight.bytes_total <= target_bytes and not tight.over_cap
    assert 1 <= len(keyframe_indices(tmp_path / "tight.imf")) < free.frames
    assert "hold" in _kinds(tmp_path / "tight.imf")


def test_low_delay_holds_a_coded_chunk_that_would_go_over_whatever_the_estimate_said(tmp_path, clip, tiny,
                                                                                    monkeypatch):
    """tokens_fit decides on an estimate of a chunk's bytes; the chunk as coded is checked too, and held
    when it would take the file past its budget. (The estimate is made to say 1 byte a chunk, and every
    frame is one the synthesis shows better than the keyframe.)"""
    from imfcodec.ratecontrol import RateControl
    monkeypatch.setattr(Analysis, "check", lambda self, x, t, ref, hold=False: ([False] * len(x),) * 2)
    monkeypatch.setattr(RateControl, "token_bytes", lambda self, n: 1)
    def run(name, **kw):
        return encode_file(str(clip), str(tmp_path / name), enc_opts(
            tiny, keyframe_interval=0, keyframe_position="start", refine_steps=0, token_codec="predictive",
            hold=True, keyframe_quality=63, qstep=0.064, **kw))
    free = run("free.imf")
    target_bytes = free.bytes_total - free.bytes_tokens // 2
    tight = run("tight.imf", target_bpp=target_bytes * 8 / (free.frames * free.width * free.height))
    assert tight.bytes_total <= target_bytes and not tight.over_cap
    assert {"hold", "tokens"} <= _kinds(tmp_path / "tight.imf")


def _kinds(path) -> set[str]:
    return {kind for kind, _, _ in Segments(str(path))}


def test_a_second_pass_expects_what_the_first_pass_measured():
    """The second pass's tokens are expected to take the first pass's bits a value, 0.6 fewer per doubling
    of the step (refined tokens cost more than the coder's prior says)."""
    tally = Tally(token_bytes=400, token_frames=40)  # 80 bits a frame: 2.5 bits a value at dm 32
    assert retry_bits(tally, 32, 0.032, 0.064) == pytest.approx(2.5 - 0.6)
    assert retry_bits(Tally(), 32, 0.032, 0.064) is None
