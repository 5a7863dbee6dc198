"""Every seed and every fuzzing finding, replayed through its target (tests/fuzz_targets.py).

A finding is saved as ``tests/fixtures/fuzz/<target>/finding-*`` once fixed, so it
can never come back. Each input must be handled as ufd handles bad input: a
result, or a refusal (an error record, a 4xx, a BundleError); never a crash.
"""

from __future__ import annotations

import fuzz_targets
import pytest

CASES = sorted(
    (target, path)
    for target in fuzz_targets.TARGETS
    for path in (fuzz_targets.CORPUS / target).glob("*")
)


def test_every_target_has_seeds() -> None:
    assert {target for target, _ in CASES} == set(fuzz_targets.TARGETS)


def _replay(target: str, data: bytes) -> str:
    """``handled``, or ``refused: <reason>`` (bad input refused as it should be); a crash
    (any other exception, a target's own invariant) fails the test."""
    try:
        fuzz_targets.TARGETS[target](data)
    except fuzz_targets.Refused as e:
        return f"refused: {e}"
    return "handled"


@pytest.mark.parametrize(("target", "path"), CASES, ids=[f"{t}/{p.name}" for t, p in CASES])
def test_replayed_input_is_handled_the_same_way_every_time(target: str, path) -> None:
    data = path.read_bytes()
    first = _replay(target, data)
    assert first == "handled" or first.startswith("refused: ")
    assert _replay(target, data) == first  # stable reasons: the same answer on every run
