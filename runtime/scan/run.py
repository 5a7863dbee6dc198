"""A whole scan: resolve what it computes, prepare the dataset, run an engine, check the rows.

``ufd-scan`` is a thin layer over :func:`plan_scan` and :func:`run_scan`. The plan
fixes everything a row's values depend on before any input is read: the methods
(``all`` resolved against the bundle), ``k``, and the **precision** asked for.
A name runs that graph everywhere (and is checked against the bundle); ``auto``
lets every worker take the fastest graph that keeps the bundle's tolerance on its
own host, as ``ufd-detect`` does there (:mod:`ufd.runtime.scan.nodes`): local
workers share this host's measurement, each Ray node measures its own. Each row
names the graph that scored it; ``_scan.json`` records what was asked, and
``--resume`` refuses a scan asked differently.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ufd.runtime.encoder_choice import choose_encoder, choose_precision, head_of, named
from ufd.runtime.errors import UsageError
from ufd.runtime.io.inputs import InputItem, Skipped
from ufd.runtime.methods import MethodSet, ScoreOptions, open_bundle
from ufd.runtime.providers import PROVIDERS, Provider, start_provider
from ufd.runtime.scan.dataset import (
    graph_counts,
    prepare_output,
    read_settings,
    remove_duplicates,
    scan_settings_record,
)
from ufd.runtime.scan.engines import RayOptions, run_local, run_ray
from ufd.runtime.scan.sources import expand_sources
from ufd.runtime.scan.stages import ScanSettings
from ufd.runtime.transforms import reupload_views

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class ScanPlan:
    """What a scan computes (settings resolved) and what ``_scan.json`` records.

    ``graph`` says which graph runs, for people: a name, or what ``auto`` measured
    here (local workers), or that each node measures its own (Ray).
    """

    settings: ScanSettings
    methods: tuple[str, ...]
    record: dict[str, Any]
    graph: str = "auto"


@dataclass
class ScanTotals:
    """How a scan went."""

    inputs: int = 0
    done_before: int = 0
    rows: int = 0
    failed: int = 0
    shards: int = 0
    duplicates_removed: int = 0
    seconds: float = 0.0
    skipped: Skipped = field(default_factory=Skipped)
    """What folders and globs held but were not taken (not images, repeats)."""
    graph: str = ""
    """Which graph runs, for people (:attr:`ScanPlan.graph`)."""
    graphs: dict[str, int] = field(default_factory=dict)
    """Rows per encoder graph (precision) that scored them, in the whole dataset."""

    @property
    def scored(self) -> int:
        """Rows with scores."""
        return self.rows - self.failed


def worker_provider(settings: ScanSettings, engine: str, gpus_per_worker: float) -> Provider:
    """The provider the scan's workers will run on.

    Local workers run here, so the provider is started here; Ray actors may run
    elsewhere: GPU actors take the GPU table (``auto`` means CUDA), CPU actors the CPU's.
    """
    if engine == "local":
        return start_provider(settings.provider)
    if settings.provider in PROVIDERS:
        return PROVIDERS[settings.provider]
    return PROVIDERS["cuda" if gpus_per_worker else "cpu"]


def plan_scan(
    settings: ScanSettings, engine: str = "local", gpus_per_worker: float = 0.0
) -> ScanPlan:
    """Resolve the methods and the precision of a scan, and check them on the bundle.

    Raises:
        UsageError: an unknown engine or method, a bad ``k``.
        BundleError: the bundle lacks a method, its threshold or the precision.
    """
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; use {' or '.join(ENGINES)}")
    bundle = open_bundle(settings.bundle)
    methods = MethodSet(bundle, PROVIDERS["cpu"])
    names = methods.resolve(settings.method)
    reupload_views(settings.views)
    methods.check(names, ScoreOptions(settings.k, settings.exact), need_threshold=True)
    provider = worker_provider(settings, engine, gpus_per_worker)
    manifest = bundle.manifest
    settings = dataclasses.replace(settings, precision=named(settings.precision))
    if settings.precision is not None:
        graph = choose_precision(manifest, provider, settings.precision)  # the bundle has it
        encoder_sha: str | dict[str, str] = manifest.files[manifest.encoder(graph).file].sha256
    else:
        encoder_sha = {p: manifest.files[g.file].sha256 for p, g in manifest.encoders.items()}
        graph = "auto: each node measures its own"
        if engine == "local":  # the workers run here: measure once, they read the cache
            head, head_sha = head_of(bundle)
            chosen = choose_encoder(bundle, provider, None, logits=head, head_sha=head_sha)
            graph = f"{chosen.precision} (auto, measured on this host)"
    resolved = dataclasses.replace(settings, method=",".join(names))
    return ScanPlan(resolved, names, scan_settings_record(resolved, names, encoder_sha), graph)


def continued(plan: ScanPlan, out: str, resume: bool) -> ScanPlan:
    """The plan for resuming a dataset whose ``_scan.json`` names the graph it ran.

    Datasets made before each worker chose on its own host recorded the precision
    ``auto`` resolved to; a resumed ``auto`` scan goes on with that graph, so that
    the dataset stays one graph's. Anything else: ``plan`` as it is.
    """
    previous = read_settings(out) if resume else None
    asked = (previous or {}).get("precision")
    if plan.settings.precision is not None or asked in (None, "auto"):
        return plan
    manifest = open_bundle(plan.settings.bundle).manifest
    graph = manifest.encoders.get(asked)
    sha = None if graph is None else manifest.files[graph.file].sha256  # None: refused
    settings = dataclasses.replace(plan.settings, precision=asked)
    record = plan.record | {"precision": asked, "encoder_sha256": sha}
    return ScanPlan(settings, plan.methods, record, f"{asked} (as the scan being resumed)")


def run_scan(
    plan: ScanPlan,
    inputs: Iterable[str],
    listed: Iterable[str],
    out: str,
    *,
    engine: str = "local",
    workers: int = 1,
    ray: RayOptions | None = None,
    shard_rows: int = 1024,
    resume: bool = False,
    overwrite: bool = False,
    on_start: Callable[[ScanTotals], None] = lambda totals: None,
    on_shard: Callable[[dict[str, Any]], None] = lambda result: None,
) -> ScanTotals:
    """Scan ``inputs`` (and ``listed`` entries) into the dataset ``out``.

    Each input is scanned once, whatever the inputs repeat and whatever a resumed
    run did before. ``on_start`` is told how many inputs are left, ``on_shard``
    about each shard as it lands.

    Raises:
        UsageError: ``out`` is not empty (without ``resume``/``overwrite``) or was
            scanned with other settings.
    """
    plan = continued(plan, out, resume)
    run, done = prepare_output(out, plan.record, resume, overwrite)
    skipped = Skipped()
    videos = plan.settings.video is not None
    items = _unique(expand_sources(inputs, listed, skipped, videos), done)
    totals = ScanTotals(len(items), len(done), skipped=skipped, graph=plan.graph)
    on_start(totals)

    shards: set[str] = set()

    def landed(result: dict[str, Any]) -> None:
        if result["shard"] in shards:  # a chunk redone after a worker died: counted once
            return
        if result["shard"] is not None:
            shards.add(result["shard"])
        totals.rows += result["rows"]
        totals.failed += result["failed"]
        totals.shards += 1
        on_shard(result)

    started = time.perf_counter()
    if engine == "local":
        run_local(items, plan.settings, out, run, shard_rows, workers, landed)
    else:
        run_ray(items, plan.settings, out, run, shard_rows, ray or RayOptions(), landed)
    totals.seconds = time.perf_counter() - started
    totals.duplicates_removed = remove_duplicates(out)
    totals.graphs = graph_counts(out)
    return totals


def _unique(items: Iterable[InputItem], done: set[str]) -> list[InputItem]:
    """Items not yet scanned, each path once, in input order."""
    seen, kept = set(done), []
    for item in items:
        if item.path not in seen:
            seen.add(item.path)
            kept.append(item)
    return kept
