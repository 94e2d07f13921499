"""Where keyframes go: split a window of frames into segments, each served by one keyframe inside it.

Which pose a keyframe catches matters more than how close it is: a keyframe chosen among all frames of a
window, with segment boundaries free, rebuilds the frames better than one near the middle of each
fixed-length segment (MODEL_CARD.md, "Keyframe planning"). The planner scores each candidate keyframe by how
well the first tokens rebuild the window's frames from its decoded picture, turns those scores into segments by
dynamic programming (plan), and ends a window early where a frame would be rebuilt below the keyframe PSNR
threshold (a scene cut).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from . import keyframe
from .analysis import Analysis
from .model import Reference

if TYPE_CHECKING:
    from .options import EncodeOptions

Segment = tuple[int, int, int]  # (start, end, keyframe): frames start..end-1, keyed at keyframe
Coded = dict[int, tuple[bytes, Reference]]  # keyframe -> its data at the keyframe CRF, and its reference
#: How densely a window of several segments is scored: every PLAN_FRAME_STEP-th frame.
PLAN_FRAME_STEP = 2


def keyframe_offset(length: int, position: str) -> int:
    """Where in a segment of length frames its keyframe goes: the middle halves the longest distance from a
    frame to its reference; the start lets frames be coded as they arrive."""
    return (length - 1) // 2 if position == "middle" else 0


def keyframe_candidates(length: int, count: int) -> list[int]:
    """The frames of a segment tried as its keyframe (the planner keeps the one that rebuilds the segment
    best): count of them, evenly spaced over the middle half, the middle one included."""
    mid, step, lo = keyframe_offset(length, "middle"), max(1, length // 8), count // 2
    return sorted({min(length - 1, max(0, mid + j * step)) for j in range(-lo, count - lo)})


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


class Planner:
    """Plans the segments of a window of frames at the model size for the encoder's options."""

    def __init__(self, opts: "EncodeOptions", analysis: Analysis, keys: keyframe.Encoder):
        self.opts, self.analysis, self.keys = opts, analysis, keys

    def __call__(self, frames: list[np.ndarray]) -> tuple[list[Segment], Coded]:
        """Segments (start, end, keyframe) covering a prefix of frames, one per keyframe_interval frames,
        and the coded keyframes and references computed on the way.

        Search (keyframe_candidates > 1): every candidate keyframe is coded and scored, and plan picks
        keyframes and boundaries together. A single segment tries keyframe_candidates frames over its middle
        half (every frame scored); a window of several tries every keyframe_interval // 8-th frame (every
        PLAN_FRAME_STEP-th frame scored). Without search, segments are keyframe_interval long and keyed at
        their middles.

        No frame may be rebuilt below keyframe_psnr: one that is (a scene cut, or content the network cannot
        follow) ends the window on the side away from its keyframe, and the shorter window is planned again."""
        o, m = self.opts, len(frames)
        while True:
            segs, refs, scores = self._segments(frames, m)
            if not o.keyframe_psnr or m == 1:
                return segs, refs
            if not refs:
                refs = self._references(frames, [k for _, _, k in segs])
            cut = self._first_low(frames, segs, refs, scores)
            if cut is None:
                return segs, refs
            m = cut

    def _segments(self, frames: list[np.ndarray], m: int) -> tuple[list[Segment], Coded, dict]:
        """Segments of frames[:m], the keyframes coded to choose them, and the scores of every frame from
        those keyframes when all frames were scored (else empty)."""
        o = self.opts
        count, size = -(-m // o.keyframe_interval), o.keyframe_interval
        if o.keyframe_candidates <= 1 or m <= 1:
            return [(b, min(m, b + size), b + keyframe_offset(min(m, b + size) - b, "middle"))
                    for b in range(0, m, size)], {}, {}
        if count == 1:
            cands, sampled = keyframe_candidates(m, o.keyframe_candidates), list(range(m))
        else:
            step = max(1, size // 8)
            cands, sampled = list(range(step // 2, m, step)), list(range(0, m, PLAN_FRAME_STEP))
        refs = self._references(frames, cands)
        scores = self._scores(frames, sampled, refs)
        segs = plan(torch.stack([scores[c] for c in cands]).cpu().numpy(), cands, sampled, m, count)
        return segs, {k: refs[k] for _, _, k in segs}, scores if sampled == list(range(m)) else {}

    def _references(self, frames: list[np.ndarray], keys: list[int]) -> Coded:
        """Each of frames[k], k in keys, tried as the file's next keyframe at the keyframe CRF, and the
        reference the decoder derives (with hevc-inter, predicted from the keyframe before: one keyframe a
        window, as the options require)."""
        out = {}
        for k in keys:
            data = self.keys.trial(frames[k], self.opts.keyframe_quality)
            out[k] = data, self.analysis.reference(data, trial=True)
        return out

    def _scores(self, frames: list[np.ndarray], sampled: list[int], refs: Coded) -> dict[int, torch.Tensor]:
        """PSNR of each sampled frame as its first tokens rebuild it from each reference in refs."""
        a, b = self.analysis, self.opts.batch
        batches = [a.tensor([frames[j] for j in sampled[i:i + b]]) for i in range(0, len(sampled), b)]
        return {k: torch.cat([a.psnr(x, a.first_tokens(x, ref), ref) for x in batches])
                for k, (_, ref) in refs.items()}

    def _first_low(self, frames: list[np.ndarray], segs: list[Segment], refs: Coded,
                   scores: dict[int, torch.Tensor]) -> int | None:
        """Where the window must end for no frame to be rebuilt below keyframe_psnr (None: nowhere): just
        after the first such frame if it comes before its keyframe, just before it if after. The first tokens
        find such frames cheaply; refinement confirms them, nearest a keyframe first."""
        o, a = self.opts, self.analysis
        for s, e, k in segs:
            p = scores[k][s:e] if k in scores else self._scores(frames, list(range(s, e)), {k: refs[k]})[k]
            cand = sorted((s + j for j in range(e - s) if s + j != k and p[j] < o.keyframe_psnr),
                          key=lambda j: abs(j - k))
            low = cand[:1]
            if cand and o.refine_steps:
                ref, low = refs[k][1], []
                for b in range(0, len(cand), o.batch):
                    js = cand[b:b + o.batch]
                    x = a.tensor([frames[j] for j in js])
                    low = [j for j, bad in zip(js, a.below(x, a.tokens(x, ref), ref)) if bad]
                    if low:
                        break
            if low:
                return low[0] + 1 if low[0] < k else low[0]
        return None
