"""``ufd-eval`` outputs: ``results.json``, ``table.md`` (paper layout), ``report.html``.

The HTML report embeds PR and ROC curves and score histograms per set as PNG
(matplotlib, Agg backend), so it opens offline as one file. Without
matplotlib the report is skipped with an install hint.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from pathlib import Path

import numpy as np

from ufd.runtime.methods import method_class
from ufd.runtime.tools.evaluate import SetScores
from ufd.runtime.tools.metrics import roc_curve

logger = logging.getLogger(__name__)


def write_table(results: dict, path: Path) -> None:
    """Markdown tables in the paper's layout: rows = sets + mean, columns = AP / Acc."""
    lines = []
    for condition, block in results["conditions"].items():
        methods = results["methods"]
        lines.append(f"## {condition}\n")
        header = ["set"]
        for m in methods:
            header += [f"{m} AP", f"{m} acc (real/fake)", f"{m} best acc", f"{m} AUC"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        rows = [*block["sets"].items(), ("**mean**", block["mean"])]
        for name, metrics in rows:
            cells = [name]
            for m in methods:
                r = metrics[m]
                cells += [
                    _pct(r["ap"]),
                    f"{_pct(r['acc'])} ({_pct(r['real_acc'])}/{_pct(r['fake_acc'])})",
                    _pct(r["best_acc"]),
                    _pct(r["auc"]),
                ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def _pct(value: float) -> str:
    return "-" if value is None or np.isnan(value) else f"{100 * value:.2f}"


def write_json(results: dict, path: Path) -> None:
    """``results.json`` (NaN written as null)."""
    text = json.dumps(results, indent=2, default=float)
    path.write_text(text.replace("NaN", "null") + "\n", encoding="utf-8")


def write_html(results: dict, scores: dict[str, dict[str, SetScores]], path: Path) -> bool:
    """``report.html`` with embedded figures; False (and a hint) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("report.html skipped: pip install matplotlib (or 'ufd[eval]')")
        return False
    parts = [
        "<!doctype html><meta charset='utf-8'><title>ufd-eval report</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:100%}</style>",
        f"<h1>ufd-eval: {html.escape(results['bundle'])}</h1>",
        f"<p>precision {results['precision']}, thresholds "
        + ", ".join(f"{m} {t:.4f}" for m, t in results["thresholds"].items())
        + "</p>",
    ]
    for condition, sets in scores.items():
        parts.append(f"<h2>{html.escape(condition)}</h2>")
        for name, scored in sets.items():
            parts.append(f"<h3>{html.escape(name)}</h3>")
            parts.append(_figure(plt, scored))
    path.write_text("\n".join(parts), encoding="utf-8")
    return True


def _figure(plt, scored: SetScores) -> str:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    labels = scored.labels
    for method, values in scored.scores.items():
        title = method_class(method).summary
        if labels.any() and (~labels).any():
            fpr, tpr, _ = roc_curve(labels, values)
            axes[1].plot(fpr, tpr, label=title)
            precision, recall = _pr_curve(labels, values)
            axes[0].plot(recall, precision, label=title)
        bins = np.linspace(0, 1, 41)
        axes[2].hist(values[~labels], bins=bins, alpha=0.5, label=f"{title}: real")
        axes[2].hist(values[labels], bins=bins, alpha=0.5, label=f"{title}: fake")
    axes[0].set(title="precision-recall", xlabel="recall", ylabel="precision")
    axes[1].set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    axes[2].set(title="scores (p(fake) / nn_score)", xlabel="score", ylabel="images")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img alt='curves' src='data:image/png;base64,{data}'>"


def _pr_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="mergesort")
    hits = np.cumsum(labels[order])
    precision = hits / np.arange(1, len(labels) + 1)
    recall = hits / max(labels.sum(), 1)
    return precision, recall
