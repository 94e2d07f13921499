"""`imfcodec rd-curve`: the rate-distortion benchmark of imfcodec against standard and learned codecs."""
from __future__ import annotations

import click

from imfcodec.bench.anchors import ANCHORS
from imfcodec.errors import UserError
from imfcodec.options import parse_bitrate

from .common import console, run_guarded


def _items(value: str, kind: type, option: str) -> list:
    """A comma-separated option value as a list of `kind` ('' or 'none': an empty list)."""
    if value.strip().lower() in ("", "none"):
        return []
    try:
        return [kind(v.strip()) for v in value.split(",")]
    except ValueError:
        raise UserError(f"{option}: expected comma-separated {kind.__name__} values, got {value!r}") from None


@click.command("rd-curve")
@click.argument("src", nargs=-1, required=True)
@click.option("-o", "--outdir", required=True, metavar="DIR",
              help="Folder for points.csv, bd_rate.csv, rd_<metric>.png/.svg and report.md (created if needed).")
@click.option("--dm", default="32", show_default=True, metavar="DM,...",
              help="imfcodec token sizes dm (values per token), comma-separated; a dm without shipped weights "
              "is reported as missing.")
@click.option("--token-codec", default="zfp", show_default=True, metavar="NAME,...",
              help="imfcodec token codecs: zfp, learned, predictive.")
@click.option("--rates", default="2,4,8", show_default=True, metavar="BITS,...",
              help="ZFP rates for the zfp token codec, in bits per token value, comma-separated.")
@click.option("--qsteps", default="", metavar="STEP,...",
              help="Quantisation steps for the learned and predictive token codecs, in token units, comma-separated "
              "[default: the codec's own].")
@click.option("--preset", type=click.Choice(["realtime", "balanced", "archive"]), default=None,
              help="imfcodec's encoder preset (encode --preset) [default: the library's defaults, archive].")
@click.option("--refine", default="", metavar="STEPS,...",
              help="imfcodec encoder token-refinement steps per frame, comma-separated; each value is its own "
              "curve [default: the encoder's default].")
@click.option("--max-bpp", type=float, default=0, show_default=True, metavar="BPP",
              help="imfcodec's rate cap (encode --max-bpp), in bits per pixel; 0 = off.")
@click.option("--target-bpp", type=float, default=0, show_default=True, metavar="BPP",
              help="imfcodec's rate target (encode --target-bpp), in bits per pixel; 0 = off.")
@click.option("--bitrates", default="", metavar="RATE,...",
              help="A ladder of imfcodec rate targets (encode --bitrate), e.g. 1k,2k,3k,5k,8k,12k,16k: one point "
              "each, in place of the --rates or --qsteps sweep.")
@click.option("--anchors", default=",".join(ANCHORS), show_default=True, metavar="NAME,...",
              help="Standard codecs encoded live (low delay, CRF sweep to their lowest rate); 'none' for none.")
@click.option("--vtm", multiple=True, metavar="PATH", help="A VTM bitstream (.bin, .266, .vvc) or a folder of "
              "them, matched to sources by file-name prefix; a .log beside it (same stem) is cross-checked. "
              "Repeatable.")
@click.option("--vtm-encoder", metavar="PATH", help="VTM's EncoderApp, run over every source at --vtm-qp.")
@click.option("--vtm-cfg", metavar="CFG", help="Configuration for --vtm-encoder "
              "[default: VTM's cfg/encoder_lowdelay_vtm.cfg].")
@click.option("--vtm-qp", default="37,42,47,51", show_default=True, metavar="QP,...",
              help="QPs for --vtm-encoder, comma-separated.")
@click.option("--dcvc-dc", multiple=True, metavar="RESULT.json", help="A DCVC-DC test_video.py result file, "
              "matched to sources by sequence-name prefix. Repeatable.")
@click.option("--dcvc-dc-frames", metavar="DIR", help="The folder DCVC-DC saved decoded frames in "
              "(--decoded_frame_path): its frames are then scored here, like every other method's.")
@click.option("--points", "earlier", multiple=True, metavar="POINTS.csv",
              help="An earlier run's points.csv on the same sources, --size and --frames: the methods this run "
              "does not measure (VTM streams no longer at hand, say) are compared as measured then. Repeatable.")
@click.option("--frames", type=int, metavar="N", help="Measure at most N frames of each source [default: all].")
@click.option("--size", type=int, default=256, show_default=True, metavar="PIXELS",
              help="Reference frames are PIXELS x PIXELS (centre crop, area resize; sources already that size "
              "and 4:2:0 are used as stored); 0 keeps each source's size.")
def rd_curve(src, outdir, dm, token_codec, rates, qsteps, preset, refine, max_bpp, target_bpp, bitrates, anchors, vtm,
             vtm_encoder,
             vtm_cfg, vtm_qp, dcvc_dc, dcvc_dc_frames, earlier, frames, size):
    """Measure rate (bpp) against quality (PSNR-RGB, PSNR-Y, MS-SSIM, LPIPS when available) for imfcodec
    and the anchors on SRC clips, with BD-rates, plots and a report."""

    from imfcodec.bench.runner import Job, run  # here: plotting and the metrics would slow every command's start

    def job() -> Job:
        return Job(list(src), outdir, size=size, frames=frames, anchors=_items(anchors, str, "--anchors"),
                   dms=_items(dm, int, "--dm"), token_codecs=_items(token_codec, str, "--token-codec"),
                   rates=_items(rates, float, "--rates"), qsteps=_items(qsteps, float, "--qsteps"),
                   refine=_items(refine, int, "--refine"), preset=preset, max_bpp=max_bpp, target_bpp=target_bpp,
                   bitrates=[parse_bitrate(b) for b in _items(bitrates, str, "--bitrates")],
                   vtm=list(vtm), vtm_encoder=vtm_encoder, vtm_cfg=vtm_cfg,
                   vtm_qps=_items(vtm_qp, int, "--vtm-qp"), dcvc=list(dcvc_dc), dcvc_frames=dcvc_dc_frames,
                   earlier=list(earlier))

    outcome = run_guarded(lambda: run(job(), console=console))
    measured = sum(1 for p in outcome.points if p.frames) - outcome.reused
    reused = f" ({outcome.reused} from earlier runs)" if outcome.reused else ""
    click.echo(f"{measured} points measured{reused}; BD-rates: {len(outcome.bd)}; notes: {len(outcome.notes)}")
    for f in outcome.files:
        click.echo(f)
