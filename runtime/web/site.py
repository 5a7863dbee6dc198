"""``ufd-bundle web``: a bundle as a static site that scores images in the browser.

The site (``OUT/``) holds the page (``index.html``, ``ufd-web/*.js``: decode,
preprocessing and the record, written to give ufd-detect's records), ``web.json`` (what
the page needs of the manifest), the graphs under ``model/`` (each with its sha256,
which the page checks), the parity probes as one raw file, and onnxruntime-web's
files under ``ort/`` (``ort/SOURCE.json``: version, licence, sha256). Nothing is
fetched from elsewhere at run time.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ufd.runtime.bundle import Bundle
from ufd.runtime.errors import BundleError, UsageError
from ufd.runtime.io.policy import DEFAULT_MAX_PIXELS, EMPTY_FILE, NOT_AN_IMAGE_FORMAT
from ufd.runtime.methods import open_bundle
from ufd.runtime.parity import load_probes, promised_tolerance
from ufd.runtime.providers import PROVIDERS
from ufd.runtime.registry import INPUT_NOTE, registered
from ufd.runtime.sessions import HeadSession
from ufd.runtime.web import ort_package

BROWSER_ORDER = ("int8", "int8-portable", "fp32")
"""The graphs a page tries on WebAssembly, fastest first."""
DEFAULT_PRECISIONS = ("int8", "fp32")
MARKER = "web.json"


@dataclass(frozen=True)
class WebOptions:
    """What ``ufd-bundle web`` builds."""

    bundle: Path
    out: Path
    precisions: tuple[str, ...] = DEFAULT_PRECISIONS
    ort_tarball: Path | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    webgpu: bool = False


def build_site(options: WebOptions) -> dict[str, Any]:
    """Write the site; return its ``web.json``.

    Raises:
        BundleError: the bundle cannot run in a browser (no linear head, no probes).
        UsageError: ``out`` holds something else, or onnxruntime-web cannot be had.
    """
    bundle = open_bundle(options.bundle)
    graphs = _graphs(bundle, options.precisions, options.webgpu)
    site = _describe(bundle, graphs, options)  # refuses before anything is written
    ort_files = ort_package.unpack(ort_package.tarball(options.ort_tarball), options.webgpu)
    out = _fresh(options.out)
    model = out / "model"
    model.mkdir(parents=True)
    for name in {g["file"] for g in graphs} | {site["head"]["file"]}:
        (model / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle.graph_path(name), model / name)
    if site["aggregator"] is not None:
        shutil.copyfile(bundle.graph_path(site["aggregator"]["file"]), model / "aggregator.onnx")
    site["probes"] |= _write_probes(bundle, model / "probes.bin")
    site["notes"] = _notes(bundle, graphs, options)
    site["ort"] = ort_files.describe()
    _write_page(out, ort_files)
    (out / MARKER).write_text(json.dumps(site, indent=1), encoding="utf-8")
    return site


def _graphs(bundle: Bundle, wanted: tuple[str, ...], webgpu: bool) -> list[dict[str, Any]]:
    manifest = bundle.manifest
    order = ("fp16", *BROWSER_ORDER) if webgpu else BROWSER_ORDER
    unknown = [p for p in wanted if p not in order]
    if unknown:
        raise UsageError(
            f"--precision {','.join(unknown)}: a browser runs {', '.join(BROWSER_ORDER)}"
            + ("" if webgpu else " (and fp16 on WebGPU, with --webgpu)")
        )
    chosen = [p for p in order if p in wanted and p in manifest.encoders]
    if not chosen:
        raise BundleError(
            f"this bundle has none of the graphs asked for ({', '.join(wanted)}); it has "
            f"{', '.join(manifest.precisions)}"
        )
    graphs = []
    for precision in chosen:
        graph = manifest.encoders[precision]
        if bundle.companion_files(graph.file):
            raise BundleError(
                f"the {precision} graph keeps its weights in external files (over 2 GB): too "
                "large for a browser; build the page with --precision int8"
            )
        entry = manifest.files[graph.file]
        graphs.append(
            {
                "precision": precision,
                "file": graph.file,
                "sha256": entry.sha256,
                "size": entry.size,
                "input": graph.input_name,
                "output": graph.output_name,
            }
        )
    return graphs


def _describe(bundle: Bundle, graphs: list[dict[str, Any]], options: WebOptions) -> dict[str, Any]:
    manifest = bundle.manifest
    linear = manifest.method("linear")
    if linear is None or "graph" not in linear.files:
        raise BundleError(
            "the page scores with the bundle's linear head and this bundle has none: export "
            "it with a head (ufd-export --head ...) or train one (ufd-train)"
        )
    if manifest.probes is None:
        raise BundleError(
            "the page checks its graph on the bundle's parity probes and this bundle has "
            "none (made before schema 7): re-export it"
        )
    head = _graph_entry(bundle, linear.files["graph"])
    aggregator = None
    if manifest.aggregator is not None:
        a = manifest.aggregator
        aggregator = {"file": "aggregator.onnx", "input": a.input_name, "output": a.output_name}
        aggregator["sha256"] = manifest.files[a.file].sha256
    fields = ["path", "logit", "prob", "label"]
    fields += [INPUT_NOTE] if manifest.preprocess.mode == "whole" else []
    others = sorted(set(manifest.methods) - {"linear"})
    return {
        "format": 1,
        "detector": manifest.model.detector,
        "model": f"{manifest.model.name} {manifest.model.pretrained}",
        "bundle_created_utc": manifest.created_utc,
        "preprocess": asdict(manifest.preprocess),
        "max_pixels": options.max_pixels,
        "webgpu": options.webgpu,
        "graphs": graphs,
        "head": head,
        "aggregator": aggregator,
        "method": {"name": "linear", "threshold": _threshold(linear.threshold)}
        | {"real_below": linear.real_below},
        "methods_not_in_browser": others,
        "fields": [*fields, "error"],
        "reasons": {"empty": EMPTY_FILE, "not_an_image": NOT_AN_IMAGE_FORMAT},
        "probes": {"tolerance": asdict(promised_tolerance(manifest))},
    }


def _threshold(stored: float | None) -> float:
    """The linear head's threshold: the bundle's (calibrated), else the method's default."""
    if stored is not None:
        return stored
    default = registered()["linear"].default_threshold
    return 0.5 if default is None else default


