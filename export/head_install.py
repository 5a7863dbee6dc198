"""Put a newly trained linear head into an existing bundle.

The head is exported to ONNX under a new name, checked against torch on the
validation features (refused if |Δlogit| > 1e-4), then the manifest is
switched to it atomically and the old head file removed.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import torch

from ufd.export.bundle_update import write_manifest
from ufd.export.onnx_export import (
    HEAD_INPUT,
    HEAD_OUTPUT,
    export_feature_head,
)
from ufd.runtime.bundle import Bundle, sha256_file
from ufd.runtime.errors import ExportError
from ufd.runtime.manifest import (
    FileEntry,
    GraphEntry,
    HeadInfo,
    Manifest,
    TracesInfo,
    TrainingSummary,
)
from ufd.runtime.sessions import LinearHeadSession

MAX_HEAD_LOGIT_ERROR = 1e-4


def head_onnx_error(head: torch.nn.Module, path: Path, features: np.ndarray) -> float:
    """Max |Δlogit| between the ONNX head at ``path`` and torch on ``features``."""
    with torch.no_grad():
        expected = head(torch.from_numpy(features.astype(np.float32))).reshape(-1).numpy()
    got = LinearHeadSession(path, "cpu")(features)
    return float(np.abs(got - expected).max()) if len(features) else 0.0


def export_checked(
    bundle: Bundle, head: torch.nn.Module, prefix: str, check: np.ndarray
) -> tuple[str, Path, float]:
    """Export a features -> logit head as ``<prefix>-<digest>.onnx`` in the bundle.

    Returns:
        (file name, path, max |Δlogit| vs torch on ``check``).

    Raises:
        ExportError: the graph does not reproduce torch within 1e-4 (file removed).
    """
    state = b"".join(t.detach().numpy().tobytes() for t in head.state_dict().values())
    name = f"{prefix}-{hashlib.sha256(state).hexdigest()[:12]}.onnx"
    path = bundle.root / name
    export_feature_head(head, check.shape[1], path)
    error = head_onnx_error(head, path, check)
    if error > MAX_HEAD_LOGIT_ERROR:
        path.unlink()
        raise ExportError(f"the ONNX graph of {prefix} differs from torch by {error:.2e}")
    return name, path, error


def install_linear_head(
    bundle: Bundle, linear: torch.nn.Linear, summary: TrainingSummary, check: np.ndarray
) -> Manifest:
    """Export ``linear`` into ``bundle`` and make it the bundle's head.

    Raises:
        ExportError: the ONNX head does not reproduce torch within 1e-4.
    """
    root = bundle.root
    name, path, error = export_checked(bundle, linear, "head.trained", check)
    old = bundle.manifest.head_graph()
    old_file = old.path if old is not None else None
    files = _files_with(bundle, old_file, name, path)
    graphs = {k: v for k, v in bundle.manifest.graphs.items() if v.role != "head"}
    graphs["head"] = GraphEntry("head", "fp32", name, HEAD_INPUT, HEAD_OUTPUT)
    # Export-time logit parity was measured with the previous head: keep the
    # feature figures (still true), drop the stale logit figures.
    parity = {
        precision: dataclasses.replace(
            report,
            max_abs_logit_error=None,
            p50_abs_logit_error=None,
            p99_abs_logit_error=None,
            decision_agreement=None,
        )
        for precision, report in bundle.manifest.parity.items()
    }
    manifest = dataclasses.replace(
        bundle.manifest,
        files=files,
        graphs=graphs,
        parity=parity,
        head=HeadInfo(kind="linear", source="ufd-train", sha256=files[name].sha256),
        training=dataclasses.replace(summary, max_abs_logit_error_onnx=error),
        calibrations={m: c for m, c in bundle.manifest.calibrations.items() if m != "linear"},
        threshold=0.5,
    )
    _publish(root, manifest, old_file, name)
    return manifest


def install_traces_head(
    bundle: Bundle, head: torch.nn.Module, info: TracesInfo, check: np.ndarray
) -> Manifest:
    """Export a natural-trace head into ``bundle`` (features -> logit) and record it.

    Raises:
        ExportError: the ONNX graph does not reproduce torch within 1e-4.
    """
    root = bundle.root
    name, path, error = export_checked(bundle, head, "traces", check)
    old_file = bundle.manifest.traces.file if bundle.manifest.traces is not None else None
    files = _files_with(bundle, old_file, name, path)
    manifest = dataclasses.replace(
        bundle.manifest,
        files=files,
        traces=dataclasses.replace(info, file=name, max_abs_logit_error_onnx=error),
        method_thresholds={k: v for k, v in bundle.manifest.method_thresholds.items()
                           if k != "traces"},
        calibrations={k: v for k, v in bundle.manifest.calibrations.items() if k != "traces"},
    )  # fmt: skip
    _publish(root, manifest, old_file, name)
    return manifest


def _files_with(
    bundle: Bundle, old_file: str | None, name: str, path: Path
) -> dict[str, FileEntry]:
    """The manifest's file table with ``old_file`` replaced by the new ``name``."""
    files = {k: v for k, v in bundle.manifest.files.items() if k != old_file}
    files[name] = FileEntry(sha256=sha256_file(path), size=path.stat().st_size)
    return files


def _publish(root: Path, manifest: Manifest, old_file: str | None, name: str) -> None:
    """Switch the manifest to the new file, then remove the file it replaced."""
    write_manifest(root, manifest)
    if old_file is not None and old_file != name:
        (root / old_file).unlink(missing_ok=True)
