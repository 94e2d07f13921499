"""`imfcodec encode`: any video file -> .imf."""
from __future__ import annotations

import click

from entropy import CODEC_IDS
from imfcodec import keyframe
from imfcodec.codec import (DEFAULT_KEYFRAME_CANDIDATES, DEFAULT_KEYFRAME_INTERVAL, DEFAULT_KEYFRAME_PSNR,
                            DEFAULT_PLAN_SEGMENTS, DEFAULT_ZFP_RATE, KEYFRAME_POSITIONS, EncodeOptions,
                            encode_file)
from imfcodec.adapt import DEFAULT_ADAPT_STEPS
from imfcodec.options import parse_bitrate
from imfcodec.refine import DEFAULT_REFINE_STEPS

from .common import console, network_options, print_json, progress_bar, run_guarded


@click.command("encode")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "dst", required=True, type=click.Path(dir_okay=False), help="Output .imf file.")
@click.option("--dm", type=click.IntRange(1, 1024), default=32, show_default=True,
              help="Token size (numbers per frame); picks the shipped weights for it.")
@click.option("--token-codec", type=click.Choice(list(CODEC_IDS)), default="zfp", show_default=True,
              help="How tokens are coded: ZFP fixed rate, the learned prior, or the adaptive predictive coder.")
@click.option("--rate", "zfp_rate", type=click.FloatRange(1, 32), default=DEFAULT_ZFP_RATE, show_default=True,
              help="ZFP fixed rate, in bits per token value.")
@click.option("--qstep", type=click.FloatRange(min=2 ** -16, max=2 ** 10), default=None,
              help="Quantization step of the learned or predictive token codec, in token units (default: the learned "
              "prior's own; the predictive coder's matches ZFP rate 6's PSNR).")
@click.option("--resize", type=click.Choice(["crop", "stretch", "pad"]), default="crop", show_default=True,
              help="How frames map to the model's square size: centre crop, stretch, or letterbox.")
@click.option("--keyframe-codec", type=click.Choice(keyframe.CODECS), default=keyframe.DEFAULT_CODEC,
              show_default=True,
              help="Intra codec of the keyframes.")
@click.option("--keyframe-quality", type=click.IntRange(0, 63), default=keyframe.DEFAULT_QUALITY, show_default=True,
              help="Keyframe CRF (lower = better, more bytes).")
@click.option("--keyframe-interval", type=click.IntRange(min=0), default=DEFAULT_KEYFRAME_INTERVAL, show_default=True,
              help="One keyframe per this many frames; each keyframe serves a segment of frames (planned "
                   "segments may be shorter or longer, see --plan-segments); 0 = no limit (needs "
                   "--keyframe-position start).")
@click.option("--keyframe-position", type=click.Choice(KEYFRAME_POSITIONS), default="middle", show_default=True,
              help="Where a segment's keyframe goes: near the middle (frames are nearer their reference; the "
                   "encoder buffers a segment) or the start (low delay: frames are coded as they "
                   "arrive).")
@click.option("--keyframe-candidates", type=click.IntRange(1, 64), default=DEFAULT_KEYFRAME_CANDIDATES,
              show_default=True,
              help="With --keyframe-position middle and a segment planned alone (--plan-segments 1, or a video "
                   "shorter than an interval): how many frames around the middle are tried as the keyframe; "
                   "the one whose picture rebuilds the segment best wins (each candidate costs one synthesis "
                   "per frame of the segment). 1 = no search at all: segments of --keyframe-interval frames "
                   "keyed at their middles.")
@click.option("--plan-segments", type=click.IntRange(1, 16), default=DEFAULT_PLAN_SEGMENTS, show_default=True,
              help="With --keyframe-position middle: how many segments are planned together; their keyframes "
                   "(every --keyframe-interval/8-th frame is tried) and boundaries are chosen jointly over "
                   "that many times --keyframe-interval frames, which the encoder buffers (1 = a segment at a "
                   "time, its keyframe among --keyframe-candidates frames near its middle).")
