"""Which encoder graph a run takes, checked on this host: the one place it is decided.

``precision=None`` (``--precision auto``) walks the started provider's
precision order (CPU: ``int8``, ``int8-portable``, ``fp32``, ``fp16``) and takes
the first graph that keeps the bundle's tolerance *here*
(:mod:`ufd.runtime.parity`); each graph it passes over is one log line with the
measured figure (a warning when it was measured just now, the first run on a
host; a log line under ``-v`` after that). A precision asked for by name always
runs, with one warning (per process) when it breaks the tolerance here. Bundles
without probes are not measured: their graphs run as before, with one note on
CPUs where int8 is known to saturate.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from ufd.runtime import graph_cache, parity
from ufd.runtime.bundle import Bundle, Manifest
from ufd.runtime.errors import BundleError
from ufd.runtime.parity import GraphParity, Logits
from ufd.runtime.preprocess import Normalizer
from ufd.runtime.providers import Provider
from ufd.runtime.sessions import EncoderSession, HeadSession, check_feature_dim

logger = logging.getLogger(__name__)
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


@dataclass(frozen=True)
class Decision:
    """Which graph a run on this host takes, and how it measured here.

    ``parity`` is ``None`` when nothing was measured; ``session`` is the graph's
    session if deciding had to open it (else ``None``: the cache answered).
    """

    precision: str
    session: EncoderSession | None
    parity: GraphParity | None = None
    passed_over: tuple[GraphParity, ...] = ()


@dataclass(frozen=True)
class EncoderChoice:
    """The graph a run takes, its open session, and how it measured here."""

    precision: str
    session: EncoderSession
    parity: GraphParity | None = None
    passed_over: tuple[GraphParity, ...] = ()


AUTO = "auto"


def named(precision: str | None) -> str | None:
    """A precision asked for by name, or ``None`` for ``auto`` (``None`` or ``"auto"``)."""
    return None if precision in (None, AUTO) else precision


def choose_precision(manifest: Manifest, provider: Provider, precision: str | None) -> str:
    """The precision asked for, else the provider's fastest in the bundle (unchecked).

    Raises:
        BundleError: the bundle lacks the precision asked for, or has no encoder.
    """
    precision = named(precision) or provider.best_precision(manifest.precisions)
    if precision is None:
        raise BundleError("the bundle has no encoder graph; re-export it with ufd-export")
    manifest.encoder(precision)
    return precision


def open_encoder(
    bundle: Bundle,
    provider: Provider,
    precision: str | None,
    threads: int | None = None,
    verify: bool = True,
    logits: Logits | None = None,
    head_sha: str | None = None,
) -> EncoderChoice:
    """Open the encoder graph a run takes (see the module docstring).

    Args:
        bundle: the open bundle.
        provider: the started provider.
        precision: a precision by name, or ``None`` for the best that keeps the tolerance.
        threads: onnxruntime intra-op threads.
        verify: check the graph's sha256.
        logits: the bundle's linear head (for |Δlogit|), if it has one.
        head_sha: the head file's sha256 (part of the measurement's cache key).

    Raises:
        BundleError: the bundle lacks the precision, or a graph cannot be loaded.
        ProviderError: the provider does not start for the graph.
    """
    decided = choose_encoder(bundle, provider, precision, threads, verify, logits, head_sha)
    session = decided.session or open_session(bundle, provider, decided.precision, threads, verify)
    return EncoderChoice(decided.precision, session, decided.parity, decided.passed_over)


def choose_encoder(
    bundle: Bundle,
    provider: Provider,
    precision: str | None,
    threads: int | None = None,
    verify: bool = True,
    logits: Logits | None = None,
    head_sha: str | None = None,
) -> Decision:
    """Decide which graph a run on this host takes, measuring what the cache lacks.

    The arguments are :func:`open_encoder`'s. A graph is opened only to be measured,
    so where the cache holds every figure (a scan asking each node) nothing is loaded.

    Raises:
        BundleError: the bundle lacks the precision, or a graph cannot be loaded.
        ProviderError: the provider does not start for the graph.
    """
    manifest, precision = bundle.manifest, named(precision)
    opened: dict[str, EncoderSession] = {}

    def measured(candidate: str) -> GraphParity:
        found = parity.cached(bundle, candidate, provider.name, head_sha)
        if found is None:
            session = open_session(bundle, provider, candidate, threads, verify)
            opened[candidate] = session
            found = parity.measure(bundle, candidate, session, logits, provider.name, verify)
            parity.remember(bundle, found, head_sha)
            logger.info("parity of %s on this host: %s", candidate, found.describe())
        return found

    if precision is not None or manifest.probes is None:
        precision = choose_precision(manifest, provider, precision)
        if manifest.probes is None:
            _note_unchecked(precision)
            return Decision(precision, None)
        found = measured(precision)
        if not found.ok:
            _warn_once(
                precision,
                f"{precision} breaks the bundle's tolerance on this CPU "
                f"({found.describe()}); running it because it was asked for by name; "
                "--precision auto takes a graph that keeps it",
            )
        return Decision(precision, opened.get(precision), found)
    candidates = [p for p in provider.precision_order if p in manifest.encoders]
    if not candidates:
        raise BundleError("the bundle has no encoder graph; re-export it with ufd-export")
    passed: list[GraphParity] = []
    for candidate in candidates:
        found = measured(candidate)
        if found.ok:
            if passed:
                _say_passed_over(passed, candidate)
            return Decision(candidate, opened.get(candidate), found, tuple(passed))
        passed.append(found)
    fallback = "fp32" if "fp32" in manifest.encoders else candidates[-1]
    logger.warning(
        "no graph of this bundle keeps its tolerance on this CPU (%s); running %s. %s",
        "; ".join(f"{p.precision}: {p.describe()}" for p in passed),
        fallback,
        cure(manifest.precisions),
    )
    chosen = next(p for p in passed if p.precision == fallback)
    return Decision(fallback, opened.get(fallback), chosen, tuple(passed))


def open_session(
    bundle: Bundle,
    provider: Provider,
    precision: str,
    threads: int | None = None,
    verify: bool = True,
) -> EncoderSession:
    """A session over the bundle's ``precision`` graph, checked like a run's (hash, width).

    Raises:
        BundleError: the graph is missing, damaged or of another width.
        ProviderError: the provider does not start for the graph.
    """
    graph = bundle.manifest.encoder(precision)
    path, optimization = bundle.encoder_path(graph, verify), provider.optimization(precision)
    variable_size = bundle.manifest.preprocess.mode == "whole"
    if graph_cache.enabled(provider, optimization):
        sha = bundle.manifest.files[graph.file].sha256
        check = _check_image(bundle)
        session = graph_cache.open_cached(path, sha, provider, threads, check, variable_size)
    else:
        session = EncoderSession(path, provider, threads, optimization, variable_size=variable_size)
    session.batch_invariant = graph.batch_invariant
    check_feature_dim(bundle.manifest.model.feature_dim, {"encoder output": session})
    return session


def _check_image(bundle: Bundle) -> np.ndarray:
    """One preprocessed image (1, 3, S, S): a probe, or a generated one."""
    config = bundle.manifest.preprocess
    if bundle.manifest.probes is not None:
        crop = parity.load_probes(bundle)[0][0]
    else:
        crop = parity.generated_crops(config.crop_size, count=1)[0]
    return Normalizer(config.mean, config.std)(crop)[None]


def head_of(bundle: Bundle, verify: bool = True) -> tuple[HeadSession | None, str | None]:
    """The bundle's linear head (whose logits parity compares) and its sha256, if it has one."""
    entry = bundle.manifest.method("linear")
    if entry is None:
        return None, None
    name = entry.files["graph"]
    return HeadSession(bundle.graph_path(name, verify)), bundle.manifest.files[name].sha256


