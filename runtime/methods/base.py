"""The protocol every scoring method implements, and the per-batch data it returns.

A method turns a batch of encoder features into:

* ``raw``: a continuous score, higher = more fake (logits, distances); what
  ``fused`` combines;
* ``score``: the value its threshold applies to (p(fake) for heads, the vote
  share for ``nn``, a distance for ``realonly``); what ``ufd-calibrate`` sets
  a threshold on and ``ufd-eval`` ranks by;
* a decision (fake or not) and its record fields.

:meth:`Method.measure` needs no threshold (calibration runs before there is
one); :meth:`Method.run` adds the decision and the record fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from ufd.runtime.bundle import Bundle, MethodEntry
from ufd.runtime.errors import BundleError, UsageError

if TYPE_CHECKING:
    from ufd.runtime.providers import Provider

Columns = dict[str, list[Any]]
"""Record fields of one batch: field name -> one value per encoded input."""


@dataclass(frozen=True)
class ScoreOptions:
    """Per-call settings of a scoring call.

    ``k`` neighbours (``None``: the method's default), exact search, and how many
    re-upload views of each image to score too (``--views``).
    """

    k: int | None = None
    exact: bool | None = None
    views: int = 0


@dataclass
class Measured:
    """A method's threshold-free output for a feature batch (see the module docstring)."""

    raw: np.ndarray
    score: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Scored:
    """A method's whole output for a feature batch: measured, decided, as record fields.

    ``unsure`` marks rows labelled ``unsure``: in the method's unsure band (never
    fake ones), or, with ``--views``, whose views disagree with them.

    """

    measured: Measured
    is_fake: np.ndarray
    columns: Columns
    unsure: np.ndarray | None = None


class Siblings(Protocol):
    """What a method may ask of the other methods of its bundle (a ``MethodSet`` is one).

    Declared here, not imported, so that ``base`` needs nothing of the modules built on it.
    """

    def get(self, name: str) -> Method:
        """Method ``name``, loaded."""
        ...

    def check(self, names: tuple[str, ...], options: ScoreOptions, need_threshold: bool) -> None:
        """Refuse options the methods cannot honour."""
        ...

    def measure(
        self, names: tuple[str, ...], features: np.ndarray, options: ScoreOptions
    ) -> dict[str, Measured]:
        """Each method's measurement of a feature batch, each measured once."""
        ...


@dataclass
class MethodContext:
    """What a method needs to load and run."""

    bundle: Bundle
    provider: Provider
    threads: int | None
    verify: bool
    methods: Siblings
    thresholds: dict[str, float] = field(default_factory=dict)
    """Thresholds given by the caller (``--threshold``), overriding the bundle's."""


class Method:
    """Base class of a scoring method; subclasses register with :func:`register`.

    Class attributes describe the method; an instance serves one bundle and is
    loaded once (thread-safely) by :class:`~ufd.runtime.methods.method_set.MethodSet`.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    """One line for ``--help``."""
    fields: ClassVar[tuple[str, ...]]
    """Its record fields, in output order."""
    table_columns: ClassVar[tuple[tuple[str, str, int], ...]] = ()
    """(record field, header, width) per ``--format table`` column."""
    field_types: ClassVar[dict[str, str]] = {}
    """Types of fields that are not numbers or labels, for columnar writers (Parquet):
    ``string``, ``float``, ``int`` or ``shares`` (a map of name to share)."""
    config_type: ClassVar[type | None] = None
    """The dataclass of its ``config`` in the manifest (``None``: no settings)."""
    default_threshold: ClassVar[float | None] = 0.5
    """Threshold when the bundle sets none; ``None``: it must be calibrated."""
    calibratable: ClassVar[bool] = True
    """Whether ``ufd-calibrate`` can set its threshold."""
    uses_k: ClassVar[bool] = False
    """Whether ``--k`` applies (k-NN methods)."""
    missing_hint: ClassVar[str] = ""
    """How to give a bundle this method."""
    components: tuple[str, ...] = ()
    """Methods whose measurements this one combines (:meth:`combine`); none: :meth:`measure`."""

    def __init__(self, context: MethodContext) -> None:
        self.context = context
        self.bundle = context.bundle
        entry = context.bundle.manifest.method(self.name)
        if entry is None:
            raise BundleError(
                f"bundle {self.bundle.root} has no {self.name} method; {self.missing_hint}"
            )
        self.entry: MethodEntry = entry
        self.config = entry.config

    @classmethod
    def offered_by(cls, entry: MethodEntry | None) -> bool:
        """Whether a bundle with this manifest entry can run the method as it is."""
        return entry is not None and (
            entry.threshold is not None or cls.default_threshold is not None
        )

    def load(self) -> None:
        """Load (and verify) the method's files; called once, before any scoring."""

    @property
    def threshold(self) -> float:
        """The decision threshold on :attr:`Measured.score`.

        Raises:
            BundleError: the method needs a calibrated threshold and has none.
        """
        if self.name in self.context.thresholds:
            return self.context.thresholds[self.name]
        value = self.entry.threshold if self.entry.threshold is not None else self.default_threshold
        if value is None:
            raise BundleError(
                f"the {self.name} method needs a threshold: run ufd-calibrate BUNDLE "
                f"--method {self.name} --real HELD_OUT_REALS"
            )
        return value

    def default_k(self) -> int:
        """Neighbours when none are given: the calibrated k, else 1."""
        calibration = self.entry.calibration
        return calibration.k if calibration is not None and calibration.k else 1

    def k(self, options: ScoreOptions) -> int:
        """The k this call uses."""
        return options.k if options.k is not None else self.default_k()

    def check(self, options: ScoreOptions, need_threshold: bool = True) -> None:
        """Refuse options this method cannot honour (before any image is read).

        Raises:
            UsageError: bad ``k``.
            BundleError: no threshold where one is needed.
        """
        if options.k is not None and options.k < 1:
            raise UsageError("k must be at least 1")
        if need_threshold:
            _ = self.threshold

    def measure(self, features: np.ndarray, options: ScoreOptions) -> Measured:
        """Raw score and thresholded score of each feature row (no threshold needed)."""
        raise NotImplementedError

    def combine(self, measured: dict[str, Measured]) -> Measured:
        """The measurement of a method built on :attr:`components`, from theirs."""
        raise NotImplementedError

    def describe(self, options: ScoreOptions) -> str | None:
        """One line on how a run with ``options`` searches (k-NN methods), else ``None``."""
        return None

    def decide(self, measured: Measured) -> np.ndarray:
        """Fake or not, per row: the score above the threshold."""
        return np.array([float(s) > self.threshold for s in measured.score], dtype=bool)

    @property
    def real_below(self) -> float | None:
        """The unsure band's lower edge (``ufd-calibrate --target-fnr``), or ``None``.

        A threshold given by the caller replaces the calibrated pair: no band then.
        """
        if self.name in self.context.thresholds:
            return None
        return self.entry.real_below

    def unsure(self, measured: Measured, is_fake: np.ndarray) -> np.ndarray:
        """Rows not called fake whose score lies above the band's lower edge."""
        low = self.real_below
        if low is None:
            return np.zeros(len(is_fake), dtype=bool)
        above = np.array([float(s) > low for s in measured.score], dtype=bool)
        unsure: np.ndarray = np.logical_and(~is_fake, above)
        return unsure

    @classmethod
    def label_field(cls) -> str:
        """The record field holding the method's ``real`` / ``unsure`` / ``fake`` label."""
        return next(f for f in cls.fields if f.endswith("label"))

    @classmethod
    def score_field(cls) -> str:
        """The record field holding :attr:`Measured.score` (``prob``, ``nn_score``...)."""
        return next(f for f in cls.fields if f.endswith(("prob", "score")))

    def columns(self, measured: Measured, is_fake: np.ndarray) -> Columns:
        """The record fields of a batch."""
        raise NotImplementedError

    def run(self, features: np.ndarray, options: ScoreOptions) -> Scored:
        """Measure, decide and format one feature batch."""
        return self.finish(self.context.methods.measure((self.name,), features, options)[self.name])

    def finish(self, measured: Measured) -> Scored:
        """Decide and format a batch's measurement (the unsure band applied)."""
        is_fake = self.decide(measured)
        columns = self.columns(measured, is_fake)
        unsure = self.unsure(measured, is_fake)
        if unsure.any():
            field = self.label_field()
            labelled = zip(unsure, columns[field], strict=True)
            columns[field] = [UNSURE if u else label for u, label in labelled]
        return Scored(measured, is_fake, columns, unsure)


def sigmoid(logit: float) -> float:
    """Numerically stable logistic function."""
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    z = math.exp(logit)
    return z / (1.0 + z)


def probabilities(logits: np.ndarray) -> np.ndarray:
    """``sigmoid`` of each logit (float64), exactly as records report them."""
    return np.array([sigmoid(float(x)) for x in logits], dtype=np.float64)


UNSURE = "unsure"


def labels(is_fake: np.ndarray) -> list[str]:
    """``fake`` / ``real`` per decision."""
    return ["fake" if f else "real" for f in is_fake]


def check_k_fits(method: str, k: int, bank_size: int) -> None:
    """Refuse a k larger than a bank.

    Raises:
        UsageError: with the bank's size.
    """
    if k > bank_size:
        raise UsageError(f"k={k} exceeds the {method} bank's {bank_size} vectors")