@click.option("--keyframe-psnr", type=click.FloatRange(0, 100), default=DEFAULT_KEYFRAME_PSNR, show_default=True,
              help="Make a frame a keyframe when the decoder would rebuild it below this PSNR, in dB (RGB, at "
                   "the model size): scene cuts start a new keyframe. 0 = off.")
@click.option("--refine", "refine_steps", type=click.IntRange(0, 10000), default=DEFAULT_REFINE_STEPS,
              show_default=True,
              help="Token refinement steps per frame (gradient steps through the decoder; 0 = off: "
                   "encoding about 75x faster on a CPU, lower quality).")
@click.option("--max-bpp", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Rate cap over the whole file, in bits per pixel at the model size (0.01 at 256x256 and "
                   "25 fps is 16.4 kbit/s): the keyframes of a planned window that would exceed it are coded "
                   "at a higher CRF than --keyframe-quality. 0 = off.")
@click.option("--target-bpp", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Rate target over the whole file, in bits per pixel at the model size: like --max-bpp, a "
                   "cap, but each planned window's keyframes take the lowest CRF that keeps the file within "
                   "it (below --keyframe-quality too), spending the rate on quality. 0 = off.")
@click.option("--bitrate", default=None, metavar="BITS/S",
              callback=lambda ctx, param, v: 0.0 if v is None else run_guarded(parse_bitrate, v),
              help="Rate target in bits per second at the source frame rate (4000, 4k or 4.5k): --target-bpp "
                   "at bitrate / (fps x coded width x coded height).")
@click.option("--adapt", "adapt_steps", type=click.IntRange(0, 100000), default=DEFAULT_ADAPT_STEPS,
              show_default=True,
              help="Decoder adaptation: Adam steps (batches of frames) fitting offsets to the decoder's flow "
                   "biases for each planned window, sent in the file (a few hundred bytes a window; makes a "
                   "3.0 file). Needs --keyframe-position middle. 0 = off.")
@click.option("--frames", "max_frames", type=click.IntRange(min=1), default=None,
              help="Encode at most this many frames.")
@network_options
def encode(src, dst, dm, token_codec, zfp_rate, qstep, resize, keyframe_codec, keyframe_quality,
           keyframe_interval, keyframe_position, keyframe_candidates, plan_segments,
           keyframe_psnr, refine_steps, max_bpp, target_bpp, bitrate, adapt_steps,
           max_frames, batch, weights, device, allow_untrained, as_json, quiet):
    """Encode the video SRC into an .imf file."""
    opts = EncodeOptions(dm=dm, weights=weights, token_codec=token_codec, zfp_rate=zfp_rate, qstep=qstep,
                         resize=resize, keyframe_codec=keyframe_codec, keyframe_quality=keyframe_quality,
                         keyframe_interval=keyframe_interval, keyframe_position=keyframe_position,
                         keyframe_candidates=keyframe_candidates, plan_segments=plan_segments,
                         keyframe_psnr=keyframe_psnr,
                         refine_steps=refine_steps, max_bpp=max_bpp, target_bpp=target_bpp, bitrate=bitrate,
                         adapt_steps=adapt_steps,
                         max_frames=max_frames, batch=batch, device=device,
                         allow_untrained=allow_untrained)
    with progress_bar("encode", quiet or as_json) as cb:
        r = run_guarded(encode_file, src, dst, opts, cb)
    summary = {"frames": r.frames, "bytes_total": r.bytes_total, "bytes_keyframe": r.bytes_keyframe,
               "bytes_tokens": r.bytes_tokens, "bytes_adapt": r.bytes_adapt, "bpp_total": r.bpp_total,
               "bpp_tokens": r.bpp_tokens,
               "seconds": r.seconds, "output": dst}
    if as_json:
        print_json(summary)
    elif not quiet:
        console.print(f"{dst}: {r.frames} frames, {r.bytes_total} bytes, {r.bpp_total:.5f} bpp "
                      f"(tokens {r.bpp_tokens:.5f}), {r.frames / max(r.seconds, 1e-9):.1f} fps")
