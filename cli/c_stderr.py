"""Keep C libraries' messages off the terminal: a command's own lines stay readable.

Decoders written in C (libtiff, libjpeg, OpenJPEG, libheif...) print warnings
such as ``TIFFFillStrip: Read error on strip 0`` straight to file descriptor 2,
between a command's records and its progress bar. :func:`route` points fd 2 at
a pipe whose lines go to the ``ufd.clib`` log (shown with ``-vv``) while
Python's ``sys.stderr`` keeps writing to the terminal. The outcome of each image
is in its record either way. Console entry points call it; tests never do (they
run commands in-process, where fd 2 belongs to the test runner).
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import sys
import threading

logger = logging.getLogger("ufd.clib")
_routed = threading.Event()


def route() -> None:
    """Send what C code writes to fd 2 to the log; Python's stderr stays on the terminal."""
    if _routed.is_set():
        return
    try:
        terminal = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:
        return  # no fd 2 to protect
    sys.stderr.flush()
    sys.stderr = io.TextIOWrapper(
        os.fdopen(terminal, "wb", buffering=0),
        encoding="utf-8",
        errors="replace",
        line_buffering=True,
    )
    os.dup2(write_end, 2)
    os.close(write_end)
    forwarder = threading.Thread(
        target=_forward, args=(read_end,), name="ufd-clib-stderr", daemon=True
    )
    forwarder.start()
    atexit.register(_drain, os.dup(terminal), forwarder)
    _routed.set()


def _drain(terminal: int, forwarder: threading.Thread) -> None:
    """At exit: give fd 2 back to the terminal, so the pipe ends, and log what is left."""
    os.dup2(terminal, 2)
    os.close(terminal)
    forwarder.join(timeout=5)


def _forward(read_end: int) -> None:
    with os.fdopen(read_end, "rb") as pipe:
        for raw in pipe:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                logger.debug("C library: %s", line)
