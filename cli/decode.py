"""`imfcodec decode`: .imf -> .mp4 (H.264), .mkv (FFV1, lossless) or .y4m (raw)."""
from __future__ import annotations

import click
import torch

from imfcodec.codec import DecodeOptions, decode_file
from imfcodec.fast import SYNTHESIS

from .common import console, fail, network_options, print_json, progress_bar, run_guarded, set_threads


#: Most batches a decoder synthesises at once by default (memory grows with each).
MAX_DEFAULT_WORKERS = 4


def decode_workers(threads: int | None) -> int:
    """--threads for the decoder: that many batches synthesised at once, one thread each (they need no
    barrier, so a busy core delays one batch instead of every step of all of them); default one per core,
    at most MAX_DEFAULT_WORKERS."""
    if threads:
        return threads
    return max(1, min(torch.get_num_threads(), MAX_DEFAULT_WORKERS))


@click.command("decode")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "dst", required=True, type=click.Path(dir_okay=False),
              help="Output video: .mp4, .mkv or .y4m; - writes y4m to standard output, frame by frame.")
@click.option("--scale-to-source", is_flag=True,
              help="Output at the source's scale instead of the coded size (after --resize crop: the cropped box).")
@click.option("--synthesis", type=click.Choice(SYNTHESIS), default="fast", show_default=True,
              help="fast: bfloat16 and local attention on CPU (imfcodec/fast.py; within 0.05 dB PSNR of exact, "
                   "about twice as fast); exact: the plain float32 network.")
@network_options
def decode(src, dst, scale_to_source, synthesis, batch, weights, device, threads, allow_untrained, as_json, quiet):
    """Decode the .imf file SRC (- : a growing .imf stream on standard input) into a video."""
    workers = decode_workers(threads)
    set_threads(1 if workers > 1 else threads)
    if as_json and dst == "-":
        fail("--json prints on standard output, which -o - writes the video to: use one or the other")
    opts = DecodeOptions(weights=weights, device=device, batch=batch, scale_to_source=scale_to_source,
                         allow_untrained=allow_untrained, synthesis=synthesis,
                         workers=workers)
    with progress_bar("decode", quiet or as_json) as cb:
        r = run_guarded(decode_file, src, dst, opts, cb)
    if as_json:
        print_json({"frames": r.frames, "seconds": r.seconds, "output": dst})
    elif not quiet:
        console.print(f"{dst}: {r.frames} frames, {r.frames / max(r.seconds, 1e-9):.1f} fps")
