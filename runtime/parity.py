"""Device parity: each encoder graph measured against the bundle's fp32 reference, here.

A bundle of schema 7 carries probes (:class:`~ufd.runtime.bundle.ParityProbes`):
a few uint8 image crops and the features the torch fp32 model gave them at
export, and the tolerance its graphs promise. The first time a graph runs on a
host, :func:`check` normalises the crops, runs the graph, and measures the
smallest feature cosine and the largest |Δlogit| (through the bundle's current
linear head) against the reference. The result is cached in ufd's cache folder
(``parity/``) under a key of the CPU's instruction-set features (as the CPU
reports them, so an emulated CPU has its own), onnxruntime's version, the
provider, and the sha256 of the graph, the probes and the head: later runs pay
nothing, and anything that could change the numbers measures again.

Bundles made before schema 7 have no probes; :func:`check` then says so
(``None``), and ``ufd-bundle verify --parity`` measures them against their own
fp32 graph on generated images (:func:`generated_crops`).

**The promise.** A bundle's tolerance is derived at export from the error of its
``int8-portable`` graph (:data:`TOLERANCE_BASIS`), whose arithmetic is the same on
every CPU, so the promise does not depend on the CPU that exported it. Bundles
made before that took it from the first graph they had; one that took it from a
full-range ``int8`` graph measured on a CPU whose int8 sums saturate (AVX2
without VNNI) promises next to nothing. :func:`loose_promise` recognises those,
and :func:`promised_tolerance` judges them by :data:`DEFAULT_TOLERANCE` instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ufd.runtime.bundle import Bundle, Manifest, Tolerance
from ufd.runtime.cache import cache_dir
from ufd.runtime.errors import BundleError
from ufd.runtime.preprocess import Normalizer
from ufd.runtime.sessions import EncoderSession

logger = logging.getLogger(__name__)

Logits = Callable[[np.ndarray], np.ndarray]
DEFAULT_TOLERANCE = Tolerance(min_feature_cosine=0.999, max_abs_logit=None)
"""Used for bundles that store none (made before schema 7) or a loose one
(:func:`loose_promise`): int8 arithmetic that saturates (AVX2 without VNNI) gives
cosines near 0.99 or far lower; exact int8 above 0.9999."""
TOLERANCE_BASIS = "int8-portable"
"""The graph whose error, measured at export, sets a bundle's tolerance."""
LEGACY_BASIS_ORDER = ("int8-portable", "int8", "fp16", "fp32")
"""How bundles made before the basis was recorded chose theirs: the first graph they had."""


@dataclass(frozen=True)
class GraphParity:
    """One graph measured on this host against a reference.

    ``reference``: ``bundle`` (the probes' torch fp32 features) or ``fp32-here``
    (bundles without probes: this host's fp32 graph on generated images).
    """

    precision: str
    provider: str
    n_probes: int
    min_feature_cosine: float
    max_abs_logit: float | None
    tolerance: Tolerance
    reference: str = "bundle"
    measured_utc: str = ""
    cached: bool = False

    @property
    def ok(self) -> bool:
        """Whether the graph keeps the tolerance here."""
        if self.min_feature_cosine < self.tolerance.min_feature_cosine:
            return False
        limit, found = self.tolerance.max_abs_logit, self.max_abs_logit
        return limit is None or found is None or found <= limit

    def describe(self) -> str:
        """``cosine 0.99014 < 0.99990, |Δlogit| 0.2507 > 0.0300`` (each against its bound)."""
        low = self.tolerance.min_feature_cosine
        sign = ">=" if self.min_feature_cosine >= low else "<"
        text = f"cosine {self.min_feature_cosine:.5f} {sign} {low:.5f}"
        if self.max_abs_logit is not None:
            text += f", |Δlogit| {self.max_abs_logit:.4f}"
            limit = self.tolerance.max_abs_logit
            if limit is not None:
                text += f" {'<=' if self.max_abs_logit <= limit else '>'} {limit:.4f}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``ok``."""
        return asdict(self) | {"ok": self.ok}


