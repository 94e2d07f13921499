"""What every command shares: one-line errors, rich progress bars, JSON output."""
from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Iterator

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn

from imfcodec.errors import UserError

console = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)


def run_guarded(fn, *args, **kwargs):
    """Call fn; turn user errors (and anything unexpected) into one line and a non-zero exit."""
    try:
        return fn(*args, **kwargs)
    except UserError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except (MemoryError, OSError) as e:
        fail(f"{type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001 - the CLI promises no tracebacks; IMFCODEC_DEBUG=1 shows them
        if os.environ.get("IMFCODEC_DEBUG"):
            raise
        fail(f"internal error ({type(e).__name__}: {e}); set IMFCODEC_DEBUG=1 for a traceback")


@contextlib.contextmanager
def progress_bar(label: str, quiet: bool = False) -> Iterator:
    """Yields a callback(done, total) that drives one rich progress bar."""
    if quiet:
        yield lambda done, total: None
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, transient=False) as p:
        task = p.add_task(label, total=None, rate="")

        def update(done: int, total: int) -> None:
            elapsed = p.tasks[0].elapsed or 0
            rate = f"{done / elapsed:.1f} fps" if elapsed > 0 else ""
            p.update(task, completed=done, total=total or None, rate=rate)
        yield update


def print_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


def device_option(f):
    return click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                        help="Where the network runs.")(f)


def weights_option(f):
    return click.option("--weights", type=click.Path(dir_okay=False), default=None,
                        help="Weights file (.safetensors); default: the shipped weights for the token size.")(f)


def set_threads(n: int | None) -> None:
    """--threads: how many CPU threads the network may use (None: torch's default, one per core)."""
    if n:
        import torch
        torch.set_num_threads(n)


THREADS_HELP = ("CPU threads for the network [default: one per core]. In a two-way call on one machine: 1 for the "
                "encoder (the decoder's own threads work apart from each other).")


def network_options(f):
    """Options shared by encode and decode: batch, weights, device, threads, output style."""
    for opt in reversed([
        click.option("--batch", type=click.IntRange(1, 256), default=8, show_default=True,
                     help="Frames per network batch."),
        weights_option, device_option,
        click.option("--threads", type=click.IntRange(1, 1024), default=None, help=THREADS_HELP),
        click.option("--allow-untrained", is_flag=True, hidden=True),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
    ]):
        f = opt(f)
    return f
