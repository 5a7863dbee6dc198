"""``ufd-eval``'s ``report.html``: one offline file that opens with the paper's table.

It opens with the bundle named by its model (never a path on the machine that
ran it), then per condition the table ``table.md`` holds (:func:`paper_rows`),
the attribution matrix when one was measured, and last the PR and ROC curves and
score histograms per set as embedded PNGs (matplotlib, Agg backend). Without
matplotlib the tables are still written and the figures replaced by an install
hint.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ufd.runtime.evaluation.report import (
    attribution_rows,
    paper_rows,
    pct,
    stability_rows,
    view_rows,
)
from ufd.runtime.evaluation.scores import SetScores
from ufd.runtime.methods import method_class
from ufd.runtime.metrics import roc_curve

logger = logging.getLogger(__name__)

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}"
    "tr.mean td{font-weight:bold;border-top:2px solid #888}"
    "img{max-width:100%}.meta{color:#555}"
)


def title(results: dict[str, Any]) -> str:
    """The report's title: the model and its weights, the precision."""
    model = results.get("model") or {}
    name = model.get("name", "bundle")
    weights = f" ({model['pretrained']})" if model.get("pretrained") else ""
    return f"ufd-eval: {name}{weights}, {results['precision']}"


def write_html(
    results: dict[str, Any], scores: dict[str, dict[str, SetScores]], path: Path
) -> bool:
    """Write ``report.html``; returns whether the figures are in it (matplotlib)."""
    plt = _pyplot()
    parts = [
        "<!doctype html><html lang='en'><meta charset='utf-8'>",
        f"<title>{html.escape(title(results))}</title><style>{STYLE}</style>",
        f"<h1>{html.escape(title(results))}</h1>",
        f"<p class='meta'>{html.escape(_summary(results))}</p>",
    ]
    for condition, block in results["conditions"].items():
        parts.append(f"<h2>{html.escape(condition)}</h2>")
        parts.append(_table(*paper_rows(results, condition), mean_last=True))
        if "attribution" in block:
            matrix = block["attribution"]
            parts.append(
                f"<h3>attribution (nn)</h3><p>accuracy {pct(matrix['accuracy'])} %; of the "
                f"fakes the vote caught, {pct(matrix['accuracy_of_caught'])} % named right</p>"
            )
            parts.append(_table(*attribution_rows(matrix)))
    if "stability" in results:
        parts.append("<h2>stability under re-upload (flip rates in %)</h2>")
        parts.append(_table(*stability_rows(results)))
        parts.append(_table(*view_rows(results)))
        if plt is not None:
            parts.append(_stability_figure(plt, results["stability"]))
    parts.append("<h2>figures</h2>")
    if plt is None:
        parts.append("<p>figures need matplotlib: pip install 'ufd[eval]'</p>")
    for index, (condition, sets) in enumerate(scores.items() if plt is not None else ()):
        for name, scored in sets.items():
            parts.append(f"<h3>{html.escape(condition)}: {html.escape(name)}</h3>")
            parts.append(_figure(plt, scored))
            if scored.timelines and index == 0:  # videos: over time, in the first condition
                parts.append(_timelines(plt, scored))
    path.write_text("\n".join(parts) + "\n</html>\n", encoding="utf-8")
    return plt is not None


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("report.html without figures: pip install matplotlib (or 'ufd[eval]')")
        return None
    return plt


def _summary(results: dict[str, Any]) -> str:
    parts = [f"bundle {results.get('bundle_name', '')}".strip()]
    for method, threshold in results["thresholds"].items():
        if not method_class(method).calibratable:
            parts.append(f"{method} decides by its own vote")
            continue
        band = (results.get("unsure_bands") or {}).get(method)
        text = f"{method} threshold {threshold:.4f}"
        parts.append(text + (f", unsure above {band:.4f}" if band is not None else ""))
    if results.get("k"):
        parts.append(f"k = {results['k']}")
    if results.get("max_per_class"):
        parts.append(f"at most {results['max_per_class']} images per class")
    return "; ".join(parts)


def _table(header: list[str], rows: list[list[str]], mean_last: bool = False) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, cells in enumerate(rows):
        css = " class='mean'" if mean_last and i == len(rows) - 1 else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(plt: Any, scored: SetScores) -> str:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    labels = scored.labels
    for method, values in scored.scores.items():
        name = method_class(method).summary
        if labels.any() and (~labels).any():
            fpr, tpr, _ = roc_curve(labels, values)
            axes[1].plot(fpr, tpr, label=name)
            precision, recall = _pr_curve(labels, values)
            axes[0].plot(recall, precision, label=name)
        bins = np.linspace(0, 1, 41)
        axes[2].hist(values[~labels], bins=bins, alpha=0.5, label=f"{name}: real")
        axes[2].hist(values[labels], bins=bins, alpha=0.5, label=f"{name}: fake")
    axes[0].set(title="precision-recall", xlabel="recall", ylabel="precision")
    axes[1].set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    axes[2].set(title="scores (p(fake) / nn_score)", xlabel="score", ylabel="images")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:  # a set of one class has no curves
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(plt, fig, "curves")


TIMELINES_SHOWN = 8
"""Videos per set whose timeline the report draws (the first, in path order)."""


def _timelines(plt: Any, scored: SetScores) -> str:
    """p(generated) (the first method's score) over time for a set's videos."""
    shown = sorted(scored.timelines.items())[:TIMELINES_SHOWN]
    fig, ax = plt.subplots(figsize=(13, 3.2))
    for path, video in shown:
        points = [p for p in video["timeline"] if p.get("t") is not None]
        times = [p["t"] for p in points]
        values = [p[video["field"]] for p in points]
        ax.plot(times, values, marker=".", label=f"{Path(path).name}: {video['label']}")
    ax.set(title="videos: score per frame over time (label by the video rule)", xlabel="s")
    ax.set(ylabel=shown[0][1]["field"] if shown else "score")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    more = len(scored.timelines) - len(shown)
    note = f"<p>{more} more videos not drawn</p>" if more > 0 else ""
    return _png(plt, fig, "videos over time") + note


def _stability_figure(plt: Any, block: dict[str, Any]) -> str:
    """Flip rate per view, one bar per method (mean over the sets)."""
    views, methods = block["views"], list(block["mean"])
    fig, ax = plt.subplots(figsize=(11, 3.6))
    width = 0.8 / max(len(methods), 1)
    for i, method in enumerate(methods):
        rates = [block["mean"][method]["per_view"][v]["flip_rate"] or 0.0 for v in views]
        positions = np.arange(len(views)) + i * width
        ax.bar(positions, [100 * r for r in rates], width, label=method)
    ax.set_xticks(np.arange(len(views)) + width * (len(methods) - 1) / 2, views, rotation=30)
    ax.set(title="label flips under re-upload", ylabel="flip rate (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(plt, fig, "flip rate per view")


def _png(plt: Any, fig: Any, alt: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def _pr_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="mergesort")
    hits = np.cumsum(labels[order])
    precision = hits / np.arange(1, len(labels) + 1)
    recall = hits / max(labels.sum(), 1)
    return precision, recall
