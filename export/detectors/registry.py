"""The registry of detectors ``ufd-export --detector`` knows: a leaf that detector modules import.

Registration order is the order of ``ufd-export --list``. A new detector is one
module with one class decorated with :func:`register`, and one import line in
:mod:`ufd.export.detectors`.
"""

from __future__ import annotations

from typing import Any

from ufd.runtime.errors import UsageError
from ufd.runtime.registry import add_unique

DETECTORS: dict[str, Any] = {}
"""Detector name -> an instance of its :class:`~ufd.export.detectors.base.Detector` class."""


def register(cls: Any) -> Any:
    """Class decorator: make a detector known by its ``name``.

    Raises:
        DuplicateName: another detector has that name already.
    """
    taken = DETECTORS.get(cls.name)
    add_unique(DETECTORS, cls.name, taken if type(taken) is cls else cls(), "detector")
    return cls


def get_detector(name: str) -> Any:
    """The detector called ``name``.

    Raises:
        UsageError: unknown name (the message lists the known ones).
    """
    if name not in DETECTORS:
        raise UsageError(
            f"unknown detector {name!r}; use one of {', '.join(DETECTORS)} (ufd-export --list)"
        )
    return DETECTORS[name]


def describe_detectors() -> list[str]:
    """``ufd-export --list``: each detector, its backbone, input size and weight files."""
    lines = []
    for name, detector in DETECTORS.items():
        lines += [
            f"{name}: {detector.summary}",
            f"  backbone: {detector.backbone}; input: {detector.input_size}",
            f"  weights: {detector.weights}",
            f"  licence of the published weights: {detector.licence}",
        ]
    return lines
