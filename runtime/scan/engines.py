"""Where a scan runs: worker processes on this machine, or Ray Data on a cluster.

Both run the same stages (:mod:`ufd.runtime.scan.stages`) and write shards the
same way (:mod:`ufd.runtime.scan.dataset`); each calls ``on_shard`` with
``{"shard", "rows", "failed"}`` as shards land.

Ray: first one task per node measures which graph that node runs
(:func:`~ufd.runtime.scan.nodes.survey_nodes`), then ``read paths -> crop_batch
(CPU tasks) -> Scorer (actor pool, one bundle session per actor, threads = its
CPUs, GPUs with --gpus-per-worker) -> write_shard (tasks)``. Ray Data
streams: blocks are produced only as fast as the actors consume them, within
``--object-store-mb`` when set, so a folder larger than RAM never spills
without bound.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any

import pyarrow as pa

from ufd.runtime.errors import UsageError
from ufd.runtime.io.inputs import InputItem
from ufd.runtime.scan.dataset import write_shard
from ufd.runtime.scan.nodes import survey_nodes
from ufd.runtime.scan.stages import ScanSettings, Scorer, crop_batch

logger = logging.getLogger(__name__)
OnShard = Callable[[dict[str, Any]], None]
DECODE_CPUS = 0.5


@dataclass(frozen=True)
class RayOptions:
    """Ray engine knobs (see the README's cluster section)."""

    address: str | None = None
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    num_cpus: int | None = None
    """CPUs of a local Ray instance started here (None: all)."""
    object_store_mb: int | None = None
    decode_batch: int = 32


def columns(items: list[InputItem]) -> dict[str, list[Any]]:
    """The ``path`` / ``error`` columns a scan starts from."""
    return {"path": [i.path for i in items], "error": [i.error for i in items]}


def chunks(items: list[InputItem], size: int) -> Iterator[list[InputItem]]:
    """``items`` in consecutive runs of ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- local ---------------------------------------------------------------------------

_SCORER: Scorer | None = None


def _init_worker(settings: ScanSettings) -> None:
    global _SCORER
    _SCORER = Scorer(settings)


def _score_chunk(
    chunk: list[InputItem], settings: ScanSettings, out: str, run: str
) -> dict[str, Any]:
    scorer = _SCORER
    if scorer is None:
        raise RuntimeError("a scan worker scored before it was initialised")
    batch = settings.batch_size or scorer.detector.provider_spec.batch_size
    tables = [scorer(crop_batch(columns(part), settings)) for part in chunks(chunk, batch)]
    return write_shard(pa.concat_tables(tables), out, run)


WORKER_RESTARTS = 3
"""How many times a local scan replaces a pool whose worker died (killed, out of memory)."""


def run_local(
    items: list[InputItem],
    settings: ScanSettings,
    out: str,
    run: str,
    shard_rows: int,
    workers: int,
    on_shard: OnShard,
) -> None:
    """Scan with ``workers`` processes (1: in this process), one shard per chunk.

    Without ``settings.threads``, each worker's sessions get an equal share of the CPUs.

    A worker that dies (SIGKILL, the OOM killer) breaks its pool: a new pool
    redoes every chunk that has no shard yet. A chunk always writes the same shard
    (named by its paths), so a chunk done twice still gives one row per input.
    """
    work = dict(enumerate(chunks(items, shard_rows)))
    if settings.threads is None:  # the CPUs shared out between the workers
        settings = dataclasses.replace(settings, threads=max(1, (os.cpu_count() or 1) // workers))
    if workers <= 1:
        _init_worker(settings)
        for chunk in work.values():
            on_shard(_score_chunk(chunk, settings, out, run))
        return
    context = multiprocessing.get_context("spawn")
    for attempt in range(WORKER_RESTARTS + 1):
        try:
            _pool_pass(work, settings, out, run, workers, on_shard, context)
            return
        except BrokenProcessPool as e:
            if attempt == WORKER_RESTARTS:
                raise UsageError(
                    f"scan workers died {attempt + 1} times (out of memory? killed?); "
                    "run again with --resume, or with fewer --workers"
                ) from e
            logger.warning(
                "a scan worker died; starting new workers for the %d chunks left", len(work)
            )


def _pool_pass(
    work: dict[int, list[InputItem]],
    settings: ScanSettings,
    out: str,
    run: str,
    workers: int,
    on_shard: OnShard,
    context: BaseContext,
) -> None:
    """Score ``work`` on a pool; finished chunks leave ``work`` as their shards land."""
    with ProcessPoolExecutor(workers, context, _init_worker, (settings,)) as pool:
        jobs = {
            pool.submit(_score_chunk, chunk, settings, out, run): i for i, chunk in work.items()
        }
        for job in as_completed(jobs):
            on_shard(job.result())  # BrokenProcessPool when a worker died
            work.pop(jobs[job])


# --- ray -----------------------------------------------------------------------------


def _shard_task(table: pa.Table, out: str, run: str) -> dict[str, list[Any]]:
    result = write_shard(table, out, run)
    return {k: [v] for k, v in result.items()}


def run_ray(
    items: list[InputItem],
    settings: ScanSettings,
    out: str,
    run: str,
    shard_rows: int,
    options: RayOptions,
    on_shard: OnShard,
) -> None:
    """Scan on Ray Data (a local instance unless ``options.address`` names a cluster)."""
    import ray

    _start_ray(ray, options)
    _check_room(ray, options)
    survey_nodes(
        ray,
        settings.bundle,
        _actor_provider(settings, options),
        settings.precision,
        options.cpus_per_worker,
        options.gpus_per_worker,
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    if options.object_store_mb:
        limits = context.execution_options.resource_limits  # ExecutionResources
        context.execution_options.resource_limits = limits.copy(
            object_store_memory=options.object_store_mb * 2**20
        )
    threads = settings.threads or max(1, int(options.cpus_per_worker))
    actor_settings = dataclasses.replace(settings, threads=threads)
    batch = settings.batch_size or (32 if options.gpus_per_worker else 8)
    pool = ray.data.ActorPoolStrategy(size=options.workers)
    dataset = (
        ray.data.from_arrow(pa.table(columns(items)))
        # decoding tasks ask for less than an actor's CPU, so Ray does not fuse them into it
        .map_batches(
            crop_batch,  # type: ignore[arg-type]  # Ray passes fn_kwargs after the batch
            fn_kwargs={"settings": settings},
            batch_size=options.decode_batch,
            num_cpus=DECODE_CPUS,
        )
        .map_batches(
            Scorer,
            fn_constructor_kwargs={"settings": actor_settings},
            batch_size=batch,
            compute=pool,
            num_cpus=options.cpus_per_worker,
            num_gpus=options.gpus_per_worker or None,
        )
        .map_batches(
            _shard_task,  # type: ignore[arg-type]  # Ray passes fn_kwargs after the batch
            fn_kwargs={"out": out, "run": run},
            batch_size=shard_rows,
            batch_format="pyarrow",
            num_cpus=0.1,
        )
    )
    for row in dataset.iter_rows():
        on_shard({k: row[k] for k in ("shard", "rows", "failed")})


def _actor_provider(settings: ScanSettings, options: RayOptions) -> str:
    """The provider a scoring actor starts (``auto``: CUDA on GPU actors, else the CPU)."""
    if settings.provider != "auto":
        return settings.provider
    return "cuda" if options.gpus_per_worker else "cpu"


def _check_room(ray: Any, options: RayOptions) -> None:
    """Refuse actors that would take every CPU: decoding tasks would never run.

    Raises:
        UsageError: with the numbers and what to lower.
    """
    cpus = ray.cluster_resources().get("CPU", 0)
    wanted = options.workers * options.cpus_per_worker
    if wanted + DECODE_CPUS > cpus:
        raise UsageError(
            f"{options.workers} actors x {options.cpus_per_worker:g} CPUs leave no CPU for the "
            f"decoding tasks (the cluster has {cpus:g}); lower --workers or --cpus-per-worker"
        )


def _start_ray(ray: Any, options: RayOptions) -> None:
    if ray.is_initialized():
        return
    if not logger.isEnabledFor(logging.INFO):  # Ray's C++ and Data logs, unless -v
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
        logging.getLogger("ray").setLevel(logging.ERROR)
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if options.address:
        ray.init(address=options.address, **quiet)
        return
    memory = options.object_store_mb * 2**20 if options.object_store_mb else None
    ray.init(num_cpus=options.num_cpus, object_store_memory=memory, **quiet)
