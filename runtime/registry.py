"""The one registry of scoring methods: a leaf module that imports nothing from ufd but errors.

Each method module (:mod:`ufd.runtime.methods`) registers its class here with
:func:`register`. Everything else reads it: record fields and their order,
table columns, ``--method`` parsing, and the manifest parser, which is *given*
:func:`config_types` (it never imports the methods). Registration order is the
canonical order of record fields and of ``--method all``.
"""

from __future__ import annotations

from typing import Any

from ufd.runtime.errors import UsageError

REGISTRY: dict[str, Any] = {}
"""Method name -> its class (a :class:`ufd.runtime.methods.base.Method` subclass)."""

PROVENANCE = "provenance"
"""The record field of what the file says about itself (``--provenance``)."""


def register(cls: Any) -> Any:
    """Class decorator: make a method known by its ``name``."""
    REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Forget a method (tests register toy methods for a while)."""
    REGISTRY.pop(name, None)


def method_names() -> tuple[str, ...]:
    """Every registered method, in canonical order."""
    return tuple(REGISTRY)


def method_class(name: str) -> Any:
    """The registered class of ``name``.

    Raises:
        UsageError: unknown name (the message lists the known ones).
    """
    _require_methods()
    if name not in REGISTRY:
        raise UsageError(f"unknown method {name!r}; use {', '.join(REGISTRY)} or all")
    return REGISTRY[name]


def _require_methods() -> None:
    """A program that never imported the methods gets told so, not 'unknown method'."""
    if not REGISTRY:
        raise RuntimeError(
            "no scoring method is registered: import ufd.runtime.methods first "
            "(importing it registers the built-in methods)"
        )


def config_types() -> dict[str, type | None]:
    """Method name -> the dataclass its manifest ``config`` must match (``None``: none)."""
    return {name: cls.config_type for name, cls in REGISTRY.items()}


def parse_methods(spec: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"a,b"`` (or a sequence) -> validated names, in the order given (no ``all``)."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    names = tuple(p.strip() for p in parts if p.strip())
    _require_methods()
    if not names:
        raise UsageError(f"no method in {spec!r}; use {', '.join(REGISTRY)} or all")
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
    methods: str | tuple[str, ...] | list[str], provenance: bool = False, views: bool = False
) -> tuple[str, ...]:
    """Record fields: ``path``, the methods' in canonical order, ``provenance``, ``error``.

    With ``views`` (``--views N``, N > 0) each method's :func:`view_fields` follow its own.
    """
    chosen = set(parse_methods(methods))
    own = [
        f
        for name, cls in REGISTRY.items()
        if name in chosen
        for f in (*cls.fields, *(view_fields(cls) if views else ()))
    ]
    return ("path", *own, *((PROVENANCE,) if provenance else ()), "error")


def all_fields() -> frozenset[str]:
    """Every record field any registered method reports (and ``provenance``)."""
    return frozenset(
        [PROVENANCE, *(f for cls in REGISTRY.values() for f in (*cls.fields, *view_fields(cls)))]
    )


def table_columns() -> dict[str, tuple[str, int]]:
    """Record field -> (header, width) for the table writer, in canonical order.

    Each method's columns, then (shown only with ``--views``) whether its views agree.
    """
    columns = {}
    for cls in REGISTRY.values():
        columns.update({f: (header, width) for f, header, width in cls.table_columns})
        agree = view_fields(cls)[2]
        header = agree.removesuffix("_agree").replace("realonly", "ronly")
        columns[agree] = (header, max(6, len(header)))

    return columns


def declared_type(field: str) -> str | None:
    """The declared column type of a record field (``string``, ``shares``, ``bool``...), if any."""
    for cls in REGISTRY.values():
        if field in cls.field_types:
            return cls.field_types[field]
        if field == view_fields(cls)[2]:
            return "bool"
    return None
