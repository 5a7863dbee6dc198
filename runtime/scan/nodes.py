"""Which graph each node of a scan runs: measured on the node, said once by the driver.

A scan that asks for ``auto`` lets every worker choose as ``ufd-detect`` chooses
on its host (:mod:`ufd.runtime.encoder_choice`): the fastest graph that keeps the
bundle's tolerance *there*. On a cluster of mixed CPUs (AVX-512 VNNI next to
AVX2-only nodes) rows may then come from different graphs; each row names its
graph (``graph_precision``, ``graph_sha256``: :mod:`ufd.runtime.scan.stages`).

Before Ray starts the scoring actors, :func:`survey_nodes` runs one small task on
each node that can host an actor: it measures the bundle's probes there (or reads
that node's parity cache) and reports, so the driver can say per node which graph
runs and why, and the actors find the measurement cached.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ufd.runtime.encoder_choice import choose_encoder, head_of
from ufd.runtime.methods import open_bundle
from ufd.runtime.parity import int8_class
from ufd.runtime.providers import start_provider

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeGraph:
    """The graph one node runs, and how it measured there."""

    node: str
    int8: str
    asked: str | None
    precision: str
    figures: str | None
    ok: bool
    passed_over: tuple[str, ...] = ()
    fresh: bool = False
    """Whether the node measured just now (else its parity cache answered)."""

    def line(self) -> str:
        """``node 10.0.0.2 (avx2): int8 breaks ...; its rows are scored with int8-portable``."""
        where = f"node {self.node} ({self.int8})"
        if self.passed_over:
            return (
                f"{where}: {'; '.join(self.passed_over)}: breaks the bundle's tolerance there; "
                f"its rows are scored with {self.precision}"
            )
        if self.asked is not None and not self.ok:
            return (
                f"{where}: {self.precision} breaks the bundle's tolerance there ({self.figures}); "
                "running it because it was asked for by name; --precision auto takes a graph "
                "that keeps it"
            )
        figures = f" ({self.figures})" if self.figures else ""
        return f"{where}: {self.precision}{figures}"

    @property
    def worth_a_warning(self) -> bool:
        """An explicit precision that breaks the tolerance, or a fresh fall-back."""
        return (self.asked is not None and not self.ok) or (bool(self.passed_over) and self.fresh)


def node_graph(bundle_dir: str, provider: str, precision: str | None, node: str) -> NodeGraph:
    """Measure (or read the cache of) the graph a worker on this host takes."""
    bundle = open_bundle(bundle_dir)
    head, head_sha = head_of(bundle)
    choice = choose_encoder(
        bundle, start_provider(provider), precision, logits=head, head_sha=head_sha
    )
    found = choice.parity
    return NodeGraph(
        node=node,
        int8=int8_class(),
        asked=precision,
        precision=choice.precision,
        figures=None if found is None else found.describe(),
        ok=found is None or found.ok,
        passed_over=tuple(f"{p.precision} ({p.describe()})" for p in choice.passed_over),
        fresh=any(not p.cached for p in (*choice.passed_over, *([found] if found else []))),
    )


def _remote_node_graph(bundle_dir: str, provider: str, precision: str | None) -> NodeGraph:
    import ray

    node: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    return node_graph(bundle_dir, provider, precision, node)


def survey_nodes(
    ray: Any, bundle_dir: str, provider: str, precision: str | None, cpus: float, gpus: float
) -> list[NodeGraph]:
    """One :class:`NodeGraph` per alive node with room for a scoring actor, each said once.

    Args:
        ray: the imported, initialised ``ray`` module.
        bundle_dir: the bundle (the same path on every node).
        provider: ``--provider``.
        precision: ``--precision`` (``None``: auto).
        cpus: CPUs of one scoring actor.
        gpus: GPUs of one scoring actor.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(_remote_node_graph)
    pending = []
    for node in ray.nodes():
        room = node.get("Resources", {})
        if not node.get("Alive") or room.get("CPU", 0) < cpus or room.get("GPU", 0) < gpus:
            continue
        placed = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        options = {"num_cpus": cpus, "num_gpus": gpus or None, "scheduling_strategy": placed}
        pending.append(task.options(**options).remote(bundle_dir, provider, precision))
    found: list[NodeGraph] = ray.get(pending)
    for graph in found:
        logger.log(logging.WARNING if graph.worth_a_warning else logging.INFO, graph.line())
    return found
