"""The `imfcodec` command group."""
from __future__ import annotations

import signal

import click

from imfcodec import __version__

from .decode import decode
from .demo import demo
from .encode import encode
from .info import info
from .rd_curve import rd_curve
from .train import train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imfcodec")
def cli():
    """imfcodec: a learned video codec after Implicit Motion Function (IMF, CVPR 2024)."""
    signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum, frame):
    """SIGTERM (kill, a job scheduler, a timeout) unwinds like Ctrl-C: temporary outputs are removed."""
    raise KeyboardInterrupt


for command in (encode, decode, info, demo, train):
    cli.add_command(command)
cli.add_command(rd_curve)

if __name__ == "__main__":
    cli()
