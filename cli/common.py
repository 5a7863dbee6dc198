"""What every ufd command shares: logging setup and error printing.

Errors ufd raises on purpose (:class:`UfdError`) are printed as one line,
without a traceback, and exit with status 2. A missing optional dependency
prints the ``pip install`` line that fixes it.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from ufd.runtime.errors import UfdError

P = ParamSpec("P")
R = TypeVar("R")

EXIT_USAGE = 2
BATCH_HELP = "Images per encoder call. Default: 8 on the CPU, 32 on CUDA/TensorRT."
EXTRA_HINTS = {
    "torch": "export",
    "torchvision": "export",
    "open_clip": "export",
    "onnx": "export",
    "onnxconverter_common": "export",
}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is *now* (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Log to stderr: warnings by default, info with -v, debug with -vv."""
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("ufd").setLevel(level)
    if level > logging.DEBUG:
        # open_clip logs on the root logger and huggingface_hub retries loudly;
        # ufd reports their failures itself, in one line.
        logging.getLogger().setLevel(logging.CRITICAL)
        for noisy in ("huggingface_hub", "open_clip", "onnxruntime"):
            logging.getLogger(noisy).setLevel(logging.CRITICAL)


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``error: message`` to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn ufd errors and missing extras into one-line messages and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except UfdError as e:
            raise fail(str(e)) from None
        except ModuleNotFoundError as e:
            top = (e.name or "").split(".")[0]
            extra = EXTRA_HINTS.get(top)
            if extra is None:
                raise
            raise fail(
                f"this command needs {top}, which is not installed; "
                f"install it with: pip install 'ufd[{extra}]'"
            ) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper
