"""Scoring methods: one module each, registered by name in :mod:`ufd.runtime.registry`.

The import order below is the canonical order of record fields and of ``--method all``.
:func:`open_bundle` opens a bundle with this registry's method configs.
"""

from __future__ import annotations

from pathlib import Path

# isort: off
# Registration order = canonical order. A new method: one module, one line here.
from ufd.runtime.methods import linear  # noqa: F401
from ufd.runtime.methods import nn  # noqa: F401
from ufd.runtime.methods import traces  # noqa: F401
from ufd.runtime.methods import realonly  # noqa: F401
from ufd.runtime.methods import fused  # noqa: F401

# isort: on
from ufd.runtime.bundle import Bundle
from ufd.runtime.methods.base import Columns, Measured, Method, Scored, ScoreOptions
from ufd.runtime.methods.method_set import MethodSet
from ufd.runtime.registry import (
    REGISTRY,
    all_fields,
    config_types,
    fields_for,
    method_class,
    method_names,
    parse_methods,
    register,
    registered,
    table_columns,
)


def open_bundle(root: str | Path) -> Bundle:
    """Open the bundle at ``root``, checking each method's config against this registry.

    Raises:
        BundleError: not a bundle, a bad manifest, or an escaping path.
    """
    return Bundle.open(root, config_types())


__all__ = [
    "REGISTRY",
    "Columns",
    "Measured",
    "Method",
    "MethodSet",
    "ScoreOptions",
    "Scored",
    "all_fields",
    "config_types",
    "fields_for",
    "method_class",
    "method_names",
    "open_bundle",
    "parse_methods",
    "register",
    "registered",
    "table_columns",
]
