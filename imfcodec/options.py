"""What `imfcodec encode` and `decode` can be asked to do, with their defaults, and the checks that refuse
impossible combinations with a one-line error before any work starts. MODEL_CARD.md measures the defaults."""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from . import adapt, keyframe
from .errors import UserError
from .fast import SYNTHESIS
from .refine import DEFAULT_REFINE_STEPS
from .video_io import RESIZE_POLICIES
from entropy import CODEC_IDS

#: A keyframe at least every 34 frames (three in a 100-frame clip), and wherever the decoder would rebuild a
#: frame below 14 dB (scene cuts).
DEFAULT_KEYFRAME_INTERVAL = 34
DEFAULT_KEYFRAME_PSNR = 14.0
DEFAULT_ZFP_RATE = 6.0
KEYFRAME_POSITIONS = ("middle", "start")
KEYFRAME_CHECKS = ("every", "batch")
DEFAULT_KEYFRAME_CANDIDATES = 5
#: Segments planned together: their keyframes and boundaries are chosen jointly.
DEFAULT_PLAN_SEGMENTS = 3


@dataclass
class EncodeOptions:
    dm: int = 32
    weights: str | None = None          # default: the shipped weights for dm
    token_codec: str = "zfp"
    zfp_rate: float = DEFAULT_ZFP_RATE  # bits per token value
    qstep: float | None = None          # learned or predictive coder's quantization step (None: its default)
    resize: str = "crop"
    keyframe_codec: str = keyframe.DEFAULT_CODEC
    keyframe_quality: int = keyframe.DEFAULT_QUALITY  # CRF of the keyframe codec
    keyframe_interval: int = DEFAULT_KEYFRAME_INTERVAL  # one keyframe per this many frames; 0: no limit (start)
    intra_every: int = keyframe.DEFAULT_INTRA_EVERY  # hevc-inter: an IDR (random access) every this many keyframes
    keyframe_psnr: float = DEFAULT_KEYFRAME_PSNR  # dB; a frame rebuilt below it becomes a keyframe; 0: off
    keyframe_position: str = "middle"   # of its segment ("start": low delay, frames coded as they arrive)
    keyframe_candidates: int = DEFAULT_KEYFRAME_CANDIDATES  # frames near the middle tried as the keyframe
    plan_segments: int = DEFAULT_PLAN_SEGMENTS  # segments whose keyframes and boundaries are chosen together
    chunk_frames: int = 32
    batch: int = 8
    device: str = "auto"
    max_frames: int | None = None
    allow_untrained: bool = False
    keep_tokens: bool = False           # return the dequantized tokens (tests, analysis)
    refine_steps: int = DEFAULT_REFINE_STEPS  # encoder-side token refinement (imfcodec.refine); 0: off
    refine_lambda: float = 0.0          # low delay, predictive tokens: refinement's loss per estimated token bit
    max_bpp: float = 0.0                # rate cap over the whole file, bits per pixel at the model size; 0: off
    target_bpp: float = 0.0             # rate target: a cap that keyframes also spend (a lower CRF); 0: off
    bitrate: float = 0.0                # rate target in bits per second at the source frame rate; 0: off
    adapt_steps: int = adapt.DEFAULT_ADAPT_STEPS  # per-window decoder adaptation (imfcodec.adapt); 0: off
    adapt_step: float = adapt.DEFAULT_STEP        # quantization step of its offsets
    hold: bool = False                  # frames shown better as their keyframe than synthesised are sent as
                                        # held (HOLD chunks, no tokens)
    keyframe_check: str = "every"       # frames the quality check synthesises: "every" one, or each batch's last
                                        # ("batch"; all of a batch whose last frame fails)
    synthesis: str = "exact"            # no-gradient syntheses (checks, planning): "exact" or "fast" (imfcodec.fast)
    token_guess: str = "auto"           # the current frames' first tokens: "auto" (the shipped guess trained for
                                        # the weights, else E_T), "et" (E_T) or a guess file (imfcodec.model.guess)

    @property
    def adapts(self) -> bool:
        """Windows get decoder offsets (only with keyframes mid-segment: low delay cannot look ahead)."""
        return self.adapt_steps > 0 and self.keyframe_position == "middle"

    @property
    def cap_bpp(self) -> float:
        """The rate the file must stay within (0: none): max_bpp or target_bpp."""
        return self.max_bpp or self.target_bpp

    def at_frame_rate(self, fps: float, width: int, height: int) -> "EncodeOptions":
        """These options with a bitrate turned into the rate target it means at fps frames a second of
        width x height coded pixels (bpp = bitrate / (fps x width x height)), for the rate control."""
        if not self.bitrate:
            return self
        return dataclasses.replace(self, bitrate=0.0, target_bpp=self.bitrate / (float(fps) * width * height))

    @property
    def needs_reference(self) -> bool:
        """Whether the encoder must derive the decoder's reference from each keyframe: refinement, the PSNR
        threshold, the keyframe search, adaptation and holding frames all measure frames against it."""
        searches = self.keyframe_position == "middle" and self.keyframe_candidates > 1
        return self.refine_steps > 0 or self.keyframe_psnr > 0 or searches or self.adapts or self.hold

    def validate(self) -> None:
        """UserError, in one line, for any option out of range or combination the encoder cannot honour."""
        _choice("resize policy", self.resize, RESIZE_POLICIES)
        _choice("keyframe codec", self.keyframe_codec, keyframe.CODECS)
        _choice("token codec", self.token_codec, CODEC_IDS)
        if self.keyframe_interval < 0 or not 0 <= self.keyframe_quality <= 63:
            raise UserError("keyframe interval must be >= 0 and keyframe quality 0..63")
        _choice("keyframe position", self.keyframe_position, KEYFRAME_POSITIONS)
        _choice("keyframe check", self.keyframe_check, KEYFRAME_CHECKS)
        _choice("synthesis", self.synthesis, SYNTHESIS)
        if self.keyframe_codec == keyframe.INTER and self.keyframe_position != "start" and self.plan_segments > 1:
            raise UserError("hevc-inter keyframes are predicted one from the one before: plan one segment at a "
                            "time (plan segments 1) or use keyframe position start")
        if not 1 <= self.intra_every <= 1000:
            raise UserError("intra every must be 1 to 1000 keyframes")
        if self.keyframe_position == "middle" and self.keyframe_interval == 0:
            raise UserError("keyframes in the middle of segments need a keyframe interval; "
                            "with no limit, use keyframe position start")
        for ok, what in ((1 <= self.keyframe_candidates <= 64, "keyframe candidates must be 1 to 64"),
                         (1 <= self.plan_segments <= 16, "plan segments must be 1 to 16"),
                         (0 <= self.keyframe_psnr <= 100, "keyframe PSNR threshold must be 0 (off) to 100 dB"),
                         (self.refine_steps >= 0, "refine steps must be >= 0"),
                         (math.isfinite(self.refine_lambda) and self.refine_lambda >= 0, "refine lambda must be >= 0"),
                         (self.max_bpp >= 0 and self.target_bpp >= 0, "max bpp and target bpp must be >= 0"),
                         (not (self.max_bpp and self.target_bpp),
                          "give a rate cap (max bpp) or a rate target (target bpp), not both"),
                         (math.isfinite(self.bitrate) and self.bitrate >= 0, "bitrate must be >= 0 bits per second"),
                         (not (self.bitrate and self.cap_bpp),
                          "a bitrate is a rate target: give it, max bpp or target bpp, not two")):
            if not ok:
                raise UserError(what)
        if (self.cap_bpp or self.bitrate) and self.keyframe_codec not in keyframe.MAX_QUALITY:
            raise UserError(f"a rate cap or target needs a lossy keyframe codec "
                            f"({', '.join(keyframe.MAX_QUALITY)})")


