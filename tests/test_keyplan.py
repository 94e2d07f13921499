"""Keyframe planning: segments and keyframes chosen together by dynamic programming."""
import itertools

import numpy as np
import pytest

from imfcodec.keyplan import plan


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
