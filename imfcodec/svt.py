"""SVT-AV1's side effects on the process that calls it, kept out.

SVT-AV1 prints its whole configuration to stderr for every picture unless told to report errors only, and
when it may (as root) it moves the thread that opens an encoder to real-time scheduling (SCHED_FIFO,
priority 99) and leaves it there: the codec process would then keep every other process (the other side of
a call, a training job, a benchmark) off its core while it computes. ``own_scheduling`` puts the thread's
policy back.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

os.environ.setdefault("SVT_LOG", "1")


@contextmanager
def own_scheduling() -> Iterator[None]:
    """Run the body, then give the calling thread back the scheduling policy it had before."""
    get = getattr(os, "sched_getscheduler", None)
    if get is None:  # not on this platform (macOS, Windows): nothing to keep
        yield
        return
    policy, param = get(0), os.sched_getparam(0)
    try:
        yield
    finally:
        if (os.sched_getscheduler(0), os.sched_getparam(0)) != (policy, param):
            try:
                os.sched_setscheduler(0, policy, param)
            except OSError:  # not allowed to lower it: nothing more can be done
                pass
