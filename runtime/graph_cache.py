"""A fast start: each CPU keeps its own optimised, pre-packed copy of a graph in ufd's cache.

Creating an onnxruntime session for an int8 ViT spends most of its time parsing
the weights out of the protobuf, optimising the graph and re-packing every
MatMul weight for this CPU's kernels (ViT-L-14 int8 on a 2-core AVX-512 VNNI
host: 0.57-0.67 s of a 1.28 s one-image run). The first time a graph runs on a
host, :func:`open_cached` has onnxruntime save what it made: the fully
optimised graph (layout transforms included) with its initializers and their
pre-packed forms in a ``.data`` file beside it. Later runs open that copy with
optimisation off: the weights are memory-mapped, nothing is parsed or packed
again (0.15-0.17 s), and the numbers are the same bit for bit, checked once on
a probe image before the copy is trusted.

The copy is tied to this CPU and this onnxruntime (both in its cache key, as
for parity measurements: :func:`ufd.runtime.parity.host_key`), and its files
are hashed when made and checked like bundle files (:mod:`ufd.runtime.bundle.stamps`).
CPU only; ``UFD_GRAPH_CACHE=off`` turns it off.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ufd.runtime.bundle import sha256_file, stamps
from ufd.runtime.cache import cache_dir
from ufd.runtime.errors import UfdError
from ufd.runtime.parity import host_key
from ufd.runtime.providers import Provider
from ufd.runtime.sessions import EncoderSession

logger = logging.getLogger(__name__)

GRAPH, RECORD = "encoder.onnx", "made.json"


def enabled(provider: Provider, optimization: str) -> bool:
    """Whether runs on ``provider`` keep device-optimised copies (CPU graphs at full level)."""
    off = os.environ.get("UFD_GRAPH_CACHE", "").lower() in ("off", "0", "no")
    return not off and provider.device == "cpu" and provider.tuned and optimization == "all"


def open_cached(
    graph: Path,
    graph_sha: str,
    provider: Provider,
    threads: int | None,
    check: np.ndarray,
    variable_size: bool = False,
) -> EncoderSession:
    """A session over ``graph``: from this host's optimised copy, or made (and saved) now.

    Args:
        graph: the bundle's graph (verified).
        graph_sha: its sha256 (the copy's cache key).
        provider: a CPU provider.
        threads: intra-op threads.
        check: one preprocessed image (1, 3, S, S): a new copy must give the graph's
            features for it bit for bit, or it is thrown away.
        variable_size: the graph takes images of any size (:class:`EncoderSession`).
    """
    folder = cache_dir("graphs", host_key(graph_sha, provider.name, "optimized-all"))
    settings = _Settings(provider, threads, variable_size)
    session = _open_copy(folder, settings)
    if session is not None:
        return session
    session = _make_copy(graph, folder, settings, check)
    return session or settings.session(graph, "all")


@dataclass(frozen=True)
class _Settings:
    """How every session over one graph (and its copies) is made."""

    provider: Provider
    threads: int | None
    variable_size: bool

    def session(
        self, graph: Path, optimization: str, save_optimized: Path | None = None
    ) -> EncoderSession:
        """A session over ``graph`` with these settings."""
        return EncoderSession(
            graph,
            self.provider,
            self.threads,
            optimization,
            save_optimized=save_optimized,
            variable_size=self.variable_size,
        )


def _open_copy(folder: Path, settings: _Settings) -> EncoderSession | None:
    try:
        made = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        for name, sha in made["sha256"].items():
            path = folder / name
            if not stamps.trusted(path, sha):
                if sha256_file(path) != sha:
                    raise OSError(f"{name} changed since it was made")
                stamps.remember(path, sha)
        return settings.session(folder / GRAPH, "none")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, UfdError) as e:
        logger.info("the optimised copy in %s is unusable (%s): making it again", folder, e)
        shutil.rmtree(folder, ignore_errors=True)
        return None


def _make_copy(
    graph: Path, folder: Path, settings: _Settings, check: np.ndarray
) -> EncoderSession | None:
    """The graph's session, having saved (and checked) its optimised copy; ``None`` on failure."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".making-", dir=folder.parent))
    except OSError as e:
        logger.info("cannot keep an optimised graph in %s: %s", folder.parent, e)
        return None
    try:
        session = settings.session(graph, "all", save_optimized=staging / GRAPH)
    except OSError as e:
        logger.info("cannot save an optimised graph in %s: %s", staging, e)
        shutil.rmtree(staging, ignore_errors=True)
        return None
    try:
        _keep(staging, folder, settings, check, session(check))
    except (OSError, UfdError) as e:
        logger.info("optimised graph not kept: %s", e)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return session


def same_numbers(found: np.ndarray, expected: np.ndarray) -> bool:
    """Whether a copy's features equal the graph's, bit for bit."""
    return bool(np.array_equal(found, expected))


def _keep(
    staging: Path,
    folder: Path,
    settings: _Settings,
    check: np.ndarray,
    expected: np.ndarray,
) -> None:
    """Move a saved copy into place if it computes exactly what the graph computes."""
    copy = settings.session(staging / GRAPH, "none")
    if not same_numbers(copy(check), expected):
        raise UfdError("onnxruntime's saved optimised graph computes other numbers")
    del copy
    files = sorted(p.name for p in staging.iterdir() if p.is_file())
    record = {"sha256": {name: sha256_file(staging / name) for name in files}}
    (staging / RECORD).write_text(json.dumps(record), encoding="utf-8")
    try:
        os.replace(staging, folder)
    except OSError:
        return  # another process made it first: theirs stays
    for name, sha in record["sha256"].items():
        stamps.remember(folder / name, sha)
