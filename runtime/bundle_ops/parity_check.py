"""``ufd-bundle verify --parity``: every encoder graph of a bundle measured on this host.

With probes (schema 7), each graph is measured against the bundle's torch fp32
reference and judged by the bundle's tolerance (the measurements refresh the
cache that runs read, :mod:`ufd.runtime.parity`); a loose promise (one an export
host without VNNI took from its own int8 graph) is said and judged by the
default bound instead (:func:`~ufd.runtime.parity.loose_promise`). A bundle made before has no
probes: its graphs are measured against its own fp32 graph *on this host*, on
generated images, and judged by :data:`~ufd.runtime.parity.DEFAULT_TOLERANCE`
(nothing was promised). ``auto`` is the precision ``--precision auto`` takes here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ufd.runtime import parity
from ufd.runtime.bundle import Bundle
from ufd.runtime.encoder_choice import head_of, open_session
from ufd.runtime.methods import open_bundle
from ufd.runtime.parity import GraphParity
from ufd.runtime.preprocess import Normalizer
from ufd.runtime.providers import Provider, start_provider
from ufd.runtime.sessions import HeadSession


@dataclass
class ParityVerdict:
    """Every graph measured here, and what ``--precision auto`` takes."""

    reference: str
    """``bundle`` (the bundle's probes) or ``fp32-here`` (generated images, this host's fp32)."""
    graphs: dict[str, GraphParity] = field(default_factory=dict)
    auto: str | None = None
    provider: str = "cpu"
    note: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the graph auto takes keeps the tolerance."""
        return self.auto is not None and self.graphs[self.auto].ok

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object: ``auto``, ``graphs`` (one per precision), and context."""
        return {
            "auto": self.auto,
            "ok": self.ok,
            "graphs": {p: g.to_dict() for p, g in self.graphs.items()},
            "reference": self.reference,
            "provider": self.provider,
            "host": parity.describe_host(),
            "note": self.note,
        }


def check_parity(root: Path, provider: str = "auto") -> ParityVerdict:
    """Measure every encoder graph of the bundle at ``root`` on this host.

    Raises:
        BundleError: the bundle cannot be opened or a graph cannot be loaded.
        ProviderError: the provider cannot be used.
    """
    bundle = open_bundle(root)
    started = start_provider(provider)
    head, head_sha = head_of(bundle)
    if bundle.manifest.probes is not None:
        verdict = ParityVerdict(
            "bundle", provider=started.name, note=parity.loose_promise(bundle.manifest)
        )
        for precision in bundle.manifest.precisions:
            session = open_session(bundle, started, precision)
            found = parity.measure(bundle, precision, session, head, started.name)
            parity.remember(bundle, found, head_sha)
            verdict.graphs[precision] = found
    else:
        verdict = _against_fp32_here(bundle, started, head)
    order = [p for p in started.precision_order if p in verdict.graphs]
    verdict.auto = next((p for p in order if verdict.graphs[p].ok), None)
    return verdict


def _against_fp32_here(
    bundle: Bundle, started: Provider, head: HeadSession | None
) -> ParityVerdict:
    """A bundle without probes: each graph against this host's fp32 graph, generated images."""
    verdict = ParityVerdict(
        "fp32-here",
        provider=started.name,
        note="this bundle has no parity probes (made before ufd 0.3): each graph is measured "
        "against its fp32 graph on this host, on generated images, with the default tolerance",
    )
    manifest = bundle.manifest
    if "fp32" not in manifest.encoders:
        verdict.note = "this bundle has neither parity probes nor an fp32 graph: nothing to measure"
        return verdict
    crops = parity.generated_crops(manifest.preprocess.crop_size)
    normalise = Normalizer(manifest.preprocess.mean, manifest.preprocess.std)
    reference = parity.encode(open_session(bundle, started, "fp32"), normalise, crops)
    for precision in manifest.precisions:
        features = parity.encode(open_session(bundle, started, precision), normalise, crops)
        cosine, logit = parity.compare(features, reference, head)
        verdict.graphs[precision] = GraphParity(
            precision,
            started.name,
            len(crops),
            cosine,
            logit,
            parity.DEFAULT_TOLERANCE,
            reference="fp32-here",
        )
    return verdict
