"""`imfcodec encode`: any video file -> .imf."""
from __future__ import annotations

import click
from click.core import ParameterSource

from entropy import CODEC_IDS
from imfcodec import keyframe
from imfcodec.codec import DEFAULT_ZFP_RATE, KEYFRAME_POSITIONS, EncodeOptions, encode_file
from imfcodec.fast import SYNTHESIS
from imfcodec.options import parse_bitrate
from imfcodec.presets import DEFAULT_PRESET, PRESETS, ignored, preset_options

from .common import console, fail, network_options, print_json, progress_bar, run_guarded, set_threads
from .help import GroupedCommand, grouped

_BASE = EncodeOptions()


def searched(flag: str, field: str, kind, text: str):
    """An advanced option whose default is the preset's: None unless given, help ending in each preset's value."""
    return click.option(flag, field, type=kind, default=None, help=text + by_preset(field))


def by_preset(field: str) -> str:
    """' [presets: realtime X, balanced Y, archive Z]': what each preset sets an option to."""
    values = {n: p.get(field, getattr(_BASE, field)) for n, p in PRESETS.items()}
    if len({str(v) for v in values.values()}) == 1:
        return f" [default: {values[DEFAULT_PRESET]}, every preset]"
    return " [presets: " + ", ".join(f"{n} {v}" for n, v in values.items()) + "]"



