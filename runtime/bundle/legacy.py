"""Read manifests of schema 1 and 2 (ufd before the method registry) as schema 3.

Bundles on disk are never rewritten by reading them: :func:`migrate` turns the
old JSON document into the current one in memory, so an old bundle scores
exactly as it did (same files, thresholds, calibrations, k and fusion
weights). A command that updates a bundle (``ufd-index``, ``ufd-calibrate``,
``ufd-train``) writes the current schema.

Schema 2 kept the linear head among ``graphs`` (role ``head``), thresholds in
``threshold`` (linear) and ``method_thresholds`` (the others), calibrations in
``calibrations``, banks in ``index`` / ``realonly``, the traces head in
``traces`` and fusion weights in ``fusion``. Schema 1 is schema 2 without the
later optional sections.
"""

from __future__ import annotations

from typing import Any

from ufd.runtime.errors import BundleError

_V2_SECTIONS = frozenset(
    {
        "ufd_version",
        "created_utc",
        "model",
        "preprocess",
        "head",
        "graphs",
        "parity",
        "files",
        "opset",
        "threshold",
        "schema_version",
        "notes",
        "index",
        "realonly",
        "traces",
        "fusion",
        "method_thresholds",
        "calibrations",
        "training",
    }
)
_GRAPH_FIELDS = ("batch_invariant", "quantization", "optimization", "attention")
_BANK_CONFIG = ("dim", "counts", "ef", "exact_below", "space")
_BANK_PROVENANCE = ("m", "ef_construction", "seed", "encoder_precision", "build_seconds")


def migrate(old: dict[str, Any]) -> dict[str, Any]:
    """The schema-3 document equivalent to a schema 1 or 2 ``old`` manifest.

    Raises:
        BundleError: ``old`` is not a well-formed schema 1/2 manifest.
    """
    unknown = set(old) - _V2_SECTIONS
    if unknown:
        raise BundleError(f"manifest has unknown field(s) {sorted(unknown)}")
    try:
        return _migrate(old)
    except (KeyError, TypeError, AttributeError) as e:
        raise BundleError(
            f"manifest of schema {old.get('schema_version')} is malformed ({type(e).__name__}: "
            f"{e}); re-export the bundle"
        ) from e


def _migrate(old: dict[str, Any]) -> dict[str, Any]:
    thresholds = old.get("method_thresholds") or {}
    calibrations = {m: _calibration(c) for m, c in (old.get("calibrations") or {}).items()}
    methods: dict[str, Any] = {}
    provenance: dict[str, Any] = {
        "head": old.get("head"),
        "parity": old.get("parity", {}),
        "notes": old.get("notes", []),
        "methods": {},
    }
    encoders = {}
    for graph in old["graphs"].values():
        if graph["role"] == "head":
            methods["linear"] = {
                "files": {"graph": graph["path"]},
                "threshold": old.get("threshold", 0.5),
            }
            continue
        encoders[graph["precision"]] = {
            "file": graph["path"],
            "input_name": graph["input_name"],
            "output_name": graph["output_name"],
            **{k: graph[k] for k in _GRAPH_FIELDS if k in graph},
        }
    if old.get("training") is not None and "linear" in methods:
        provenance["methods"]["linear"] = {"training": old["training"]}
    for slot, method in (("index", "nn"), ("realonly", "realonly")):
        bank = old.get(slot)
        if bank is None:
            continue
        methods[method] = {
            "files": {"index": bank["file"], "labels": bank["labels_file"]},
            "config": {k: bank[k] for k in _BANK_CONFIG if k in bank},
        }
        provenance["methods"][method] = {k: bank[k] for k in _BANK_PROVENANCE if k in bank}
        provenance["methods"][method]["quality"] = bank.get("quality")
    traces = old.get("traces")
    if traces is not None:
        methods["traces"] = {"files": {"graph": traces["file"]}}
        provenance["methods"]["traces"] = {
            "training": {k: v for k, v in traces.items() if k != "file"}
        }
    fusion = old.get("fusion")
    if fusion is not None:
        keys = ("methods", "means", "stds", "weights", "bias")
        methods["fused"] = {"config": {k: fusion[k] for k in keys}}
        provenance["methods"]["fused"] = {k: fusion[k] for k in ("n_val", "val_acc")}
    for name, entry in methods.items():
        if name in thresholds:
            entry["threshold"] = thresholds[name]
        if name in calibrations:
            entry["calibration"] = calibrations[name]
    return {
        "schema_version": 3,
        "ufd_version": old["ufd_version"],
        "created_utc": old["created_utc"],
        "model": old["model"],
        "preprocess": old["preprocess"],
        "encoders": encoders,
        "files": old["files"],
        "opset": old["opset"],
        "methods": methods,
        "provenance": provenance,
    }


def _calibration(info: dict[str, Any]) -> dict[str, Any]:
    """A schema-2 calibration without its ``method`` (now the key it sits under)."""
    return {k: v for k, v in info.items() if k != "method"}
