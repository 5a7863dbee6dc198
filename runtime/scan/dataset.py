"""A scan's output: a Parquet dataset of shards, written so each input lands exactly once.

* Each shard is written under a hidden temporary name and moved into place, so a
  killed scan leaves only whole shards (readers skip names starting with ``.``/``_``).
* A shard's name is a digest of the paths it holds: a retried write task rewrites
  the same file instead of adding a second copy.
* ``_scan.json`` records what the scan computes (the encoder's sha256 and
  precision, methods, k, features); ``--resume`` refuses a dataset made with
  other settings, reads the ``path`` column of every shard, and scans only the
  inputs without a row.
* ``_run`` fences writers: each run writes a new token, and a shard is moved into
  place only while the token is its run's. A killed driver's Ray workers may
  finish their tasks for a moment after it died; they cannot add rows once a
  resumed run has started. Every run ends by checking each path appears once
  (and removing a duplicate row, should one have slipped through).

``DIR`` may be a local folder or a URI pyarrow can write (``s3://bucket/scan``).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import asdict
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from ufd.runtime.errors import UsageError
from ufd.runtime.faults import faults

META = "_scan.json"
RUN = "_run"
FENCE_GRACE_S = 2.0
"""How long a resumed run waits, after fencing, before reading what is done: a write
that passed its fence check just before is in place by then."""


def open_output(out: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path of a dataset folder or URI."""
    if "://" in out:
        filesystem, path = pafs.FileSystem.from_uri(out)
        return filesystem, str(path)
    from pathlib import Path

    return pafs.LocalFileSystem(), str(Path(out).absolute())


def write_shard(table: pa.Table, out: str, run: str) -> dict[str, Any]:
    """Write ``table`` as one shard of ``out``, atomically, if ``run`` still owns ``out``."""
    filesystem, root = open_output(out)
    paths = "\n".join(table.column("path").to_pylist())
    name = f"part-{hashlib.sha256(paths.encode()).hexdigest()[:20]}.parquet"
    tmp = f"{root}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
    with filesystem.open_output_stream(tmp) as stream:
        pq.write_table(table, stream)
    if _read_text(filesystem, f"{root}/{RUN}") != run:  # a newer run owns the dataset
        filesystem.delete_file(tmp)
        return {"shard": None, "rows": 0, "failed": 0}
    filesystem.move(tmp, f"{root}/{name}")
    failed = sum(e is not None for e in table.column("error").to_pylist())
    if faults().pause_after_shards is not None:  # a test waits to kill the scan here
        found = filesystem.get_file_info(pafs.FileSelector(root))
        faults().after_shard(sum(f.base_name.startswith("part-") for f in found))

    return {"shard": name, "rows": table.num_rows, "failed": failed}


def _read_text(filesystem: pafs.FileSystem, path: str) -> str | None:
    try:
        with filesystem.open_input_stream(path) as fh:
            return bytes(fh.read()).decode()
    except (OSError, FileNotFoundError):
        return None


def prepare_output(
    out: str, settings: dict[str, Any], resume: bool, overwrite: bool
) -> tuple[str, set[str]]:
    """Create or check the dataset folder and fence it for this run.

    Returns:
        (this run's token, the paths already scanned (``--resume``)).

    Raises:
        UsageError: a non-empty folder without --resume/--overwrite, or a resumed
            dataset made with other settings.
    """
    filesystem, root = open_output(out)
    info = filesystem.get_file_info(root)
    if info.type == pafs.FileType.File:
        raise UsageError(f"--out {out} is a file, not a folder: name a folder for the dataset")
    existing = info.type != pafs.FileType.NotFound and bool(
        filesystem.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    )
    if existing and overwrite:
        filesystem.delete_dir_contents(root)
        existing = False
    if existing and not resume:
        raise UsageError(
            f"{out} is not empty: pass --resume to continue that scan, or --overwrite to "
            "start again"
        )
    filesystem.create_dir(root, recursive=True)
    meta = f"{root}/{META}"
    run = uuid.uuid4().hex
    with filesystem.open_output_stream(f"{root}/{RUN}") as fh:
        fh.write(run.encode())
    if existing:
        try:
            with filesystem.open_input_stream(meta) as fh:
                previous = json.loads(fh.read())
        except (OSError, ValueError) as e:
            raise UsageError(f"{out} holds no readable {META}: not a ufd-scan dataset") from e
        if previous != settings:
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            raise UsageError(
                f"{out} was scanned with other settings ({', '.join(changed)}); scan into a "
                "new folder or pass --overwrite"
            )
        time.sleep(FENCE_GRACE_S)
        return run, done_paths(out)
    for stale in _temporaries(filesystem, root):
        filesystem.delete_file(stale)
    with filesystem.open_output_stream(meta) as fh:
        fh.write(json.dumps(settings, indent=2).encode())
    return run, set()


