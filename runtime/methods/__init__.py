"""Scoring methods: one module each, registered by name, in canonical order.

The import order below is the order of record fields and of ``--method all``.
"""

# isort: off
# Registration order = canonical order. A new method: one module, one line here.
from ufd.runtime.methods import linear  # noqa: F401
from ufd.runtime.methods import nn  # noqa: F401
from ufd.runtime.methods import traces  # noqa: F401
from ufd.runtime.methods import realonly  # noqa: F401
from ufd.runtime.methods import fused  # noqa: F401

# isort: on
from ufd.runtime.methods.base import Columns, Measured, Method, Scored, ScoreOptions
from ufd.runtime.methods.registry import (
    REGISTRY,
    MethodSet,
    all_fields,
    fields_for,
    method_class,
    method_names,
    parse_methods,
    register,
    table_columns,
)

__all__ = [
    "REGISTRY",
    "Columns",
    "Measured",
    "Method",
    "MethodSet",
    "ScoreOptions",
    "Scored",
    "all_fields",
    "fields_for",
    "method_class",
    "method_names",
    "parse_methods",
    "register",
    "table_columns",
]