def loose_promise(manifest: Manifest) -> str | None:
    """Why the bundle's stored tolerance depends on the CPU that exported it, or ``None``.

    Loose: the export took it from a full-range ``int8`` graph (no ``int8-portable``
    graph, no ``--tolerance-*`` given) measured on a CPU without 32-bit int8 sums.
    """
    at_export = manifest.provenance.get("device_parity_at_export")
    if manifest.probes is None or not isinstance(at_export, dict):
        return None
    graphs = _mapping(at_export.get("graphs"))
    basis = at_export.get("basis") or next((p for p in LEGACY_BASIS_ORDER if p in graphs), None)
    int8_sums = _mapping(at_export.get("host")).get("int8", "unknown")
    if basis != "int8" or int8_sums == "vnni":
        return None
    stored = manifest.probes.tolerance
    promise = f"cosine >= {stored.min_feature_cosine:g}"
    if stored.max_abs_logit is not None:
        promise += f", |Δlogit| <= {stored.max_abs_logit:g}"
    return (
        f"this bundle's promise ({promise}) was derived from its full-range int8 graph as "
        f"measured on the export CPU ({int8_sums}: int8 sums can saturate there), so it "
        f"depends on that CPU; it is judged by cosine >= "
        f"{DEFAULT_TOLERANCE.min_feature_cosine:g} instead. Re-export the bundle for a "
        "promise that is the same on every CPU"
    )


def _mapping(value: object) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (provenance is read leniently)."""
    return value if isinstance(value, dict) else {}


def promised_tolerance(manifest: Manifest) -> Tolerance:
    """The tolerance the bundle's graphs are judged by (see :func:`loose_promise`).

    Raises:
        BundleError: the bundle has no probes.
    """
    if manifest.probes is None:
        raise BundleError("this bundle has no parity probes (made before schema 7)")
    stored = manifest.probes.tolerance
    if loose_promise(manifest) is None:
        return stored
    floor = DEFAULT_TOLERANCE.min_feature_cosine
    return Tolerance(max(stored.min_feature_cosine, floor), stored.max_abs_logit)


def unit_logits(head: Logits | None, aggregator: Logits | None) -> Logits | None:
    """The logits parity compares for single encoder inputs.

    The head on each feature, through the aggregator first in ``tiles`` bundles (each
    probe an image of one tile).
    """
    if head is None or aggregator is None:
        return head
    return lambda features: head(np.stack([aggregator(row[None]) for row in features]))


def host_features() -> list[str]:
    """The CPU's instruction-set features as the running code sees them (CPUID, hwcaps).

    numpy asks the CPU itself, so under ``qemu-user -cpu Haswell-v4`` these are the
    emulated CPU's (``/proc/cpuinfo`` would still describe the real one). On Linux
    the kernel's hardware capability words are added (``hwcap``: on Arm they name
    SVE, SME, i8mm, which numpy does not), and ``/proc/cpuinfo``'s flags (AMX).
    """
    try:
        from numpy._core._multiarray_umath import __cpu_features__

        found = [name for name, present in __cpu_features__.items() if present]
    except ImportError:  # pragma: no cover - numpy moved it: fall back to the platform
        found = [platform.machine(), platform.processor()]
    found += _hwcaps() + _cpuinfo_flags()
    return sorted(set(found))


def _hwcaps() -> list[str]:
    """``hwcap:<hex>`` words of the auxiliary vector (Linux), as the process sees them."""
    try:
        import ctypes

        getauxval = ctypes.CDLL(None).getauxval
        getauxval.restype = ctypes.c_ulong
        getauxval.argtypes = [ctypes.c_ulong]
    except (OSError, AttributeError):
        return []
    return [f"hwcap{i}:{getauxval(kind):x}" for i, kind in enumerate((16, 26)) if getauxval(kind)]


def _cpuinfo_flags() -> list[str]:
    """int8-relevant ``/proc/cpuinfo`` flags (AMX, VNNI), where the file exists."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            text = fh.read(1 << 16)
    except OSError:
        return []
    flags = set(text.split())
    return sorted(f"cpuinfo:{f}" for f in flags if f.startswith(("amx", "avx512_vnni", "avx_vnni")))


def int8_class(features: list[str] | None = None) -> str:
    """How this CPU sums int8 products: ``vnni`` (32-bit), ``avx2`` (16-bit: saturates), ``arm``."""
    found = set(host_features() if features is None else features)
    if found & {"AVX512VNNI", "AVXVNNI", "AVX_VNNI"}:
        return "vnni"
    if "AVX2" in found:
        return "avx2"
    if found & {"ASIMD", "NEON"}:
        return "arm-dotprod" if "ASIMDDP" in found else "arm"
    return platform.machine() or "unknown"