@dataclass
class DecodeOptions:
    weights: str | None = None
    device: str = "auto"
    batch: int = 8
    scale_to_source: bool = False
    allow_untrained: bool = False
    synthesis: str = "exact"            # "fast": imfcodec.fast's path on CPU (within 0.05 dB of "exact")
    workers: int = 1                    # batches synthesised at once on CPU, each on its own thread

    def validate(self) -> None:
        _choice("synthesis", self.synthesis, SYNTHESIS)
        if self.workers < 1:
            raise UserError("workers must be at least 1")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")


_BITRATE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([kKM]?)")


def parse_bitrate(text: str) -> float:
    """Bits per second from `4000`, `4k` or `4.5k` (k or K = 1000, M = 10**6); UserError for anything else."""
    m = _BITRATE.fullmatch(text.strip())
    value = float(m.group(1)) * {"": 1, "k": 1e3, "K": 1e3, "M": 1e6}[m.group(2)] if m else 0.0
    if not 0 < value < math.inf:
        raise UserError(f"bitrate must be a positive number of bits per second such as 4000, 4k or 4.5k, "
                        f"not {text!r}")
    return value


def _choice(what: str, value: str, known) -> None:
    if value not in known:
        raise UserError(f"unknown {what} {value!r}: use {', '.join(known)}")
