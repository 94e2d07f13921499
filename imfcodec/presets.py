"""Encoder presets: named bundles of EncodeOptions, and the options a combination leaves without effect.

`imfcodec encode --preset NAME` starts from a preset and every option given on the command line overrides
it one by one. EncodeOptions' own defaults are the archive preset (today's full search), so library users
and the tests keep what they had; the command line's default is `balanced`.

* **realtime**: low delay for calls and live avatars. Keyframes at segment starts (frames are coded as
  they arrive; the encoder holds at most one batch, and writes a token chunk per batch), no refinement,
  no adaptation, no planning. A frame gets a keyframe when the quality check says the reference no longer
  serves it (rebuilt below --keyframe-psnr) or when the interval is up. The check synthesises the last
  frame of each batch (``keyframe_check="batch"``), and all of the batch only when that one fails: one
  synthesis per batch instead of one per frame. No-gradient syntheses take the fast path
  (imfcodec/fast.py). Keyframes are one HEVC stream (``hevc-inter`` at CRF 34): a refresh is predicted
  from the keyframe before it, an IDR every 8 keyframes. On the first 100 frames of the 9 eval and val
  clips that took 25% fewer bits than SVT-AV1 intra keyframes at CRF 40 for 0.04 dB less PSNR and equal
  MS-SSIM (MODEL_CARD.md, "Keyframes"). A batch whose checked frame the keyframe, repeated, shows better
  than the synthesis is sent as held frames (``hold``: no tokens; MODEL_CARD.md, "Held frames").
* **realtime** and **balanced** code tokens with the predictive coder (entropy/predictive.py): at the
  balanced preset it keeps ZFP rate 6's quality for a third of the token bits or less (MODEL_CARD.md,
  "Presets"). The archive preset's refined tokens keep ZFP, where the predictive coder was not measured.
* **balanced** (the command line's default): keyframes in the middle of their segments, each chosen among
  5 candidates a segment at a time (about 17 frames of delay), no refinement, no adaptation; fast
  no-gradient syntheses. Frames the keyframe shows better than the synthesis are held, frame by frame
  (``hold``): on six train2 clips +0.85 dB and +0.033 MS-SSIM for 3% fewer bits (MODEL_CARD.md, "Held
  frames").
* **archive**: today's full search: windows of 3 segments planned together, 30 refinement steps a frame,
  100 adaptation steps a window, every synthesis in float32. The best quality, at about 0.13 fps on
  2 CPU cores.
"""
from __future__ import annotations

import dataclasses

from .options import EncodeOptions

PRESETS: dict[str, dict] = {
    "realtime": dict(keyframe_position="start", refine_steps=0, adapt_steps=0, plan_segments=1,
                     keyframe_candidates=1, keyframe_check="batch", synthesis="fast", token_codec="predictive",
                     keyframe_codec="hevc-inter", keyframe_quality=34, hold=True),
    "balanced": dict(keyframe_position="middle", refine_steps=0, adapt_steps=0, plan_segments=1,
                     keyframe_candidates=5, keyframe_check="every", synthesis="fast", token_codec="predictive",
                     hold=True),
    "archive": dict(),  # EncodeOptions' defaults
}
DEFAULT_PRESET = "balanced"


def preset_options(name: str, **given) -> EncodeOptions:
    """EncodeOptions for preset name, with the options in given (None: not given) on top."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: use {', '.join(PRESETS)}")
    given = {k: v for k, v in given.items() if v is not None}
    kw = {**PRESETS[name], **given}
    if "keyframe_codec" not in given and kw.get("keyframe_position") == "middle":
        kw.pop("keyframe_codec", None)  # hevc-inter codes keyframes in order: mid-segment ones are intra
    if "keyframe_quality" not in given and ("keyframe_codec" not in kw or "keyframe_codec" in given):
        kw.pop("keyframe_quality", None)  # the preset's CRF is on its own codec's scale
    opts = EncodeOptions(**kw)
    if name == "realtime" and given.get("chunk_frames") is None:
        opts = dataclasses.replace(opts, chunk_frames=opts.batch)  # nothing buffered beyond one batch
    return opts


def ignored(opts: EncodeOptions, given: set[str]) -> list[str]:
    """One line for each option in given (EncodeOptions field names the user set) that has no effect with
    the others in opts."""
    out = []

    def say(field: str, flag: str, why: str) -> None:
        if field in given:
            out.append(f"{flag} has no effect {why}")

    start = opts.keyframe_position == "start"
    if start:
        why = "with --keyframe-position start"
        say("adapt_steps", "--adapt", f"{why} (decoder adaptation needs keyframes mid-segment)")
        say("plan_segments", "--plan-segments", f"{why} (segments are planned only mid-segment)")
        say("keyframe_candidates", "--keyframe-candidates", f"{why} (the keyframe is each segment's first frame)")
    if opts.token_codec == "zfp":
        say("qstep", "--qstep", "with --token-codec zfp (it sets the learned codec's step; --rate sets ZFP's)")
    else:
        say("zfp_rate", "--rate", f"with --token-codec {opts.token_codec} (it sets ZFP's rate; --qstep sets this "
                                  "codec's step)")
    if opts.keyframe_codec == "png":
        say("keyframe_quality", "--keyframe-quality", "with --keyframe-codec png (lossless)")
    if opts.keyframe_codec != "hevc-inter":
        say("intra_every", "--intra-every", f"with --keyframe-codec {opts.keyframe_codec} (every keyframe is intra)")
    if opts.refine_lambda and not (start and opts.token_codec == "predictive" and opts.refine_steps):
        say("refine_lambda", "--refine-lambda", "without --keyframe-position start, --token-codec predictive and "
                                                "--refine (its rate term is the predictive coder's, in low delay)")
    if not opts.keyframe_psnr:
        say("keyframe_check", "--keyframe-check", "with --keyframe-psnr 0 (no quality check)")
    return out


__all__ = ["PRESETS", "DEFAULT_PRESET", "preset_options", "ignored"]
