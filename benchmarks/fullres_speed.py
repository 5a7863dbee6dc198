"""``detectors_speed.py --fullres``: today's detectors at 1 and 4 MP, time and peak memory.

Each (detector, image, engine) runs in a fresh process (``--child``) so that its
peak RSS is its own: ``int8`` and ``fp32`` are ufd's bundle end to end
(``Detector.score_images`` on the file: decode, units, encoder, aggregator, head),
``torch`` the official pipeline rebuilt in tests/official_*.py (decode, its
transform, its model, fp32). A child the kernel kills (out of memory) is
reported as such, not retried.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

from PIL import Image

IMAGES = {"1MP": (1152, 864), "4MP": (2304, 1728)}
ENGINES = ("int8", "fp32", "torch")
DETECTORS = ("dda", "aligned", "bfree", "spai")


def _images(work: Path) -> dict[str, Path]:
    """A real photo (scikit-image's astronaut) scaled to 1 and 4 MP, JPEG quality 90."""
    from skimage import data

    paths = {}
    for name, size in IMAGES.items():
        path = work / f"photo_{name}.jpg"
        if not path.exists():
            Image.fromarray(data.astronaut()).resize(size, Image.Resampling.BICUBIC).save(
                path, quality=90
            )
        paths[name] = path
    return paths


def _ms(run, runs: int) -> float:
    run()  # warm-up (and the saved-graph cache)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def child(args: Namespace) -> None:
    """Measure one configuration; print one JSON line."""
    name, image, engine = args.child
    path = _images(args.work)[image]
    if engine == "torch":
        import torch
        from fullres_models import official_models

        torch.set_num_threads(os.cpu_count() or 1)
        run = official_models(args.work)[name][0](path)
        note = None
    else:
        from ufd.runtime import Detector

        detector = Detector.open(args.work / name, precision=engine, provider="cpu")
        record = detector.score_images([path])[0]
        if record.error:
            raise SystemExit(f"{name} {image} {engine}: {record.error}")
        note = record.values.get("input")

        def run() -> object:
            return detector.score_images([path])

    ms = _ms(run, args.runs)
    print(json.dumps({"ms": ms, "peak_rss_mb": _peak_rss_mb(), "input": note}))


def _peak_rss_mb() -> float:
    """This process's peak resident memory: ``VmHWM``, which starts afresh at ``exec``
    (``getrusage``'s ``ru_maxrss`` keeps the parent's peak across it on Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _export(work: Path, skip: bool) -> None:
    if skip and all((work / name).exists() for name in DETECTORS):
        return  # the models are not even built: children forked from here start small
    from fullres_models import official_models

    from ufd.export.graph.build import ExportOptions, export_bundle

    for name, (_, files) in official_models(work).items():
        bundle = work / name
        if skip and bundle.exists():
            continue
        started = time.perf_counter()
        export_bundle(
            ExportOptions(
                out=bundle, detector=name, precisions=("fp32", "int8"), force=True, **files
            )
        )
        print(f"{name}: exported in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def _measure(work: Path, name: str, image: str, engine: str, runs: int) -> dict:
    script = str(Path(__file__).with_name("detectors_speed.py"))
    command = [sys.executable, script, "--work", str(work), "--runs", str(runs)]
    command += ["--child", name, image, engine]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        killed = result.returncode in (-9, 137)
        why = "killed (out of memory)" if killed else result.stderr.strip().splitlines()[-1]
        return {"error": why}
    return json.loads(result.stdout.strip().splitlines()[-1])


def fullres(args: Namespace) -> None:
    """Export the four, measure every configuration, print the table."""
    _images(args.work)
    _export(args.work, args.skip_export)
    if args.export_only:
        return
    out = args.work / "detectors_fullres.json"
    rows: dict[str, dict] = {} if args.fresh or not out.exists() else json.loads(out.read_text())
    for name in DETECTORS:
        for image in IMAGES if name != "dda" else ("1MP",):  # DDA reads one 336 crop
            for engine in ENGINES:
                key = f"{name} {image} {engine}"
                if key in rows:
                    continue  # measured by an earlier run (--fresh measures again)
                rows[key] = _measure(args.work, name, image, engine, args.runs)
                print(key, json.dumps(rows[key]), file=sys.stderr)
                out.write_text(json.dumps(rows, indent=2) + "\n")  # a long run can resume
    print(_table(rows))


def _table(rows: dict[str, dict]) -> str:
    lines = [
        "| detector | image | ufd int8 ms (peak RSS MB) | ufd fp32 ms (peak RSS MB) "
        "| official torch fp32 ms (peak RSS MB) |",
        "|---|---|---|---|---|",
    ]
    for name in DETECTORS:
        for image in IMAGES:
            cells = []
            for engine in ENGINES:
                row = rows.get(f"{name} {image} {engine}")
                if row is None:
                    break
                cells.append(
                    row["error"]
                    if "error" in row
                    else f"{row['ms']:.0f} ({row['peak_rss_mb']:.0f})"
                )
            if cells:
                lines.append(f"| {name} | {image} | {' | '.join(cells)} |")
    return "\n".join(lines)
