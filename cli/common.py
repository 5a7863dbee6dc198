"""What every ufd command shares: logging, error printing, option help from the registries.

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
from typing import Annotated, ParamSpec, TypeVar

import typer
from typer.exceptions import TyperException

from ufd.runtime.errors import UfdError
from ufd.runtime.providers import PROVIDER_HELP
from ufd.runtime.transforms import REUPLOAD_NAMES

P = ParamSpec("P")
R = TypeVar("R")

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERNAL = 3  # a bug, never to be read as "some inputs failed" (1)
EXIT_INTERRUPTED = 130
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE, as shell tools end when their reader closes the pipe
EXIT_CODES_HELP = (
    "Exit status: 0 done, 1 some inputs failed, 2 usage or bundle error, 3 internal error "
    "(a bug: please report it), 130 interrupted."
)
BATCH_HELP = "Images per encoder call. Default: the provider's (8 on the CPU, 32 on a GPU)."
VIEWS_HELP = (
    f"Also score N re-upload views of each image, in this order: {', '.join(REUPLOAD_NAMES)}. "
    "Each method adds the views' lowest and highest score and whether every view's label "
    "agrees (views_prob_min, views_prob_max, views_agree; traces_views_agree, ...); an "
    "image whose views disagree is labelled unsure (its score stays its own). 0: none."
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
    "pyarrow": "scale",
    "ray": "scale",
    "hnswlib": "hnswlib",
    "c2pa": "provenance",
    "model_signing": "signing",
}
"""Missing module -> the extra that installs it."""
logger = logging.getLogger("ufd")


TrustKeys = Annotated[
    list[Path],
    typer.Option(
        "--trust-key",
        help="Use only bundles signed with this public key (ufd-bundle sign); repeatable. "
        "Also UFD_TRUSTED_KEYS (keys separated by ':') and UFD_TRUSTED_CERTS (certificate "
        "chains). An unsigned bundle, another signer or a change after signing: exit 2.",
    ),
]


def trust(keys: list[Path]) -> None:
    """Apply ``--trust-key``: every bundle this process (and its workers) opens is checked."""
    from ufd.runtime.bundle.signing import trust as trust_keys

    if keys:
        trust_keys(keys)


def provider_help() -> str:
    """``--provider`` help, from the provider table."""
    return PROVIDER_HELP


def help_wanted() -> bool:
    """Whether this process shows a command's help (``--help``)."""
    return "--help" in sys.argv[1:]


def methods_help(allow_all: bool = True) -> str:
    """``--method`` help, from the method registry.

    The methods (numpy, onnxruntime) are imported only when help is shown: typer
    builds every option's help at every start, and a one-image call through a
    service (``ufd-detect --server``) should not pay for modules it never uses.
    """
    if not help_wanted():
        return "a method, a comma-separated list, or all (see --help)."
    from ufd.runtime.registry import registered

    text = "; ".join(cls.summary for cls in registered().values())

    return text + (
        "; a comma-separated list, or all (every one the bundle has)." if allow_all else "."
    )


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


def named_paths(values: list[str], default: str, option: str) -> list[tuple[str, Path]]:
    """``NAME=PATH`` or plain ``PATH`` (named ``default``) per value of a repeatable option.

    A value is split at its first ``=`` unless it names an existing path as it is.

    Raises:
        typer.Exit: an empty name or path.
    """
    found = []
    for value in values:
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
