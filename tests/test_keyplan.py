"""Keyframe planning: segments and keyframes chosen together by dynamic programming, windows cut where a frame
would be rebuilt below the threshold, and the search among candidates."""
import itertools

import numpy as np
import pytest

from imfcodec.codec import DecodeOptions, EncodeOptions, decode_file, encode_file, read_info
from imfcodec.keyplan import keyframe_candidates, plan

from tests.conftest import dec_opts, enc_opts, eval_frames, keyframe_indices, write_clip


def total(score, cands, sampled, segs):
    row = {c: i for i, c in enumerate(cands)}
    return sum(score[row[k], j] for s, e, k in segs for j, f in enumerate(sampled) if s <= f < e and f != k)


def brute_force(score, cands, sampled, n, count):
    best = None
    for cuts in itertools.combinations(range(1, n), count - 1):
        bounds = [0, *cuts, n]
        segs = []
        for s, e in zip(bounds, bounds[1:]):
            inside = [c for c in cands if s <= c < e]
            if not inside:
                break
            segs.append((s, e, max(inside, key=lambda c: total(score, cands, sampled, [(s, e, c)]))))
        else:
            v = total(score, cands, sampled, segs)
            best = v if best is None else max(best, v)
    return best


def test_two_scenes_get_a_keyframe_each_and_the_cut_between_them():
    n, cands = 20, [1, 3, 8, 12, 15, 18]
    score = np.zeros((len(cands), n))
    score[1, :10] = 30  # candidate 3 rebuilds the first scene
    score[4, 10:] = 30  # candidate 15 the second
    assert plan(score, cands, list(range(n)), n, 2) == [(0, 10, 3), (10, 20, 15)]


def test_one_segment_takes_the_best_candidate_not_counting_its_own_frame():
    score = np.array([[40.0, 10, 10, 10], [20, 20, 40, 20]])  # candidate 0 scores itself high
    assert plan(score, [0, 2], [0, 1, 2, 3], 4, 1) == [(0, 4, 2)]


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    n, count = 11, 3
    cands = sorted(rng.choice(n, 5, replace=False).tolist())
    sampled = list(range(0, n, 1 + seed % 2))
    score = rng.uniform(10, 30, (len(cands), len(sampled)))
    segs = plan(score, cands, sampled, n, count)
    assert [s for s, _, _ in segs][0] == 0 and segs[-1][1] == n
    assert all(e == s2 for (_, e, _), (s2, _, _) in zip(segs, segs[1:]))
    assert all(s <= k < e for s, e, k in segs)
    assert total(score, cands, sampled, segs) == pytest.approx(brute_force(score, cands, sampled, n, count))


def test_fewer_candidates_than_segments_and_bad_candidates():
    assert plan(np.ones((1, 5)), [2], list(range(5)), 5, 3) == [(0, 5, 2)]
    with pytest.raises(ValueError):
        plan(np.ones((1, 5)), [5], list(range(5)), 5, 1)


def test_keyframe_psnr_threshold_decides_keyframes(tmp_path, clip, tiny):
    """Every frame is rebuilt below 100 dB, so each becomes a keyframe; none is rebuilt below 1 dB."""
    for psnr, keys in ((100, list(range(12))), (1, [5])):
        out = tmp_path / f"p{psnr}.imf"
        r = encode_file(str(clip), str(out), enc_opts(tiny, keyframe_psnr=psnr, refine_steps=2, keep_tokens=True))
        assert keyframe_indices(out) == keys
        assert read_info(str(out))["frames"] == 12 and len(r.tokens) == 12 - len(keys)
        assert len(decode_file(str(out), None, dec_opts(tiny), keep_frames=True).frames_rgb) == 12


def test_scene_cut_starts_a_keyframe(tmp_path):
    """Six frames of one eval clip, then six of another: with the shipped weights, the cut ends the first
    segment, so each scene gets its own keyframe; without the threshold, one keyframe serves all twelve
    frames. With keyframes at segment starts (low delay) the frame after the cut is the keyframe."""
    src = write_clip(tmp_path / "cut.y4m", eval_frames(("lia-vox-driving2", 6), ("videoretalking-face-3", 6)))
    out = tmp_path / "cut.imf"
    encode_file(src, str(out), EncodeOptions(refine_steps=0, adapt_steps=0, keyframe_psnr=14))
    keys = keyframe_indices(out)
    assert len(keys) == 2 and keys[0] < 6 <= keys[1]
    encode_file(src, str(out), EncodeOptions(refine_steps=0, adapt_steps=0, keyframe_psnr=14, keyframe_candidates=1))
    assert keyframe_indices(out) == [2, 8]  # the middles of the two scenes
    encode_file(src, str(out), EncodeOptions(refine_steps=0, adapt_steps=0, keyframe_psnr=0, keyframe_candidates=1))
    assert keyframe_indices(out) == [5]
    encode_file(src, str(out), EncodeOptions(refine_steps=0, adapt_steps=0, keyframe_psnr=14, keyframe_position="start"))
    assert keyframe_indices(out) == [0, 6]


def test_keyframe_search_avoids_an_odd_middle_frame(tmp_path):
    """Eleven copies of one picture with another in the middle: the middle frame would be a poor reference
    for the rest, and the search among candidates near the middle takes one of the copies instead."""
    a, b = eval_frames(("lia-vox-driving2", 1), ("videoretalking-face-3", 1))
    src = write_clip(tmp_path / "odd.y4m", [a] * 5 + [b] + [a] * 6)
    out = tmp_path / "odd.imf"
    encode_file(src, str(out), EncodeOptions(refine_steps=0, adapt_steps=0, keyframe_psnr=0, keyframe_candidates=1))
    assert keyframe_indices(out) == [5]
    encode_file(src, str(out), EncodeOptions(refine_steps=0, adapt_steps=0, keyframe_psnr=0))
    (k,) = keyframe_indices(out)
    assert k != 5 and 3 <= k <= 7  # five candidates, 3..7, around the middle of 12 frames


def test_joint_plan_puts_boundaries_at_scene_changes(tmp_path):
    """Two, six and four frames of three pictures, planned as one window of three 4-frame segments: the
    keyframes and boundaries chosen together give each picture a keyframe of its own, where fixed 4-frame
    segments would key frames 0-3 with one picture and rebuild the other from it."""
    a, b, c = eval_frames(("lia-vox-driving2", 1), ("videoretalking-face-3", 1), ("liveportrait-driving-d12", 1))
    src = write_clip(tmp_path / "abc.y4m", [a] * 2 + [b] * 6 + [c] * 4)
    out = tmp_path / "abc.imf"
    opts = dict(refine_steps=0, adapt_steps=0, keyframe_psnr=0, keyframe_interval=4)
    encode_file(src, str(out), EncodeOptions(plan_segments=3, **opts))
    k1, k2, k3 = keyframe_indices(out)
    assert k1 < 2 <= k2 < 8 <= k3
    frames = decode_file(str(out), None, DecodeOptions(), keep_frames=True).frames_rgb
    assert len(frames) == 12
    encode_file(src, str(out), EncodeOptions(plan_segments=1, keyframe_candidates=1, **opts))
    assert keyframe_indices(out) == [1, 5, 9]


def test_keyframe_candidates_span_the_middle_half():
    assert keyframe_candidates(12, 5) == [3, 4, 5, 6, 7]
    assert keyframe_candidates(34, 5) == [8, 12, 16, 20, 24]
    assert keyframe_candidates(1, 5) == [0]
