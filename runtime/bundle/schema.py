"""Strict conversion of JSON documents into typed dataclasses, and their fingerprint.

:func:`build` checks a JSON value against a type field by field: unknown or
missing keys, wrong types and values outside a ``Literal`` are errors, in the
way open_clip checks model configs against its dataclasses. :func:`lenient`
builds a dataclass from whatever fields a document has (for provenance
figures, which must never stop a bundle from loading). :func:`describe` gives a
canonical text of a type tree, so a test can notice a contract change.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from ufd.runtime.errors import BundleError


def build(tp: Any, value: Any, where: str) -> Any:
    """Convert JSON ``value`` to type ``tp``, raising :class:`BundleError` naming ``where``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, where)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            raise BundleError(f"{where} is {value!r}; expected one of {list(allowed)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return build(inner[0], value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise BundleError(f"{where} must be an object")
        key_tp, val_tp = typing.get_args(tp)
        return {
            build(key_tp, str(k), f"{where} key"): build(val_tp, v, f"{where}.{k}")
            for k, v in value.items()
        }
    if origin in (list, tuple):
        return _build_sequence(tp, value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BundleError(f"{where} must be a number")
        return float(value)
    if tp in (int, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise BundleError(f"{where} must be of type {tp.__name__}")
        return value
    raise BundleError(f"{where}: unsupported manifest type {tp!r}")  # pragma: no cover


def _build_dataclass(tp: Any, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise BundleError(f"{where} must be an object")
    hints = typing.get_type_hints(tp)
    fields = dataclasses.fields(tp)
    unknown = set(value) - {f.name for f in fields}
    if unknown:
        raise BundleError(f"{where} has unknown field(s) {sorted(unknown)}")
    missing = {f.name for f in fields if _required(f)} - set(value)
    if missing:
        raise BundleError(f"{where} lacks field(s) {sorted(missing)}")
    return tp(**{k: build(hints[k], v, f"{where}.{k}") for k, v in value.items()})


def _build_sequence(tp: Any, value: Any, where: str) -> Any:
    if not isinstance(value, list):
        raise BundleError(f"{where} must be a list")
    args = typing.get_args(tp)
    items = [build(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if typing.get_origin(tp) is tuple:
        if args[-1] is not Ellipsis and len(items) != len(args):
            raise BundleError(f"{where} must have {len(args)} items")
        return tuple(items)
    return items


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def lenient(tp: type, value: Any) -> Any:
    """Build dataclass ``tp`` from the fields ``value`` has; others are ``None``.

    Unknown keys are ignored and nothing is type-checked: for figures that
    describe a bundle's history (parity, build times), never its behaviour.
    """
    value = value if isinstance(value, dict) else {}
    names = {f.name for f in dataclasses.fields(tp)}
    return tp(**{name: value.get(name) for name in names})


def describe(tp: Any) -> str:
    """A canonical text of a type tree: dataclass fields, their types and defaults."""
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        parts = []
        for f in dataclasses.fields(tp):
            default = "" if _required(f) else f"={_default_text(f)}"
            parts.append(f"{f.name}:{describe(hints[f.name])}{default}")
        return f"{getattr(tp, '__name__', repr(tp))}({', '.join(parts)})"
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "Literal[" + ",".join(repr(a) for a in args) + "]"
    if origin in (typing.Union, types.UnionType):  # one spelling for X | None and Optional[X]
        return "Union[" + ",".join(describe(a) for a in args) + "]"
    if args:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{','.join(describe(a) for a in args)}]"
    return getattr(tp, "__name__", repr(tp))


def _default_text(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    factory: Any = f.default_factory  # set: the field is not required
    return repr(factory())