def _say_passed_over(passed: list[GraphParity], chosen: str) -> None:
    """Say which graphs auto passed over: a warning when measured just now, else a log line.

    The measurement is cached per host, so the warning comes once per host (and again
    in ``ufd-bundle verify --parity``, ``/v1/info`` and under ``-v``), not at every run.
    """
    fresh = any(not p.cached for p in passed)
    logger.log(
        logging.WARNING if fresh else logging.INFO,
        "%s breaks the bundle's tolerance on this CPU (%s); running %s, which keeps it%s",
        " and ".join(p.precision for p in passed),
        "; ".join(p.describe() for p in passed),
        chosen,
        "" if fresh else " (measured before on this host)",
    )


def cure(precisions: list[str]) -> str:
    """What to do when no graph of a bundle with ``precisions`` keeps its tolerance here."""
    if "int8-portable" not in precisions and parity.int8_class() == "avx2":
        return (
            "This CPU (AVX2 without VNNI) needs the bundle's int8-portable graph: use a copy "
            "of the bundle that still has it (ufd-bundle slim --keep int8-portable,...), or "
            "re-export with --precision fp32,int8,int8-portable"
        )
    return "Check the onnxruntime install and run ufd-bundle verify --parity"


def _warn_once(precision: str, message: str) -> None:
    with _warned_lock:
        if (precision, message) in _warned:
            return
        _warned.add((precision, message))
    logger.warning(message)


def _note_unchecked(precision: str) -> None:
    if precision == "int8" and parity.int8_class() == "avx2":
        _warn_once(
            precision,
            "this bundle has no parity probes (made before ufd 0.3), so its int8 graph is not "
            "checked on this CPU, whose int8 sums can saturate (AVX2 without VNNI); measure "
            "it with ufd-bundle verify --parity, or re-export the bundle",
        )