@click.command("encode", cls=GroupedCommand)
@click.argument("src", type=click.Path(dir_okay=False))
@grouped(
    "Options",
    click.option("-o", "--output", "dst", required=True, type=click.Path(dir_okay=False),
                 help="Output .imf file; - writes it to standard output as a stream, flushed chunk by chunk "
                      "as frames are coded."),
    click.option("--preset", type=click.Choice(list(PRESETS)), default=DEFAULT_PRESET, show_default=True,
                 help="A bundle of the search options below, each of which still overrides it: realtime (low "
                      "delay, frames coded as they arrive, no search: for calls), balanced (keyframes chosen "
                      "among 5 near each segment's middle, no refinement), archive (the full search: planning, "
                      "30 refinement steps, decoder adaptation; about 0.13 fps on 2 CPU cores)."),
    click.option("--dm", type=click.IntRange(1, 1024), default=32, show_default=True,
                 help="Token size (numbers per frame); picks the shipped weights for it."),
    click.option("--token-codec", type=click.Choice(list(CODEC_IDS)), default=None,
                 help="How tokens are coded: ZFP fixed rate, the learned prior, or the adaptive predictive "
                      "coder (a third of ZFP rate 6's bits at its PSNR, benchmarks/token_bits.md)."
                      + by_preset("token_codec")),
    click.option("--rate", "zfp_rate", type=click.FloatRange(1, 32), default=DEFAULT_ZFP_RATE, show_default=True,
                 help="ZFP fixed rate, in bits per token value (--token-codec zfp)."),
    click.option("--qstep", type=click.FloatRange(min=2 ** -16, max=2 ** 10), default=None,
                 help="Quantization step of the learned or predictive token codec, in token units (default: "
                      "the learned prior's own; the predictive coder's 0.016)."),
    click.option("--resize", type=click.Choice(["crop", "stretch", "pad"]), default="crop", show_default=True,
                 help="How frames map to the model's square size: centre crop, stretch, or letterbox."),
    click.option("--keyframe-codec", type=click.Choice(keyframe.CODECS), default=keyframe.DEFAULT_CODEC,
                 show_default=True, help="Codec of the keyframes: intra pictures (av1, hevc, png), or hevc-inter, "
                 "one HEVC stream in which a refresh is predicted from the keyframe before it (low delay only; "
                 "its CRF scale is HEVC's: about 30 for --keyframe-quality)."),
    click.option("--keyframe-quality", type=click.IntRange(0, 63), default=keyframe.DEFAULT_QUALITY,
                 show_default=True, help="Keyframe CRF (lower = better, more bytes)."),
    click.option("--max-bpp", type=click.FloatRange(min=0), default=0, show_default=True,
                 help="Rate cap over the whole file, in bits per pixel at the model size (0.01 at 256x256 and "
                      "25 fps is 16.4 kbit/s): the keyframes of a planned window that would exceed it are "
                      "coded at a higher CRF than --keyframe-quality. 0 = off."),
    click.option("--target-bpp", type=click.FloatRange(min=0), default=0, show_default=True,
                 help="Rate target over the whole file, in bits per pixel at the model size: like --max-bpp, "
                      "a cap, but each planned window's keyframes take the lowest CRF that keeps the file "
                      "within it (below --keyframe-quality too), spending the rate on quality. 0 = off."),
    click.option("--bitrate", default=None, metavar="BITS/S",
                 callback=lambda ctx, param, v: 0.0 if v is None else run_guarded(parse_bitrate, v),
                 help="Rate target in bits per second at the source frame rate (4000, 4k or 4.5k): "
                      "--target-bpp at bitrate / (fps x coded width x coded height)."),
    click.option("--frames", "max_frames", type=click.IntRange(min=1), default=None,
                 help="Encode at most this many frames."),
    click.option("--intra-every", "intra_every", type=click.IntRange(1, 1000), default=keyframe.DEFAULT_INTRA_EVERY,
                 show_default=True, help="With --keyframe-codec hevc-inter: an intra (IDR) keyframe, a point "
                 "decoding can start from, every this many keyframes."),
)
@grouped(
    "Advanced: the encoder's search (set by --preset)",
    searched("--keyframe-interval", "keyframe_interval", click.IntRange(min=0),
             "One keyframe per this many frames; each keyframe serves a segment of frames (planned "
             "segments may be shorter or longer, see --plan-segments); 0 = no limit (needs "
             "--keyframe-position start)."),
    searched("--keyframe-position", "keyframe_position", click.Choice(KEYFRAME_POSITIONS),
             "Where a segment's keyframe goes: near the middle (frames are nearer their reference; "
             "the encoder buffers a segment or a window) or the start (low delay: frames are coded "
             "as they arrive)."),
    searched("--keyframe-candidates", "keyframe_candidates", click.IntRange(1, 64),
             "With --keyframe-position middle and a segment planned alone (--plan-segments 1, or a "
             "video shorter than an interval): how many frames around the middle are tried as the "
             "keyframe; the one whose picture rebuilds the segment best wins (each candidate costs "
             "one synthesis per frame of the segment). 1 = no search at all: segments of "
             "--keyframe-interval frames keyed at their middles."),
    searched("--plan-segments", "plan_segments", click.IntRange(1, 16),
             "With --keyframe-position middle: how many segments are planned together; their "
             "keyframes (every --keyframe-interval/8-th frame is tried) and boundaries are chosen "
             "jointly over that many times --keyframe-interval frames, which the encoder buffers (1 = "
             "a segment at a time, its keyframe among --keyframe-candidates frames near its middle)."
),
    searched("--keyframe-psnr", "keyframe_psnr", click.FloatRange(0, 100),
             "The quality check: make a frame a keyframe when the decoder would rebuild it below this "
             "PSNR, in dB (RGB, at the model size): scene cuts start a new keyframe. 0 = off."
),
    searched("--keyframe-check", "keyframe_check", click.Choice(["every", "batch"]),
             "Which frames the quality check synthesises: every frame, or the last of each batch "
             "(all of a batch whose last frame fails): one synthesis a batch."
),
    searched("--hold/--no-hold", "hold", bool,
             "Frames the decoder shows better as their keyframe, repeated, than synthesised (by 50 MSE + "
             "1 - MS-SSIM against the source; in low delay per batch with --keyframe-check batch) are sent "
             "as held frames, without tokens."),
    searched("--refine", "refine_steps", click.IntRange(0, 10000),
             "Token refinement steps per frame (gradient steps through the decoder, each a forward and "
             "backward pass; 0 = off)."),
    searched("--refine-lambda", "refine_lambda", click.FloatRange(0, 1e6),
             "With --keyframe-position start and --token-codec predictive: refinement's loss per estimated "
             "token bit (the distance from the token before), so refined tokens stay cheap to code; 0 = off."),
    searched("--adapt", "adapt_steps", click.IntRange(0, 100000),
             "Decoder adaptation: Adam steps (batches of frames) fitting offsets to the decoder's flow "
             "biases for each planned window, sent in the file (a few hundred bytes a window). Needs "
             "--keyframe-position middle. 0 = off."),
    searched("--synthesis", "synthesis", click.Choice(SYNTHESIS),
             "How the encoder's syntheses run: fast (on CPU: the quality check and keyframe planning by "
             "imfcodec/fast.py's path, refinement under bfloat16 autocast where the CPU has it) or exact "
             "(float32)."),
    click.option("--token-guess", "token_guess", default="auto", show_default=True,
                 help="The current frames' first tokens, before any refinement: auto (the shipped token "
                      "guess trained for the weights, else E_T's), et (E_T's), or a guess file made by "
                      "python -m imfcodec.train.guess. Decoding does not depend on it."),
)
@network_options
@click.pass_context
def encode(ctx, src, dst, preset, **kw):
    """Encode the video SRC (- : y4m or another streamable format on standard input) into an .imf file."""
    quiet, as_json = kw.pop("quiet"), kw.pop("as_json")
    if as_json and dst == "-":
        fail("--json prints on standard output, which -o - writes the .imf to: use one or the other")
    set_threads(kw.pop("threads"))
    given = {k for k in kw if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
    try:
        opts = preset_options(preset, **{k: (v if k in given or k not in PRESETS[preset] else None)
                                         for k, v in kw.items()})
    except TypeError as e:  # a parameter EncodeOptions does not know: a bug, not a user error
        raise click.ClickException(str(e)) from None
    for line in ignored(opts, given):
        console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    with progress_bar("encode", quiet or as_json) as cb:
        r = run_guarded(encode_file, src, dst, opts, cb)
    if r.over_cap:
        console.print(f"[yellow]warning:[/] {dst} is {r.bpp_total / r.cap_bpp - 1:.0%} over the rate asked for: "
                      f"its first keyframe at the codec's highest CRF and its tokens need more",
                      highlight=False, soft_wrap=True)
    summary = {"frames": r.frames, "bytes_total": r.bytes_total, "bytes_keyframe": r.bytes_keyframe,
               "bytes_tokens": r.bytes_tokens, "bytes_adapt": r.bytes_adapt, "bpp_total": r.bpp_total,
               "bpp_tokens": r.bpp_tokens, "over_target": r.over_cap, "preset": preset,
               "seconds": r.seconds, "output": dst}
    if as_json:
        print_json(summary)
    elif not quiet:
        console.print(f"{dst}: {r.frames} frames, {r.bytes_total} bytes, {r.bpp_total:.5f} bpp "
                      f"(tokens {r.bpp_tokens:.5f}), {r.frames / max(r.seconds, 1e-9):.1f} fps")
