"""The one registry of scoring methods: a leaf module that imports nothing from ufd but errors.

Each method module (:mod:`ufd.runtime.methods`) registers its class here with
:func:`register`. Everything else reads it: record fields and their order,
table columns, ``--method`` parsing, and the manifest parser, which is *given*
:func:`config_types` (it never imports the methods). Registration order is the
canonical order of record fields and of ``--method all``.

The registry is complete whenever it is asked: every reader goes through
:func:`registered`, which imports the package of the built-in methods
(:data:`BUILTIN_PACKAGE`, whose import registers them in order) the first time,
as timm fills its model registry on package import. A program never has to
import the methods by hand, and the light paths that never ask (a service
client writing JSON lines) never load them. A name registered twice is refused.
"""

from __future__ import annotations

import importlib
from typing import Any

from ufd.runtime.errors import UsageError

REGISTRY: dict[str, Any] = {}
"""Method name -> its class (a :class:`ufd.runtime.methods.base.Method` subclass).
Read it through :func:`registered`, which completes it first."""

BUILTIN_PACKAGE = "ufd.runtime.methods"
"""The package whose import registers the built-in methods (one module each, in order)."""

PROVENANCE = "provenance"
"""The record field of what the file says about itself (``--provenance``)."""
VIDEO_FIELDS = {
    "frames": "int",
    "frame_errors": "int",
    "frame_error": "string",
    "video_rule": "string",
    "timeline": "json",
}
"""The fields every video record has (:mod:`ufd.runtime.video.records`) and their types."""
INPUT_NOTE = "input"
"""The record field of what was done to an image to fit the encoder (``whole`` bundles:
the input cap's centre crop); ``None`` when nothing was."""


class DuplicateName(ValueError):
    """A second registration under a name that is taken (a programming error)."""


def add_unique(table: dict[str, Any], name: str, entry: Any, what: str) -> None:
    """Put ``entry`` in a registry ``table`` under ``name``, refusing a name that is taken.

    Registering the same object again is a no-op. Every ufd registry (methods,
    detectors, transformations, output formats) registers through here.

    Raises:
        DuplicateName: another entry has that name already.
    """
    taken = table.get(name)
    if taken is not None and taken is not entry:
        raise DuplicateName(
            f"{what} {name!r} is registered already by {_origin(taken)}; give "
            f"{_origin(entry)} another name"
        )
    table[name] = entry


def _origin(entry: Any) -> str:
    owner = entry if callable(entry) and hasattr(entry, "__qualname__") else type(entry)
    return f"{owner.__module__}.{owner.__qualname__}"


def register(cls: Any) -> Any:
    """Class decorator: make a method known by its ``name``.

    Raises:
        DuplicateName: another class has that name already.
    """
    add_unique(REGISTRY, cls.name, cls, "method")
    return cls


def unregister(name: str) -> None:
    """Forget a method (tests register toy methods for a while)."""
    REGISTRY.pop(name, None)


def registered() -> dict[str, Any]:
    """Every registered method, name -> class, in canonical order (the built-ins loaded)."""
    importlib.import_module(BUILTIN_PACKAGE)  # registers them on its first import
    return REGISTRY


def method_names() -> tuple[str, ...]:
    """Every registered method, in canonical order."""
    return tuple(registered())


def method_class(name: str) -> Any:
    """The registered class of ``name``.

    Raises:
        UsageError: unknown name (the message lists the known ones).
    """
    methods = registered()
    if name not in methods:
        raise UsageError(f"unknown method {name!r}; use {', '.join(methods)} or all")
    return methods[name]


def config_types() -> dict[str, type | None]:
    """Method name -> the dataclass its manifest ``config`` must match (``None``: none)."""
    return {name: cls.config_type for name, cls in registered().items()}


def parse_methods(spec: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"a,b"`` (or a sequence) -> validated names, in the order given (no ``all``)."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    names = tuple(p.strip() for p in parts if p.strip())
    if not names:
        raise UsageError(f"no method in {spec!r}; use {', '.join(registered())} or all")
    for name in names:
        method_class(name)
    return names


def view_fields(cls: Any) -> tuple[str, str, str]:
    """A method's ``--views`` fields: lowest and highest view score, whether all views agree.

    Named after its score field: ``prob`` -> ``views_prob_min``, ``views_prob_max``,
    ``views_agree``; ``traces_prob`` -> ``traces_views_prob_min`` ...; ``nn_score`` ->
    ``nn_views_score_min`` ...
    """
    head, _, stem = cls.score_field().rpartition("_")
    prefix = f"{head}_" if head else ""
    return f"{prefix}views_{stem}_min", f"{prefix}views_{stem}_max", f"{prefix}views_agree"


def fields_for(
    methods: str | tuple[str, ...] | list[str],
    provenance: bool = False,
    views: bool = False,
    input_note: bool = False,
) -> tuple[str, ...]:
    """Record fields: ``path``, the methods' (in canonical order), then ``error``.

    With ``views`` (``--views N``, N > 0) each method's :func:`view_fields` follow its
    own; ``input`` for bundles that may change an image to fit the encoder
    (``input_note``) and ``provenance`` (when it is read) come before ``error``.
    """
    chosen = set(parse_methods(methods))
    own = [
        f
        for name, cls in registered().items()
        if name in chosen
        for f in (*cls.fields, *(view_fields(cls) if views else ()))
    ]
    extra = (*((INPUT_NOTE,) if input_note else ()), *((PROVENANCE,) if provenance else ()))
    return ("path", *own, *extra, "error")


def all_fields() -> frozenset[str]:
    """Every record field any registered method reports (and ``provenance``)."""
    return frozenset(
        [
            PROVENANCE,
            INPUT_NOTE,
            *(f for cls in registered().values() for f in (*cls.fields, *view_fields(cls))),
        ]
    )


def table_columns() -> dict[str, tuple[str, int]]:
    """Record field -> (header, width) for the table writer, in canonical order.

    Each method's columns, then (shown only with ``--views``) whether its views agree.
    """
    columns = {}
    for cls in registered().values():
        columns.update({f: (header, width) for f, header, width in cls.table_columns})
        agree = view_fields(cls)[2]
        header = agree.removesuffix("_agree").replace("realonly", "ronly")
        columns[agree] = (header, max(6, len(header)))

    return columns


def field_kind(field: str) -> str:
    """What a record field holds: ``string``, ``float``, ``int``, ``bool``, ``shares``, ``json``.

    Names, labels and errors are strings, scores floats, unless the method declares
    otherwise (:func:`declared_type`): the one rule every typed output follows
    (Parquet columns, v2 tensors).
    """
    declared = declared_type(field)
    if declared is not None:
        return declared
    return "string" if field in ("path", "error") or field.endswith("label") else "float"


def declared_type(field: str) -> str | None:
    """The declared column type of a record field (``string``, ``shares``, ``bool``...), if any."""
    if field == INPUT_NOTE:
        return "string"
    if field == PROVENANCE:
        return "json"
    if field in VIDEO_FIELDS:
        return VIDEO_FIELDS[field]
    for cls in registered().values():
        if field in cls.field_types:
            return str(cls.field_types[field])
        if field == view_fields(cls)[2]:
            return "bool"
    return None
