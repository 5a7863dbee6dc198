"""The method registry (by name, in canonical order) and a bundle's loaded methods.

Adding a method: one module in this package defining a :class:`Method`
subclass decorated with :func:`register`, and its import in
``methods/__init__.py`` (which fixes the canonical order of record fields).
Records, writers, ``ufd-detect``, ``ufd-eval``, ``ufd-calibrate``,
``ufd-train --method fused``, the service and the scanner all read this
registry.
"""

from __future__ import annotations

import threading

import numpy as np

from ufd.runtime.bundle import Bundle
from ufd.runtime.bundle.manifest import register_method_config
from ufd.runtime.errors import UsageError
from ufd.runtime.methods.base import Columns, Measured, Method, MethodContext, Scored, ScoreOptions
from ufd.runtime.providers import Provider

REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method known by its ``name`` (and its manifest config)."""
    REGISTRY[cls.name] = cls
    register_method_config(cls.name, cls.config_type)
    return cls


def unregister(name: str) -> None:
    """Forget a method (tests register toy methods for a while)."""
    from ufd.runtime.bundle.manifest import _METHOD_CONFIGS

    REGISTRY.pop(name, None)
    _METHOD_CONFIGS.pop(name, None)


def method_names() -> tuple[str, ...]:
    """Every registered method, in canonical order."""
    return tuple(REGISTRY)


def method_class(name: str) -> type[Method]:
    """The registered class of ``name``.

    Raises:
        UsageError: unknown name (the message lists the known ones).
    """
    if name not in REGISTRY:
        raise UsageError(f"unknown method {name!r}; use {', '.join(REGISTRY)} or all")
    return REGISTRY[name]


def parse_methods(spec: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"a,b"`` (or a sequence) -> validated names, in the order given (no ``all``)."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    names = tuple(p.strip() for p in parts if p.strip())
    if not names:
        raise UsageError(f"no method in {spec!r}; use {', '.join(REGISTRY)} or all")
    for name in names:
        method_class(name)
    return names


PROVENANCE = "provenance"
"""The record field of what the file says about itself (``--provenance``)."""


def fields_for(
    methods: str | tuple[str, ...] | list[str], provenance: bool = False
) -> tuple[str, ...]:
    """Record fields: ``path``, the methods' in canonical order, ``provenance``, ``error``."""
    chosen = set(parse_methods(methods))
    own = [f for name, cls in REGISTRY.items() if name in chosen for f in cls.fields]
    return ("path", *own, *((PROVENANCE,) if provenance else ()), "error")


def all_fields() -> frozenset[str]:
    """Every record field any registered method reports (and ``provenance``)."""
    return frozenset([PROVENANCE, *(f for cls in REGISTRY.values() for f in cls.fields)])


def table_columns() -> dict[str, tuple[str, int]]:
    """Record field -> (header, width) for the table writer, in canonical order."""
    return {
        f: (header, width) for cls in REGISTRY.values() for f, header, width in cls.table_columns
    }


class MethodSet:
    """The methods of one bundle, each created and loaded once, from any thread."""

    def __init__(
        self,
        bundle: Bundle,
        provider: Provider,
        threads: int | None = None,
        verify: bool = True,
        thresholds: dict[str, float] | None = None,
    ) -> None:
        self.bundle = bundle
        self.context = MethodContext(bundle, provider, threads, verify, self, thresholds or {})
        self._loaded: dict[str, Method] = {}
        self._lock = threading.RLock()  # fused loads its components while loading

    def available(self) -> tuple[str, ...]:
        """Methods this bundle can run as it is, in canonical order."""
        manifest = self.bundle.manifest
        return tuple(n for n, cls in REGISTRY.items() if cls.offered_by(manifest.method(n)))

    def resolve(self, spec: str) -> tuple[str, ...]:
        """``all`` -> every available method (canonical order); ``a,b`` -> both, validated."""
        if spec.strip() == "all":
            return self.available()
        return parse_methods(spec)

    def get(self, name: str) -> Method:
        """Method ``name``, loaded.

        Raises:
            UsageError: unknown method.
            BundleError: the bundle lacks it or its files are damaged.
        """
        method = self._loaded.get(name)
        if method is not None:
            return method
        cls = method_class(name)
        with self._lock:
            if name not in self._loaded:
                method = cls(self.context)
                method.load()
                self._loaded[name] = method
        return self._loaded[name]

    def check(
        self, names: tuple[str, ...], options: ScoreOptions, need_threshold: bool = True
    ) -> None:
        """Load every method named and refuse options they cannot honour, up front."""
        for name in names:
            self.get(name).check(options, need_threshold)

    def measure(
        self, names: tuple[str, ...], features: np.ndarray, options: ScoreOptions
    ) -> dict[str, Measured]:
        """Each method's threshold-free output for a feature batch."""
        return {name: self.get(name).measure(features, options) for name in names}

    def run(
        self, names: tuple[str, ...], features: np.ndarray, options: ScoreOptions
    ) -> dict[str, Scored]:
        """Each method's whole output for a feature batch."""
        return {name: self.get(name).run(features, options) for name in names}

    def columns(
        self, names: tuple[str, ...], features: np.ndarray, options: ScoreOptions
    ) -> Columns:
        """Every named method's record fields for a feature batch."""
        columns: Columns = {}
        for scored in self.run(names, features, options).values():
            columns |= scored.columns
        return columns
