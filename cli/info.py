"""`imfcodec info`: the header and a size breakdown of an .imf file."""
from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from imfcodec.codec import read_info

from .common import print_json, run_guarded


@click.command("info")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON (keys documented in the README).")
def info(src, as_json):
    """Show what an .imf file holds."""
    d = run_guarded(read_info, src)
    if as_json:
        print_json(d)
        return
    t = Table(title=src, show_header=False)
    for k in ("frames", "fps_rational", "width", "height", "source_width", "source_height", "resize", "dm",
              "token_codec", "token_rate", "token_qstep",
              "keyframe_codec", "keyframe_quality", "keyframes", "keyframe_interval",
              "bytes_total", "bytes_keyframe", "bytes_tokens", "bytes_adapt", "bytes_container", "bpp_total",
              "bpp_tokens",
              "kbps", "model_id", "version"):
        if k not in d:
            continue  # a setting of another token codec
        v = d[k]
        t.add_row(k, f"{v:.6f}" if isinstance(v, float) else str(v))
    Console().print(t)
