"""Put a newly trained features -> logit head (linear or traces) into an existing bundle.

The head is exported to ONNX under a new name, checked against torch on the
validation features (refused if |Δlogit| > 1e-4), then the manifest is
switched to it atomically and the old head file removed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ufd.export.graph.onnx_export import export_feature_head
from ufd.runtime.bundle import Bundle, Manifest, MethodEntry
from ufd.runtime.bundle.update import publish_file
from ufd.runtime.errors import ExportError
from ufd.runtime.sessions import HeadSession

MAX_HEAD_LOGIT_ERROR = 1e-4
_LOGIT_FIGURES = (
    "max_abs_logit_error",
    "p50_abs_logit_error",
    "p99_abs_logit_error",
    "decision_agreement",
)


def head_onnx_error(head: torch.nn.Module, path: Path, features: np.ndarray) -> float:
    """Max |Δlogit| between the ONNX head at ``path`` and torch on ``features``."""
    with torch.no_grad():
        expected = head(torch.from_numpy(features.astype(np.float32))).reshape(-1).numpy()
    got = HeadSession(path)(features)
    return float(np.abs(got - expected).max()) if len(features) else 0.0


def export_checked(
    bundle: Bundle, head: torch.nn.Module, prefix: str, check: np.ndarray
) -> tuple[str, float]:
    """Export a features -> logit head as ``<prefix>-<digest>.onnx`` in the bundle.

    Returns:
        (file name, max |Δlogit| vs torch on ``check``).

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
    return name, error


def install_head(
    bundle: Bundle,
    method: str,
    head: torch.nn.Module,
    training: dict[str, Any],
    check: np.ndarray,
) -> Manifest:
    """Export ``head`` into ``bundle`` as method ``method``'s graph and record it.

    The method's threshold and calibration are reset (they belonged to the old
    head); ``training`` (with the measured ONNX error added) becomes its provenance.

    Raises:
        ExportError: the ONNX head does not reproduce torch within 1e-4.
    """
    prefix = "head.trained" if method == "linear" else method
    name, error = export_checked(bundle, head, prefix, check)
    old = bundle.manifest.method(method)
    replaces = old.files.get("graph") if old is not None else None
    provenance = {"training": {**training, "max_abs_logit_error_onnx": error}}

    def change(manifest: Manifest) -> Manifest:
        updated = manifest.with_method(method, MethodEntry(files={"graph": name}), provenance)
        if method != "linear":
            return updated
        return _linear_provenance(updated, name)

    return publish_file(bundle, name, replaces, change)


def _linear_provenance(manifest: Manifest, name: str) -> Manifest:
    """A new linear head: record where it came from, and drop stale logit parity.

    Export-time logit parity was measured with the previous head: the feature
    figures stay (still true), the logit figures go.
    """
    record = json.loads(json.dumps(manifest.provenance))
    record["head"] = {
        "kind": "linear",
        "source": "ufd-train",
        "sha256": manifest.files[name].sha256,
    }
    for report in (record.get("parity") or {}).values():
        if isinstance(report, dict):
            report.update(dict.fromkeys(_LOGIT_FIGURES))
    return dataclasses.replace(manifest, provenance=record)