def _notes(bundle: Bundle, graphs: list[dict[str, Any]], options: WebOptions) -> list[str]:
    """What the builder should know about how this page will run."""
    fused = [
        g["precision"]
        for g in graphs
        if g["precision"].startswith("fp")
        and bundle.manifest.encoders[g["precision"]].attention == "fused"
    ]
    if not (options.webgpu and fused):
        return []
    return [
        f"the {', '.join(fused)} graph uses onnxruntime's fused attention, which onnxruntime-web's "
        "WebGPU computed outside the tolerance in our tests (the page checks it and falls back "
        "to WebAssembly); for the GPU, export with ufd-export --no-fuse-attention"
    ]


def _graph_entry(bundle: Bundle, name: str) -> dict[str, Any]:
    """A small graph's file, sha256 and input and output names (loaded as its method loads it)."""
    head = HeadSession(bundle.graph_path(name), PROVIDERS["cpu"], 1)
    return {
        "file": name,
        "sha256": bundle.manifest.files[name].sha256,
        "input": head.input_name,
        "output": head.output_name,
    }


def _write_probes(bundle: Bundle, path: Path) -> dict[str, Any]:
    """The probes as raw bytes: the uint8 crops, then the float32 features (little-endian)."""
    crops, features = load_probes(bundle)
    data = np.ascontiguousarray(crops, np.uint8).tobytes()
    data += np.ascontiguousarray(features, "<f4").tobytes()
    path.write_bytes(data)
    return {
        "file": path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "crops_shape": list(crops.shape),
        "features_shape": list(features.shape),
    }


def _fresh(out: Path) -> Path:
    """``out``, emptied if it is a page built before; refused if it holds anything else."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"{out} is a file; give a folder for the site")
        if any(out.iterdir()):
            if not _built_by_ufd(out):
                raise UsageError(
                    f"{out} is not empty and not a page ufd built; give a new or empty folder"
                )
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _built_by_ufd(out: Path) -> bool:
    """Whether ``out`` is a page this command wrote (its web.json says so)."""
    try:
        site = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(site, dict) and {"format", "graphs", "ort"} <= set(site)


def _write_page(out: Path, ort_files: ort_package.OrtFiles) -> None:
    assets = resources.files("ufd.runtime.web") / "assets"
    (out / "index.html").write_bytes((assets / "index.html").read_bytes())
    scripts = out / "ufd-web"
    scripts.mkdir()
    for item in (assets / "ufd-web").iterdir():
        if item.name.endswith(".js"):
            (scripts / item.name).write_bytes(item.read_bytes())
    ort = out / "ort"
    ort.mkdir()
    for name, data in ort_files.files.items():
        (ort / name).write_bytes(data)
    (ort / "LICENSE").write_text(
        ort_package.MIT_TEXT.format(version=ort_files.version), encoding="utf-8"
    )
    (ort / "SOURCE.json").write_text(json.dumps(ort_files.describe(), indent=1), encoding="utf-8")


def page_weight(out: Path, site: dict[str, Any]) -> tuple[int, int]:
    """(bytes a browser downloads when the first graph keeps the tolerance, the whole site)."""
    total = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    later = sum(g["size"] for g in site["graphs"][1:])
    return total - later, total
