"""Every seed and every fuzzing finding, replayed through its target (tests/fuzz_targets.py).

A finding is saved as ``tests/fixtures/fuzz/<target>/finding-*`` once fixed, so it
can never come back. Each input must be handled as ufd handles bad input: a
result, or a refusal (an error record, a 4xx, a BundleError); never a crash.
"""

from __future__ import annotations

import contextlib

import fuzz_targets
import pytest

CASES = sorted(
    (target, path)
    for target in fuzz_targets.TARGETS
    for path in (fuzz_targets.CORPUS / target).glob("*")
)


def test_every_target_has_seeds() -> None:
    assert {target for target, _ in CASES} == set(fuzz_targets.TARGETS)


@pytest.mark.parametrize(("target", "path"), CASES, ids=[f"{t}/{p.name}" for t, p in CASES])
def test_replayed_input_is_handled(target: str, path) -> None:
    with contextlib.suppress(fuzz_targets.Refused):  # refused as bad input is: not a finding
        fuzz_targets.TARGETS[target](path.read_bytes())