def host_key(
    graph_sha: str,
    provider: str,
    extra: str = "",
    features: list[str] | None = None,
    ort_version: str | None = None,
) -> str:
    """The cache key of a measurement: CPU features, onnxruntime, provider, graph (and extra)."""
    if ort_version is None:
        import onnxruntime

        ort_version = onnxruntime.__version__
    parts = {
        "features": host_features() if features is None else sorted(features),
        "machine": platform.machine(),
        "onnxruntime": ort_version,
        "provider": provider,
        "graph": graph_sha,
        "extra": extra,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def load_probes(bundle: Bundle, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The bundle's probe crops (N, S, S, 3) uint8 and reference features (N, D).

    Raises:
        BundleError: the bundle has no probes, or the file is damaged.
    """
    probes = bundle.manifest.probes
    if probes is None:
        raise BundleError("this bundle has no parity probes (made before schema 7)")
    try:
        with np.load(bundle.verified_path(probes.file, verify), allow_pickle=False) as data:
            crops, features = data["crops"], data["features"]
    except (OSError, KeyError, ValueError) as e:
        raise BundleError(f"cannot read {probes.file}: {e}; re-export the bundle") from e
    if crops.dtype != np.uint8 or crops.ndim != 4 or len(crops) != len(features):
        raise BundleError(f"{probes.file} is not a probe file of this ufd; re-export the bundle")
    return crops, features.astype(np.float32)


def generated_crops(size: int, count: int = 8, seed: int = 0) -> np.ndarray:
    """Deterministic (count, size, size, 3) uint8 crops: smooth structure plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    crops = []
    for _ in range(count):
        phase, freq = rng.uniform(0, 2 * np.pi, 3), rng.uniform(0.01, 0.08, 3)
        channels = [
            127.5 + 100 * np.sin(freq[c] * xx + phase[c]) * np.cos(0.7 * freq[c] * yy)
            for c in range(3)
        ]
        pixels = np.stack(channels, axis=-1) + rng.normal(0, 12, (size, size, 3))
        crops.append(np.clip(pixels, 0, 255).astype(np.uint8))
    return np.stack(crops)


def compare(
    features: np.ndarray, reference: np.ndarray, logits: Logits | None
) -> tuple[float, float | None]:
    """(smallest cosine, largest |Δlogit|) of ``features`` against ``reference``."""
    a, b = features.astype(np.float64), reference.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = (a * b).sum(1) / np.maximum(norms, np.finfo(np.float64).tiny)  # short features too
    logit = None
    if logits is not None:
        got = logits(features).astype(np.float64)
        logit = float(np.abs(got - logits(reference).astype(np.float64)).max())
    return float(cosine.min()), logit


def encode(encoder: EncoderSession, normalise: Normalizer, crops: np.ndarray) -> np.ndarray:
    """Features of the crops, one image per call (as dynamic int8 runs)."""
    return np.concatenate([encoder(normalise(crop)[None]) for crop in crops])


def measure(
    bundle: Bundle,
    precision: str,
    encoder: EncoderSession,
    logits: Logits | None,
    provider: str,
    verify: bool = True,
) -> GraphParity:
    """Measure ``encoder`` (the bundle's ``precision`` graph) against the bundle's probes."""
    crops, reference = load_probes(bundle, verify)
    normalise = Normalizer(bundle.manifest.preprocess.mean, bundle.manifest.preprocess.std)
    cosine, logit = compare(encode(encoder, normalise, crops), reference, logits)
    return GraphParity(
        precision,
        provider,
        len(crops),
        cosine,
        logit,
        promised_tolerance(bundle.manifest),
        measured_utc=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _key(bundle: Bundle, precision: str, provider: str, head_sha: str | None) -> str:
    manifest = bundle.manifest
    if manifest.probes is None:
        raise BundleError("this bundle has no parity probes (made before schema 7)")
    graph_sha = manifest.files[manifest.encoder(precision).file].sha256
    probes_sha = manifest.files[manifest.probes.file].sha256
    return host_key(graph_sha, provider, f"{probes_sha}|{head_sha}")


def cached(
    bundle: Bundle, precision: str, provider: str, head_sha: str | None
) -> GraphParity | None:
    """The measurement of this graph on this host, when one was made before."""
    path = cache_dir("parity", _key(bundle, precision, provider, head_sha) + ".json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        figures = {k: data[k] for k in ("n_probes", "min_feature_cosine", "max_abs_logit")}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    tolerance = promised_tolerance(bundle.manifest)  # the bundle's, even if it changed since
    measured = str(data.get("measured_utc", ""))
    return GraphParity(
        precision, provider, tolerance=tolerance, cached=True, measured_utc=measured, **figures
    )


def remember(bundle: Bundle, parity: GraphParity, head_sha: str | None) -> None:
    """Cache a measurement (best effort: never fails a run)."""
    path = cache_dir("parity", _key(bundle, parity.precision, parity.provider, head_sha) + ".json")
    record = parity.to_dict() | {"host": describe_host()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        logger.debug("cannot cache a parity measurement: %s", e)


def describe_host() -> dict[str, Any]:
    """What the measurements of this host are keyed on, for people."""
    import onnxruntime

    return {
        "machine": platform.machine(),
        "int8": int8_class(),
        "features": host_features(),
        "onnxruntime": onnxruntime.__version__,
    }
