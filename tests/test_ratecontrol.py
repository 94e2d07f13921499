"""Rate control: a rate cap raises keyframe CRFs only where needed, a rate target spends the rate."""
import functools

import pytest

from imfcodec.codec import encode_file

from tests.conftest import enc_opts


@pytest.fixture
def rate_run(tmp_path, clip, tiny):
    """Encode the clip in segments of 5 frames without refinement: (result, the file's bytes)."""
    def run(name, position, **kw):
        out = tmp_path / name
        r = encode_file(str(clip), str(out), enc_opts(tiny, keyframe_interval=5, keyframe_position=position,
                                                      refine_steps=0, **kw))
        return r, out.read_bytes()
    return run


@pytest.mark.parametrize("position", ["middle", "start"])
def test_rate_cap_raises_keyframe_crf_only_when_needed(rate_run, position):
    run = functools.partial(rate_run, position=position)
    (free, data), (smallest, _) = run("free.imf"), run("q63.imf", keyframe_quality=63)
    assert run("loose.imf", max_bpp=free.bpp_total * 1.05)[1] == data  # a cap that does not bind changes nothing
    cap = (free.bpp_total + smallest.bpp_total) / 2
    capped, _ = run("capped.imf", max_bpp=cap)
    assert capped.bpp_total <= cap and capped.bytes_tokens == free.bytes_tokens
    assert free.bytes_keyframe > capped.bytes_keyframe > smallest.bytes_keyframe
    hopeless, _ = run("hopeless.imf", max_bpp=smallest.bpp_total / 2)  # beyond reach: the codec's smallest
    assert hopeless.bytes_keyframe == smallest.bytes_keyframe


@pytest.mark.parametrize("position", ["middle", "start"])
def test_rate_target_spends_the_rate_on_keyframes(rate_run, position):
    run = functools.partial(rate_run, position=position)
    (free, _), (best, _) = run("free.imf"), run("q0.imf", keyframe_quality=0)
    target = (free.bpp_total + best.bpp_total) / 2
    spent, _ = run("target.imf", target_bpp=target)
    assert spent.bpp_total <= target and spent.bytes_tokens == free.bytes_tokens
    assert best.bytes_keyframe > spent.bytes_keyframe > free.bytes_keyframe  # a lower CRF than the default
    below = free.bpp_total * 0.95  # less than the default CRF's rate: still within it
    assert run("below.imf", target_bpp=below)[0].bpp_total <= below
