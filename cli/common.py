"""What every ufd command shares: logging, error printing, exit codes (options: :mod:`.options`).

Errors ufd raises on purpose (:class:`UfdError`, usage errors included) are
printed as one line and exit with status 2; with ``-v`` the traceback follows.
A missing optional dependency prints the ``pip install`` line that fixes it.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import typer
from typer.exceptions import TyperException

from ufd.runtime.errors import UfdError

P = ParamSpec("P")
R = TypeVar("R")

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERNAL = 3  # a bug, never to be read as "some inputs failed" (1)
EXIT_INTERRUPTED = 130
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE, as shell tools end when their reader closes the pipe
EXIT_CODES_HELP = (
    f"Exit status: {EXIT_OK} done, {EXIT_SOME_FAILED} some inputs failed, {EXIT_USAGE} usage "
    f"or bundle error, {EXIT_INTERNAL} internal error (a bug: please report it), "
    f"{EXIT_INTERRUPTED} interrupted, {EXIT_PIPE_CLOSED} the reader of the output went away."
)
EXTRA_HINTS = {
    "torch": "export",
    "torchvision": "export",
    "open_clip": "export",
    "onnxconverter_common": "export",
    "timm": "export",
    "safetensors": "export",
    "onnx": "bench",
    "matplotlib": "eval",
    "fastapi": "serve",
    "starlette": "serve",
    "uvicorn": "serve",
    "python_multipart": "serve",
    "prometheus_client": "serve",
    "fastapi_offline": "serve",
    "kserve": "kserve",
    "grpc": "kserve",
    "pyarrow": "scale",
    "ray": "scale",
    "hnswlib": "hnswlib",
    "c2pa": "provenance",
    "model_signing": "signing",
}
"""Missing module -> the extra that installs it."""
logger = logging.getLogger("ufd")


def trust(keys: list[Path] | None) -> None:
    """Apply ``--trust-key``: every bundle this process (and its workers) opens is checked."""
    if keys:
        from ufd.runtime.bundle.signing import trust as trust_keys

        trust_keys(keys)


class Skips:
    """Images a command skipped (unreadable), each said once on stderr and kept.

    Call it as the ``on_skip(path, why)`` of feature gathering and evaluation.
    """

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self._said: set[tuple[str, str]] = set()

    def __call__(self, path: str, why: str) -> None:
        """Say and keep a skipped image, once however often it is met."""
        if (path, why) not in self._said:
            self._said.add((path, why))
            self.seen.append((path, why))
            typer.echo(f"skipped {path}: {why}", err=True)

    def __len__(self) -> int:
        return len(self.seen)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is *now* (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Log to stderr: warnings by default, info with -v, debug with -vv.

    Also silences Pillow's warnings about odd files for this process: a command
    meets thousands of untrusted images, and each outcome is in its record.
    """
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("ufd").setLevel(level)
    warnings.filterwarnings("ignore", module=r"PIL\.")
    if level > logging.DEBUG:
        # open_clip logs on the root logger and huggingface_hub retries loudly;
        # ufd reports their failures itself, in one line.
        logging.getLogger().setLevel(logging.CRITICAL)
        for noisy in ("huggingface_hub", "open_clip", "onnxruntime"):
            logging.getLogger(noisy).setLevel(logging.CRITICAL)


def named_paths(values: list[str] | None, default: str, option: str) -> list[tuple[str, Path]]:
    """``NAME=PATH`` or plain ``PATH`` (named ``default``) per value of a repeatable option.

    A value is split at its first ``=`` unless it names an existing path as it is.

    Raises:
        typer.Exit: an empty name or path.
    """
    found = []
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or Path(value).exists() or "/" in name or "\\" in name:
            name, path = default, value
        if not name.strip() or not path:
            raise fail(f"{option} {value!r}: write NAME=PATH (e.g. {option} stylegan=fakes/sg)")
        found.append((name.strip(), Path(path)))
    return found


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``error: message`` to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _traceback_if_verbose() -> None:
    if logger.isEnabledFor(logging.INFO):
        traceback.print_exc(file=sys.stderr)


def _usage_error() -> type[Exception]:
    """Typer's UsageError class (typer vendors click from 0.16; before, click's own)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def run(app: typer.Typer) -> None:
    """Run a command: a bad option or argument is one line on stderr and exit 2.

    typer's own usage block (four lines, a box with ``rich``) is replaced by
    ``error: <what is wrong> (see <command> --help)``; ``--help`` still prints the help.
    C libraries' messages go to the log (:mod:`ufd.cli.c_stderr`), not the terminal.
    """
    from ufd.cli import c_stderr

    c_stderr.route()
    try:
        code = app(standalone_mode=False)
    except _usage_error() as e:
        context = getattr(e, "ctx", None)
        command = context.command_path if context is not None else Path(sys.argv[0]).name
        typer.echo(f"error: {e.format_message()} (see {command} --help)", err=True)
        sys.exit(EXIT_USAGE)
    except typer.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


def run_quickly(call: Callable[[], int], quiet: bool = False) -> None:
    """Run a command's work without typer (a fast path): the same messages and exit codes."""
    setup_logging(0, quiet)
    try:
        code = handle_errors(call)()
    except typer.Exit as e:
        sys.exit(e.exit_code)
    sys.exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """One-line messages: ufd errors and missing extras exit 2, internal errors exit 3."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except UfdError as e:
            _traceback_if_verbose()
            raise fail(str(e)) from None
        except ModuleNotFoundError as e:
            top = (e.name or "").split(".")[0]
            extra = EXTRA_HINTS.get(top)
            if extra is None:
                raise
            _traceback_if_verbose()
            raise fail(
                f"this command needs {top}, which is not installed; "
                f"install it with: pip install 'ufd[{extra}]'"
            ) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:  # `ufd-... | head`: the reader left; nothing to report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(EXIT_PIPE_CLOSED)
        except (typer.Exit, typer.Abort, TyperException):
            raise  # typer's own ways of ending a command
        except Exception as e:  # noqa: BLE001 - a bug: one line (traceback: -v), exit 3
            _traceback_if_verbose()
            raise fail(
                f"internal error: {type(e).__name__}: {e} (run again with -v for the "
                "traceback and report it)",
                EXIT_INTERNAL,
            ) from None

    return wrapper
