"""Outputs that appear whole or not at all, and the check that an output would not overwrite its input."""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator

from .errors import UserError


@contextlib.contextmanager
def atomic_output(dst: str) -> Iterator[str]:
    """A temporary path beside dst, renamed to dst on success and removed on any failure."""
    d = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(d):
        raise UserError(f"output folder does not exist: {d}")
    ext = os.path.splitext(dst)[1]
    fd, tmp = tempfile.mkstemp(prefix=".imfcodec-", suffix=ext, dir=d)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def refuse_overwrite(src: str, dst: str) -> None:
    """UserError when dst is the file src."""
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise UserError("output would overwrite the input")
