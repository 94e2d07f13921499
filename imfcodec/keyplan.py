"""Where keyframes go: split a window of frames into segments, each served by one keyframe inside it.

Which pose a keyframe catches matters more than how close it is: on the eval clips a keyframe chosen among
all frames of a window, with segment boundaries free, rebuilds the frames better than one near the middle of
each fixed-length segment (MODEL_CARD.md, "Keyframe planning"). The encoder scores each candidate keyframe by
how well E_T's tokens rebuild the window's frames from its decoded picture; this module turns those scores into
segments by dynamic programming.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

Segment = tuple[int, int, int]  # (start, end, keyframe): frames start..end-1, keyed at keyframe


def plan(score: np.ndarray, cands: Sequence[int], sampled: Sequence[int], n: int, count: int) -> list[Segment]:
    """Cover frames 0..n-1 with `count` contiguous segments, each keyed at one of `cands` inside it, so that
    the summed score of the sampled frames over their segment's keyframe is highest (a keyframe's own frame
    does not count). score[i, j] is how well frame sampled[j] is rebuilt from candidate cands[i]. Fewer
    segments are returned when there are fewer candidates than `count`. Ties go to the earliest boundary."""
    cands, sampled = list(cands), list(sampled)
    if not cands or n < 1 or not 0 <= min(cands) <= max(cands) < n:
        raise ValueError("candidates must lie in 0..n-1")
    count = max(1, min(count, len(cands)))
    c = np.asarray(cands)
    gain = np.where(np.asarray(sampled)[None, :] == c[:, None], 0.0, np.asarray(score, np.float64))
    cum = np.zeros((len(c), n + 1))  # cum[i, e]: the sampled frames before e, rebuilt from candidate i
    for j, f in enumerate(sampled):
        cum[:, f + 1] += gain[:, j]
    cum = np.cumsum(cum, axis=1)
    # value[s, e], key[s, e]: the best single segment s..e-1 and its keyframe (-inf: no candidate inside)
    value, key = np.full((n + 1, n + 1), -np.inf), np.zeros((n + 1, n + 1), np.int64)
    for s in range(n):
        seg = cum - cum[:, s:s + 1]                                     # (candidates, ends)
        inside = (c[:, None] >= s) & (c[:, None] < np.arange(n + 1)[None, :])
        seg = np.where(inside, seg, -np.inf)
        key[s], value[s] = seg.argmax(0), seg.max(0)
    best = np.full((count + 1, n + 1), -np.inf)
    back = np.zeros((count + 1, n + 1), np.int64)
    best[0, 0] = 0.0
    for k in range(1, count + 1):
        total = best[k - 1][:, None] + value                            # (starts, ends)
        back[k], best[k] = total.argmax(0), total.max(0)
    segments, e = [], n
    for k in range(count, 0, -1):
        s = int(back[k, e])
        segments.append((s, e, cands[int(key[s, e])]))
        e = s
    return segments[::-1]
