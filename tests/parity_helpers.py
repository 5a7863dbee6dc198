"""Parity measurements written for a test, so each branch of ``auto`` runs on every host.

A test that expects a precision must not expect this host's: it either asks the
rule (``check_parity``) or sets the measurement itself. :func:`pretend_measured`
writes the parity cache entry a run on this host reads, as if the graph had been
measured here: ``keeps=True`` like exact int8 sums (AVX-512 VNNI, AMX, Arm),
``keeps=False`` like the saturated sums of AVX2 without VNNI (figures of the kind
``qemu-x86_64 -cpu Haswell-v4`` gives). Point ``UFD_CACHE_DIR`` at a folder of the
test's own first (``monkeypatch.setenv``), or other tests would read the entry.
"""

from __future__ import annotations

from pathlib import Path

from ufd.runtime import parity
from ufd.runtime.encoder_choice import head_of
from ufd.runtime.methods import open_bundle
from ufd.runtime.parity import GraphParity

KEEPS = (0.999999, 0.0001)
SATURATED = (0.99015, 1.0177)


def pretend_measured(bundle_dir: Path, precision: str, keeps: bool, provider: str = "cpu") -> None:
    """Cache a measurement of the bundle's ``precision`` graph on this host (see above)."""
    bundle = open_bundle(bundle_dir)
    _, head_sha = head_of(bundle)
    cosine, logit = KEEPS if keeps else SATURATED
    tolerance = parity.promised_tolerance(bundle.manifest)
    found = GraphParity(precision, provider, 8, cosine, logit, tolerance)
    assert found.ok == keeps, "the figures must land on the side of the tolerance asked for"
    parity.remember(bundle, found, head_sha)
