"""Parse a command line without typer, from the command's own typer declarations.

typer builds a click command from a function's signature at every start (~0.1 s
for ``ufd-detect``'s); a device that calls ``ufd-detect --server`` once per image
should not pay that. :func:`quick_values` reads the same declarations (the
``Annotated`` options of :mod:`ufd.cli.options` and the command's own) and parses
the plain forms of a chosen set of options: flags, ``--name VALUE``,
``--name=VALUE``, short aliases, bounds, the environment variable. Anything else
(help, a repeated or unknown option, a value out of bounds) returns ``None``, and
typer parses the line as always, with its own messages. The values then go to
the very same function.
"""

from __future__ import annotations

import inspect
import os
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SIMPLE_TYPES = (str, int, float, Path)


@dataclass(frozen=True)
class _Option:
    name: str
    kind: type
    flag_value: bool | None
    """For ``--on/--off`` flags: the value this spelling sets; ``None``: takes a value."""
    low: float | None
    high: float | None


def _declaration(annotation: Any) -> tuple[type, Any]:
    """(the plain type, the typer ``OptionInfo``/``ArgumentInfo``) of an ``Annotated`` type."""
    if typing.get_origin(annotation) is not typing.Annotated:
        return annotation, None
    base, *extras = typing.get_args(annotation)
    info = next((e for e in extras if hasattr(e, "param_decls")), None)
    if typing.get_origin(base) in (typing.Union, types.UnionType):
        base = next(a for a in typing.get_args(base) if a is not type(None))
    return base, info


def _spellings(name: str, kind: type, info: Any) -> Iterable[tuple[str, _Option]]:
    """Every way to write option ``name``: its declared flags, or ``--name-with-dashes``."""
    first = info.default  # in Annotated[...] style typer keeps the first flag here
    decls = [first] if isinstance(first, str) else []
    declared = [d for d in (*decls, *info.param_decls) if d.startswith("-")] or [
        "--" + name.replace("_", "-") + ("/--no-" + name.replace("_", "-") if kind is bool else "")
    ]
    for decl in declared:
        on, _, off = decl.partition("/")
        for flag, value in ((on, True), (off, False)):
            for spelling in flag.split() if flag else ():
                yield (
                    spelling,
                    _Option(
                        name,
                        kind,
                        value if kind is bool else None,
                        getattr(info, "min", None),
                        getattr(info, "max", None),
                    ),
                )


def quick_values(
    command: Callable[..., Any], argv: list[str], allowed: frozenset[str]
) -> dict[str, Any] | None:
    """The keyword arguments ``command`` takes for ``argv``, or ``None`` (let typer parse).

    Args:
        command: a typer command function (``Annotated`` parameters).
        argv: the arguments, without the program name.
        allowed: the options this fast path may parse (by parameter name).
    """
    hints = typing.get_type_hints(command, include_extras=True)
    values: dict[str, Any] = {}
    options: dict[str, _Option] = {}
    positional: list[tuple[str, type]] = []
    for name, parameter in inspect.signature(command).parameters.items():
        kind, info = _declaration(hints[name])
        values[name] = parameter.default
        if info is None:  # a typer.Context: no value on the command line
            continue
        if type(info).__name__ == "ArgumentInfo":
            positional.append((name, kind))
        elif name in allowed and (kind is bool or kind in SIMPLE_TYPES):
            options.update(_spellings(name, kind, info))
            if info.envvar and os.environ.get(info.envvar):
                values[name] = os.environ[info.envvar]
    return _parse(argv, values, options, positional)


def _parse(
    argv: list[str],
    values: dict[str, Any],
    options: dict[str, _Option],
    positional: list[tuple[str, type]],
) -> dict[str, Any] | None:
    given: set[str] = set()
    loose: list[str] = []
    args = iter(argv)
    for arg in args:
        if not arg.startswith("-") or arg == "-":
            loose.append(arg)
            continue
        spelling, equals, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        option = options.get(spelling)
        if option is None or option.name in given:
            return None  # help, an option for typer, or one given twice
        given.add(option.name)
        if option.flag_value is not None:
            if equals:
                return None
            values[option.name] = option.flag_value
            continue
        raw = inline if equals else next(args, None)
        value = _convert(raw, option)
        if value is None:
            return None
        values[option.name] = value
    return _place(loose, values, positional)


def _convert(raw: str | None, option: _Option) -> Any:
    """The value of ``raw`` for ``option``, or ``None`` when typer should say what is wrong."""
    if raw is None:
        return None
    try:
        value = option.kind(raw)
    except ValueError:
        return None
    if isinstance(value, (int, float)) and (
        (option.low is not None and value < option.low)
        or (option.high is not None and value > option.high)
    ):
        return None
    return value


def _place(
    loose: list[str], values: dict[str, Any], positional: list[tuple[str, type]]
) -> dict[str, Any] | None:
    """Give the positional arguments to the command's arguments, a list taking the rest."""
    for index, (name, kind) in enumerate(positional):
        if typing.get_origin(kind) is list:
            values[name] = loose[index:] or None
            return values
        if index >= len(loose) or kind not in SIMPLE_TYPES:
            return None
        values[name] = kind(loose[index])
    return values if len(loose) == len(positional) else None