def done_paths(out: str) -> set[str]:
    """Every ``path`` the dataset holds (whole shards only)."""
    filesystem, root = open_output(out)
    for stale in _temporaries(filesystem, root):
        filesystem.delete_file(stale)
    import pyarrow.dataset as ds

    dataset = ds.dataset(root, filesystem=filesystem, format="parquet")
    return set(dataset.to_table(columns=["path"]).column("path").to_pylist())


def remove_duplicates(out: str) -> int:
    """Make each path appear once (keeping its first shard's row); the rows removed."""
    import pyarrow.dataset as ds

    filesystem, root = open_output(out)
    dataset = ds.dataset(root, filesystem=filesystem, format="parquet")
    seen: set[str] = set()
    removed = 0
    for fragment in sorted(dataset.get_fragments(), key=lambda f: f.path):
        paths = fragment.to_table(columns=["path"]).column("path").to_pylist()
        keep = [p not in seen for p in paths]
        seen.update(paths)
        if all(keep):
            continue
        removed += keep.count(False)
        table = fragment.to_table().filter(pa.array(keep))
        if table.num_rows:
            folder, _, name = fragment.path.rpartition("/")
            tmp = f"{folder}/.{name}.dedup.tmp"
            with filesystem.open_output_stream(tmp) as stream:
                pq.write_table(table, stream)
            filesystem.move(tmp, fragment.path)
        else:
            filesystem.delete_file(fragment.path)
    return removed


def _temporaries(filesystem: pafs.FileSystem, root: str) -> list[str]:
    found = filesystem.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    return [f.path for f in found if f.base_name.startswith(".") and f.base_name.endswith(".tmp")]


def scan_settings_record(
    settings: Any, methods: tuple[str, ...], encoder_sha: str | dict[str, str]
) -> dict[str, Any]:
    """What ``_scan.json`` holds: what decides a row's values.

    ``precision`` is what was asked: a name (``encoder_sha256`` is that graph's) or
    ``auto`` (each worker measures its host; ``encoder_sha256`` maps every graph the
    bundle has to its sha256, and each row names the graph that scored it).
    """
    keep = ("k", "exact", "features", "max_pixels")
    record = {k: v for k, v in asdict(settings).items() if k in keep}
    record["precision"] = settings.precision or "auto"
    if getattr(settings, "views", 0):  # absent without views: older datasets still resume
        record["views"] = settings.views
    video = getattr(settings, "video", None)
    if video is not None:  # absent without --videos, as views
        sampling = video.options
        record["video"] = {
            "fps": sampling.fps,
            "max_frames": sampling.max_frames,
            "keyframes": sampling.keyframes,
            "rule": video.rule,
            "gifs": video.gifs,
        }
    return record | {"methods": list(methods), "encoder_sha256": encoder_sha}


def read_settings(out: str) -> dict[str, Any] | None:
    """The ``_scan.json`` of the dataset at ``out``, or ``None`` (none, or unreadable)."""
    filesystem, root = open_output(out)
    try:
        with filesystem.open_input_stream(f"{root}/{META}") as fh:
            found = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def graph_counts(out: str) -> dict[str, int]:
    """Rows per graph that scored them (``graph_precision``), for datasets that name it."""
    import pyarrow.dataset as ds

    filesystem, root = open_output(out)
    dataset = ds.dataset(root, filesystem=filesystem, format="parquet")
    if "graph_precision" not in dataset.schema.names:
        return {}
    column = dataset.to_table(columns=["graph_precision"]).column("graph_precision")
    counts: dict[str, int] = {}
    for value in column.to_pylist():
        if value is not None:
            counts[value] = counts.get(value, 0) + 1
    return counts
