"""``ufd-eval`` outputs: ``results.json`` and ``table.md`` (paper layout).

:func:`paper_rows` is the one place the paper's table is laid out; ``table.md``
and ``report.html`` (:mod:`.report_html`) both print it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def paper_rows(results: dict[str, Any], condition: str) -> tuple[list[str], list[list[str]]]:
    """The paper's layout for one condition: header and rows (sets, then the mean).

    Per method: AP, accuracy (real/fake), oracle best accuracy, ROC-AUC, in
    percent; methods with an unsure band add the share called unsure.
    """
    block = results["conditions"][condition]
    methods = results["methods"]
    banded = [m for m in methods if "unsure" in block["mean"].get(m, {})]
    header = ["set"]
    for m in methods:
        header += [f"{m} AP", f"{m} acc (real/fake)", f"{m} best acc", f"{m} AUC"]
        header += [f"{m} unsure"] if m in banded else []
    rows = []
    for name, metrics in [*block["sets"].items(), ("mean", block["mean"])]:
        cells = [name]
        for m in methods:
            r = metrics[m]
            cells += [
                pct(r["ap"]),
                f"{pct(r['acc'])} ({pct(r['real_acc'])}/{pct(r['fake_acc'])})",
                pct(r["best_acc"]),
                pct(r["auc"]),
            ]
            cells += [pct(r.get("unsure"))] if m in banded else []
        rows.append(cells)
    return header, rows


def attribution_rows(matrix: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The attribution confusion matrix: true source (rows) x ``nn_source`` (columns)."""
    predicted = ["real", *matrix["sources"], "unknown"]
    header = ["true \\ nn_source", *predicted]
    rows = [
        [truth, *(str(row.get(p, 0)) for p in predicted)] for truth, row in matrix["matrix"].items()
    ]
    return header, rows


def stability_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """``--stability``: per set and method (then the mean), how often a re-upload flips."""
    block = results["stability"]
    header = [
        "set",
        "method",
        "flip rate",
        "images flipped",
        "mean abs Δ",
        "p95 abs Δ",
        "worst view",
    ]
    rows = []
    for name, per_method in [*block["sets"].items(), ("mean", block["mean"])]:
        for method, r in per_method.items():
            worst = r["worst_view"]
            flips = f" ({pct(r['per_view'][worst]['flip_rate'])})" if worst else ""
            rows.append(
                [
                    name,
                    method,
                    pct(r["flip_rate"]),
                    pct(r["images_flipped"]),
                    _number(r["mean_abs_delta"]),
                    _number(r["p95_abs_delta"]),
                    f"{worst or '-'}{flips}",
                ]
            )
    return header, rows


def view_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """``--stability``: each view's flip rate per method (mean over the sets), in percent."""
    block = results["stability"]
    methods = list(block["mean"])
    header = ["view", *(f"{m} flip rate" for m in methods)]
    rows = [
        [view, *(pct(block["mean"][m]["per_view"][view]["flip_rate"]) for m in methods)]
        for view in block["views"]
    ]
    return header, rows


def write_table(results: dict[str, Any], path: Path) -> None:
    """``table.md``: the paper's layout per condition (attribution, stability when measured)."""
    lines = []
    for condition, block in results["conditions"].items():
        header, rows = paper_rows(results, condition)
        rows[-1][0] = "**mean**"
        lines += [f"## {condition}\n", *_markdown(header, rows), ""]
        if "attribution" in block:
            matrix = block["attribution"]
            lines += [
                f"### attribution (nn): accuracy {pct(matrix['accuracy'])} %, "
                f"{pct(matrix['accuracy_of_caught'])} % of the fakes caught\n",
                *_markdown(*attribution_rows(matrix)),
                "",
            ]
    if "stability" in results:
        lines += [
            "## stability under re-upload (flip rates in %)\n",
            *_markdown(*stability_rows(results)),
            "",
            *_markdown(*view_rows(results)),
            "",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")


def _markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(cells) + " |" for cells in rows
    ]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def pct(value: float | None) -> str:
    """A share in percent with two decimals (``-`` when unknown)."""
    return "-" if value is None or np.isnan(value) else f"{100 * value:.2f}"


def write_json(results: dict[str, Any], path: Path) -> None:
    """``results.json`` (NaN written as null)."""
    text = json.dumps(results, indent=2, default=float)
    path.write_text(text.replace("NaN", "null") + "\n", encoding="utf-8")
