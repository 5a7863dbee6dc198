"""``ufd-eval``: the paper's evaluation tables for any bundle."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated

import typer

from ufd.cli.common import (
    BATCH_HELP,
    TrustKeys,
    fail,
    handle_errors,
    methods_help,
    provider_help,
    run,
    setup_logging,
    trust,
)
from ufd.runtime.transforms import REUPLOAD_NAMES

app = typer.Typer(add_completion=False, rich_markup_mode=None)


def _numbers(text: str | None, kind: type) -> list:
    if not text:
        return []
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise fail(f"cannot read {text!r} as comma-separated numbers") from None


@app.command(
    help=(
        "Evaluate a bundle on test sets laid out as ROOT/<set>/0_real, ROOT/<set>/1_fake "
        "(or ROOT/<set>/<class>/0_real ...). Per set: AP, accuracy (real/fake/all) at the "
        "threshold, oracle best-threshold accuracy, ROC-AUC, TPR at 5 % FPR, counts; a mean "
        "row. A method with an unsure band (ufd-calibrate --target-fnr) adds the share "
        "called unsure; nn on a bank with sources named like the sets adds an attribution "
        "confusion matrix. Writes results.json, table.md and report.html to --out."
    )
)
@handle_errors
def evaluate(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    root: Annotated[Path, typer.Argument(help="Folder of test sets.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("eval-results"),
    method: Annotated[str, typer.Option(help=methods_help())] = "linear",
    k: Annotated[
        int | None, typer.Option("--k", min=1, help="Neighbours (nn: 1, realonly: calibrated).")
    ] = None,
    jpeg: Annotated[
        str | None, typer.Option(help="JPEG qualities to re-compress with, e.g. 95,75,50.")
    ] = None,
    blur: Annotated[str | None, typer.Option(help="Gaussian blur sigmas, e.g. 1,2.")] = None,
    stability: Annotated[
        bool,
        typer.Option(
            "--stability",
            help="Also score every image's re-upload views (" + ", ".join(REUPLOAD_NAMES) + ") "
            "and report per method and set how often the label flips, the mean and p95 of "
            "|Δscore|, and which view flips most.",
        ),
    ] = False,
    max_per_class: Annotated[
        int | None, typer.Option(min=1, help="Sample at most N per class (seeded).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    precision: Annotated[str | None, typer.Option(help="Encoder precision.")] = None,
    provider: Annotated[str, typer.Option(help=provider_help())] = "auto",
    threads: Annotated[int | None, typer.Option(min=1, help="onnxruntime threads.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help=BATCH_HELP)] = None,
    cache: Annotated[
        Path | None,
        typer.Option(help="Feature cache folder (default: $UFD_CACHE_DIR/features)."),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not cache features.")] = False,
    trust_key: TrustKeys = [],  # noqa: B006
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs.")] = 0,
) -> None:
    """Evaluate (see the command help)."""
    setup_logging(verbose)
    trust(trust_key)
    from ufd.runtime.cache import cache_dir
    from ufd.runtime.detector import Detector
    from ufd.runtime.tools.evaluate import EvalOptions, discover_sets, evaluate, limit_per_class
    from ufd.runtime.tools.report import write_json, write_table
    from ufd.runtime.tools.report_html import write_html

    detector = Detector.open(bundle, precision=precision, provider=provider, threads=threads)
    methods, _ = detector.plan(method, k)
    qualities, sigmas = _numbers(jpeg, int), _numbers(blur, float)
    conditions = [(0.0, None)] + [(0.0, q) for q in qualities] + [(s, None) for s in sigmas]
    conditions += list(itertools.product(sigmas, qualities))  # blur before JPEG
    sets = [limit_per_class(s, max_per_class, seed) for s in discover_sets(root)]
    if max_per_class is not None:
        typer.echo(f"sampling at most {max_per_class} images per class (seed {seed})", err=True)
    for s in sets:
        typer.echo(f"  {s.name}: {len(s.real)} real, {len(s.fake)} fake", err=True)
    skipped: list[list[str]] = []
    options = EvalOptions(
        methods=methods,
        k=k,
        conditions=tuple(conditions),
        max_per_class=max_per_class,
        seed=seed,
        batch_size=batch_size,
        cache_root=None if no_cache else (cache or cache_dir("features")),
    )

    seen: set[tuple[str, str]] = set()

    def skip(path: str, why: str) -> None:
        if (path, why) not in seen:  # once, however many conditions and views meet it
            seen.add((path, why))
            skipped.append([path, why])

    per_condition, scores = evaluate(detector, sets, options, skip)
    model = detector.bundle.manifest.model
    results = {
        "bundle": str(bundle),
        "bundle_name": Path(bundle).resolve().name,
        "model": {"name": model.name, "pretrained": model.pretrained},
        "precision": detector.precision,
        "threshold": detector.threshold if "linear" in methods else None,
        "thresholds": {m: detector.methods.get(m).threshold for m in methods},
        "unsure_bands": {m: detector.methods.get(m).real_below for m in methods},
        "methods": list(methods),
        "k": k,
        "max_per_class": max_per_class,
        "seed": seed,
        "conditions": per_condition,
        "skipped": skipped,
    }
    if stability:
        from ufd.runtime.tools.stability import stability as measure_stability

        typer.echo(f"stability: scoring {len(REUPLOAD_NAMES)} re-upload views per image", err=True)
        results["stability"] = measure_stability(detector, sets, options, scores["clean"], skip)
    out.mkdir(parents=True, exist_ok=True)
    write_json(results, out / "results.json")
    write_table(results, out / "table.md")
    html = write_html(results, scores, out / "report.html")
    typer.echo((out / "table.md").read_text(encoding="utf-8"))
    typer.echo(
        f"wrote {out}/results.json, table.md{', report.html' if html else ''}; "
        f"{len(skipped)} unreadable images skipped (listed in results.json)"
    )


def main() -> None:
    """Console-script entry point."""
    run(app)


if __name__ == "__main__":
    main()
