"""A bundle's loaded methods: each created and loaded once, measured once per batch.

The registry of method classes is :mod:`ufd.runtime.registry` (a leaf module);
this is what one bundle makes of it.
"""

from __future__ import annotations

import threading

import numpy as np

from ufd.runtime.bundle import Bundle
from ufd.runtime.errors import UsageError
from ufd.runtime.methods.base import Columns, Measured, Method, MethodContext, Scored, ScoreOptions
from ufd.runtime.methods.linear import HeadMethod
from ufd.runtime.methods.nn import BankMethod
from ufd.runtime.methods.views import split_rows, with_views
from ufd.runtime.providers import Provider
from ufd.runtime.registry import method_class, parse_methods, registered


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
        return tuple(n for n, cls in registered().items() if cls.offered_by(manifest.method(n)))

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

    def head_method(self, name: str) -> HeadMethod:
        """Method ``name``, loaded, as a method with a head graph (``linear``, ``traces``).

        Raises:
            BundleError: the bundle lacks it; UsageError: it has no head.
        """
        method = self.get(name)
        if not isinstance(method, HeadMethod):
            raise UsageError(f"the {name} method has no head graph")
        return method

    def bank_method(self, name: str) -> BankMethod:
        """Method ``name``, loaded, as a k-NN method with a bank (``nn``, ``realonly``).

        Raises:
            BundleError: the bundle lacks it; UsageError: it has no bank.
        """
        method = self.get(name)
        if not isinstance(method, BankMethod):
            raise UsageError(f"the {name} method has no bank")
        return method

    def largest_k(self) -> int | None:
        """The largest ``k`` every k-NN method of the bundle can give (its smallest bank)."""
        sizes = [
            len(self.bank_method(name).bank.bank)
            for name in self.available()
            if method_class(name).uses_k
        ]
        return min(sizes) if sizes else None

    def check(
        self, names: tuple[str, ...], options: ScoreOptions, need_threshold: bool = True
    ) -> None:
        """Load every method named and refuse options they cannot honour, up front.

        A ``k`` over the smallest bank is refused whatever the methods: it is never
        silently ignored by a method that takes no ``k``.

        Raises:
            UsageError: bad options.
            BundleError: a method the bundle lacks, or its threshold.
        """
        k_max = self.largest_k() if options.k is not None else None
        if k_max is not None and options.k is not None and options.k > k_max:
            raise UsageError(f"k must be at most {k_max}, the smallest bank's size")
        for name in names:
            self.get(name).check(options, need_threshold)

    def measure(
        self,
        names: tuple[str, ...],
        features: np.ndarray,
        options: ScoreOptions,
        memo: dict[str, Measured] | None = None,
    ) -> dict[str, Measured]:
        """Each method's threshold-free output for a feature batch, each measured once.

        A method built on others (``fused``: :attr:`Method.components`) is given
        their measurements; a component also asked for by name is not measured twice.
        ``memo`` carries measurements already made for this batch.
        """
        memo = {} if memo is None else memo
        for name in names:
            self._measure_once(name, features, options, memo)
        return {name: memo[name] for name in names}

    def _measure_once(
        self, name: str, features: np.ndarray, options: ScoreOptions, memo: dict[str, Measured]
    ) -> Measured:
        if name not in memo:
            method = self.get(name)
            if method.components:
                parts = {
                    part: self._measure_once(part, features, options, memo)
                    for part in method.components
                }
                memo[name] = method.combine(parts)
            else:
                memo[name] = method.measure(features, options)
        return memo[name]

    def run(
        self,
        names: tuple[str, ...],
        features: np.ndarray,
        options: ScoreOptions,
        views: np.ndarray | None = None,
    ) -> dict[str, Scored]:
        """Each method's whole output for a feature batch (every method measured once).

        Args:
            names: methods, from :meth:`resolve`.
            features: (N, D) features of the images.
            options: per-call settings.
            views: (N, V, D) features of each image's views (``--views``), or ``None``;
                measured in the same call as the images', and added as
                :mod:`~ufd.runtime.methods.views` fields.
        """
        if views is None or views.shape[1] == 0:
            measured = self.measure(names, features, options)
            return {name: self.get(name).finish(measured[name]) for name in names}
        n, count = len(features), views.shape[1]
        flat = np.concatenate([features, views.reshape(n * count, -1)])
        out = {}
        for name, both in self.measure(names, flat, options).items():
            own, of_views = split_rows(both, n)
            method = self.get(name)
            out[name] = with_views(method, method.finish(own), of_views, count)
        return out

    def columns(
        self,
        names: tuple[str, ...],
        features: np.ndarray,
        options: ScoreOptions,
        views: np.ndarray | None = None,
    ) -> Columns:
        """Every named method's record fields for a feature batch (see :meth:`run`)."""
        columns: Columns = {}
        for scored in self.run(names, features, options, views).values():
            columns |= scored.columns
        return columns
