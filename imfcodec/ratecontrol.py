"""Rate control: the CRF each keyframe is coded at, so that a file stays within a rate cap (--max-bpp) or
spends a rate target (--target-bpp), and the room a window's decoder offsets get under either.

Within a file the tokens keep one setting; keyframes (and, under a cap, the offsets' step) give way. The
predictive coder's step is set per file: coarser where a target is low (token_step), and coarser again in a
second pass over a file that ended over its budget (retry_step). What a window leaves unspent carries over
to the next, so the cap holds over the file. Planned windows spend a target on a lower CRF; low delay
spends it on more keyframes instead (:meth:`RateControl.spare`): on the eval clips a refresh every 16
frames at the realtime CRF gave 23.8 dB at 12 kbit/s where a lower CRF every 34 frames gave 22.1 dB at
8.3 kbit/s and could spend no more (MODEL_CARD.md, "Rate cap and rate target"). Where even the coarsest
step leaves no room, low delay holds frames rather than go over (:meth:`RateControl.tokens_fit`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import bitstream as bs
from . import keyframe
from entropy import TokenCoder, predictive

if TYPE_CHECKING:
    from .options import EncodeOptions


#: How much more than the file's mean so far the rate control reserves for tokens whose size is not known in
#: advance. Without it, dagan-driving (eval, realtime preset, --bitrate 4k) ended 2% over its budget: its last
#: segment's tokens cost more than the mean of those before.
TOKEN_MARGIN = 1.25
#: Under a rate target, the share of it the predictive coder's tokens may expect to take: below it the step
#: is coarsened (at most MAX_STEP_FACTOR times the default), so low targets leave keyframes something.
TOKEN_SHARE = 0.5
MAX_STEP_FACTOR = 4.0


def token_step(opts: "EncodeOptions", dm: int, pixels: int) -> float | None:
    """The predictive coder's step for a file under a rate target of frames of pixels pixels: the default,
    or coarser where its tokens would take more than TOKEN_SHARE of the target (None: the coder's default,
    also when the step is given or the codec is another)."""
    if opts.token_codec != "predictive" or opts.qstep is not None or not opts.target_bpp:
        return None
    bits = TOKEN_SHARE * opts.target_bpp * pixels / dm  # a value's share
    if bits >= predictive.expected_bits(predictive.DEFAULT_QSTEP):
        return None
    return min(predictive.step_for_bits(bits), MAX_STEP_FACTOR * predictive.DEFAULT_QSTEP)


def retry_step(opts: "EncodeOptions", qstep: float, tally: "Tally", total: int, pixels: int,
               dm: int) -> float | None:
    """The predictive coder's step for a second pass over a file that ended over its cap or target, coded at
    qstep: coarse enough that its tokens would lose the bytes it is over (0.6 bits a value fewer per doubling,
    with a tenth to spare), at most MAX_STEP_FACTOR times the default. None: no second pass (within budget, a
    step the user set, another codec, or the coarsest step already)."""
    top = MAX_STEP_FACTOR * predictive.DEFAULT_QSTEP
    if opts.token_codec != "predictive" or opts.qstep is not None or not opts.cap_bpp or qstep >= top:
        return None
    over = total - opts.cap_bpp * pixels * tally.frames / 8
    if tally.starved and tally.token_frames and not over > 0:  # within budget only by holding frames:
        over = tally.starved * tally.token_bytes / tally.token_frames  # free what their tokens would take
    if over <= 0 or not tally.token_bytes:
        return None
    values = tally.token_frames * dm  # token bytes were written, so some frames had tokens
    now, need = tally.token_bytes * 8 / values, max(0.0, (tally.token_bytes - over) * 8 / values)
    return min(top, qstep * 2 ** (1.1 * (now - need) / predictive.BITS_PER_DOUBLING))


def retry_bits(tally: "Tally", dm: int, qstep: float, step: float) -> float | None:
    """What a value is expected to take in the second pass, at step: the first pass's bits a value at qstep,
    0.6 bits fewer per doubling. Tokens far from the coder's default (refined ones cost more) then get
    their share before any is coded, and the first keyframe's CRF is chosen knowing it. None: no tokens
    were coded."""
    if not tally.token_frames:
        return None
    now = tally.token_bytes * 8 / (tally.token_frames * dm)
    return max(0.5, now - predictive.BITS_PER_DOUBLING * math.log2(step / qstep))


@dataclass
class Tally:
    """What the encoder has produced so far."""
    frames: int = 0        # frames accounted for (coded or planned into chunks about to be written)
    key_bytes: int = 0
    token_bytes: int = 0
    token_frames: int = 0
    adapt_bytes: int = 0
    starved: int = 0       # frames held because their tokens would have gone over the file's budget


class RateControl:
    """Owns the budgets of a file: how many bytes keyframes and decoder offsets may take, and the CRF search
    that meets them."""

    def __init__(self, opts: "EncodeOptions", header: bs.Header, coder: TokenCoder, writer: bs.Writer,
                 tally: Tally, expected: int, adapt_reserve: int, keys: keyframe.Encoder):
        self.opts, self.header, self.coder, self.writer, self.keys = opts, header, coder, writer, keys
        self.tally, self.expected = tally, expected
        # Bytes a window's keyframes leave for its decoder offsets: the last window's at the configured step,
        # or a prior before any (the offsets are fitted after the keyframes are coded).
        self.adapt_reserve = adapt_reserve

    def intra(self, pics: list[np.ndarray], frames: int, runs: list[int],
              coded: list[bytes] | None = None) -> tuple[list[bytes], int]:
        """The keyframes pics, which with token chunks of the sizes runs code the next frames frames, as the
        keyframe encoder's trials, and their CRF: the keyframe CRF (coded: pics at that CRF, when known). Under
        a rate cap, the lowest CRF above it (one for all) that keeps the file within the cap once those frames
        are coded, the codec's highest when none does; under a rate target, below it too when the cap and the
        keyframes still to come allow. A predicted keyframe (hevc-inter's P pictures) keeps its run's CRF; with
        keyframes mid-segment, one past the cap gives way to a new run (an IDR) at a CRF that fits, when one
        does (in low delay the encoder puts such a refresh off)."""
        o = self.opts

        def code(q: int) -> list[bytes]:
            return [self.keys.trial(x, q) for x in pics]

        data = coded or code(o.keyframe_quality)
        if not o.cap_bpp:
            return data, o.keyframe_quality
        if not self.keys.next_is_intra:
            if o.keyframe_position == "start" or self.affordable(data, frames, runs):
                return data, o.keyframe_quality
            self.keys.force_intra()
            idr, q = self.intra(pics, frames, runs)
            if self.affordable(idr, frames, runs):
                return idr, q
            self.keys.force_intra(False)
            return data, o.keyframe_quality
        budget = self._keyframe_budget(frames, runs, len(pics))
        lo, hi, best = o.keyframe_quality + 1, keyframe.MAX_QUALITY[o.keyframe_codec], None
        size = sum(map(len, data))
        if not o.target_bpp and size <= budget:  # a cap: leave the keyframes to come what they will lack
            budget = max(budget - self._later_deficit(frames, size // len(pics)), 0)
        if size <= budget:
            if not o.target_bpp or o.keyframe_position == "start":  # low delay spends a target on refreshes
                return data, o.keyframe_quality
            budget -= self._later_deficit(frames, size // len(pics))  # what the keyframes to come will need
            lo, hi, best = 0, o.keyframe_quality - 1, (data, o.keyframe_quality)
        while lo <= hi:  # bisect for the smallest CRF that fits: bytes fall as the CRF rises
            mid = (lo + hi) // 2
            d = code(mid)
            if sum(map(len, d)) <= budget:
                hi, best = mid - 1, (d, mid)
            else:
                lo = mid + 1
        top = keyframe.MAX_QUALITY[o.keyframe_codec]
        return best or (code(top), top)

    def affordable(self, data: list[bytes], frames: int, runs: list[int]) -> bool:
        """Whether keyframes data, with token chunks of the sizes runs coding the next frames frames, keep
        the file within its cap (always, without one)."""
        return not self.opts.cap_bpp or sum(map(len, data)) <= self._keyframe_budget(frames, runs, len(data))

    def spare(self, pending: int, size: int) -> bool:
        """Whether a rate target leaves size bytes for a keyframe at the frame now arriving, beyond what is
        written and what the pending frames before it (their tokens) will take: the rate allowed up to that
        frame, not beyond it, so a low-delay file spends its target as it goes and never ahead of it."""
        if not self.opts.target_bpp:
            return False
        h = self.header
        allowed = int(self.opts.target_bpp * h.width * h.height * (self.tally.frames + pending + 1) / 8)
        need = bs.keyframe_chunk_size(size) + bs.END_CHUNK_SIZE + (self.token_chunk(pending) if pending else 0)
        return self.writer.tell() + need <= allowed

    def tokens_fit(self, pending: int, n: int) -> bool:
        """Whether n more tokens, after pending ones not yet written (one chunk with them), keep a low-delay
        file within the budget of its whole expected length (always without a cap or a known length). When
        they do not, the encoder holds those frames instead: the budget is then spent, and this is what
        keeps a file whose keyframe alone takes most of it within it."""
        return not n or self._within_whole(self.token_chunk(pending + n))

    def key_fits(self, size: int) -> bool:
        """Whether a keyframe of size bytes keeps a low-delay file within the budget of its whole expected
        length (always without a cap or a known length): the test a keyframe the quality check asks for
        must pass under --hold, where the frames after it can be held if their tokens then do not fit."""
        return self._within_whole(bs.keyframe_chunk_size(size))

    def chunk_fits(self, size: int, n: int) -> bool:
        """Whether a coded token chunk of n frames with a payload of size bytes keeps a low-delay file within
        the budget of its whole expected length: the check on the chunk itself that tokens_fit's estimate
        stands in for (a chunk can take more than the file's mean so far, even with the margin)."""
        return self._within_whole(bs.token_chunk_size(size, n))

    def _within_whole(self, chunk: int) -> bool:
        """Whether a chunk of that many bytes, written now, leaves room for the file's end within the budget
        of its whole expected length (always without a cap or a known length)."""
        if not self.opts.cap_bpp or self.expected <= 0:
            return True
        h = self.header
        allowed = int(self.opts.cap_bpp * h.width * h.height * self.expected / 8)
        return self.writer.tell() + chunk + bs.END_CHUNK_SIZE <= allowed

    def adapt_room(self, key_bytes: list[int], token_runs: list[int]) -> int:
        """Bytes a window's ADPT payload may take under the cap, once its keyframes (key_bytes each) and token
        chunks (token_runs frames each) are written."""
        h = self.header
        later = sum(map(bs.keyframe_chunk_size, key_bytes)) + sum(map(self.token_chunk, token_runs))
        allowed = int(self.opts.cap_bpp * h.width * h.height * self.tally.frames / 8) - bs.END_CHUNK_SIZE
        room = allowed - self.writer.tell() - later
        return room - (bs.chunk_size(room) - room if room > 0 else 0)  # the ADPT chunk's own framing

    def token_chunk(self, n: int) -> int:
        """Bytes a token chunk of n frames will take as stored (token_bytes and its framing)."""
        return bs.token_chunk_size(self.token_bytes(n), n)

    def token_bytes(self, n: int) -> int:
        """Bytes a chunk of n tokens will take: exact for a fixed-rate coder; otherwise the file's mean so far
        (the coder's expected bits a value before any token is coded), with a margin: a segment with more
        motion than those before costs more."""
        exact = self.coder.payload_size(n)
        if exact is not None:
            return exact
        t = self.tally
        per = t.token_bytes / t.token_frames if t.token_frames else self.header.dm * self.coder.expected_bits() / 8
        return int(TOKEN_MARGIN * per * n + 0.5)

    def _later_deficit(self, frames: int, key_bytes: int) -> int:
        """Bytes the frames after the next frames frames (to the probed end) will lack, beyond their own share
        of the cap, to give their keyframes key_bytes each: a rate target leaves them that much."""
        o, h = self.opts, self.header
        later = self.expected - self.tally.frames - frames
        if later <= 0:
            return 0
        keys = -(-later // o.keyframe_interval) if o.keyframe_interval else 1
        windows = -(-later // (o.keyframe_interval * o.plan_segments)) if o.adapts else 0
        share = int(o.cap_bpp * h.width * h.height * later / 8) - self.token_bytes(later) - \
            (keys + -(-later // o.chunk_frames)) * bs.CHUNK_OVERHEAD - windows * self.adapt_reserve
        return max(0, keys * key_bytes - share)

    def _keyframe_budget(self, frames: int, runs: list[int], keys: int) -> int:
        """Bytes keys keyframes may take: what the cap allows up to the end of the next frames frames, less what
        the file holds so far and what their token chunks of sizes runs, the chunks' framing, the file's end
        and (when adapting) the window's decoder offsets will take."""
        h = self.header
        allowed = int(self.opts.cap_bpp * h.width * h.height * (self.tally.frames + frames) / 8)
        room = allowed - self.writer.tell() - sum(map(self.token_chunk, runs)) - bs.END_CHUNK_SIZE - \
            self.adapt_reserve
        # each keyframe's framing, at most what a picture as large as the whole room would need
        return room - keys * (bs.keyframe_chunk_size(max(room, 0)) - max(room, 0))
