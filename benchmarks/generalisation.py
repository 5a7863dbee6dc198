"""Generalisation to an unseen generator: linear vs NN vs traces vs real-only, four geometries.

For each geometry of ``ufd.export.train.geometries`` and each seed: train on
reals + fakes of the seen generators; validate on held-out reals + seen fakes
(early stopping, the logistic maps, the real-only model choice); test held-out
reals against fresh fakes of the seen generators and of the unseen one. AP and
ROC-AUC per method:

* ``linear``: the UnivFD head (paper recipe, the baseline);
* ``nn``: k = 1 vote on a bank of the training reals and fakes;
* ``traces``: the natural-trace head (ufd.export.train.traces);
* ``realonly_knn``: mean distance to the 5 nearest training reals;
* ``realonly``: the real-only scorer chosen on validation (k-NN, Gaussian, combined).

Usage:
    python benchmarks/generalisation.py [--n 4000] [--seeds 0,1,2] [--geometries all]
Writes benchmarks/results/generalisation.json and .md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ufd.export.train.geometries import GEOMETRIES
from ufd.export.train.linear import TrainOptions, train_linear_head
from ufd.export.train.traces import TracesOptions, train_traces_head
from ufd.runtime.building.density import choose, combined
from ufd.runtime.metrics import average_precision, roc_auc
from ufd.runtime.search.base import FloatBank, l2_normalise
from ufd.runtime.search.neighbours import LabelledBank

METHODS = ("linear", "nn", "traces", "realonly_knn", "realonly")


def run(geometry: str, n: int, seed: int) -> dict:
    """Train every method on one geometry and seed; AP/AUC on seen and unseen fakes."""
    world = GEOMETRIES[geometry](seed=seed)
    seen = list(range(world.generators - 1))
    per = n // len(seen)
    train_real = world.reals(n, 1)
    train_fake = np.concatenate([world.fakes(per, g, 2) for g in seen])
    val_real = world.reals(n // 4, 3)
    val_fake = np.concatenate([world.fakes(n // 4 // len(seen), g, 4) for g in seen])
    test_real = world.reals(n // 2, 5)
    tests = {
        "seen": np.concatenate([world.fakes(n // 2 // len(seen), g, 6) for g in seen]),
        "unseen": world.fakes(n // 2, world.generators - 1, 7),
    }
    x = np.concatenate([train_real, train_fake])
    y = np.r_[np.zeros(len(train_real)), np.ones(len(train_fake))].astype(np.float32)
    vx = np.concatenate([val_real, val_fake])
    vy = np.r_[np.zeros(len(val_real)), np.ones(len(val_fake))].astype(np.float32)

    linear = train_linear_head(x, y, vx, vy, TrainOptions(epochs=30, lr=1e-3, seed=seed)).linear
    traces, _ = train_traces_head(x, y, vx, vy, TracesOptions(epochs=20, seed=seed))
    nn = LabelledBank(FloatBank(l2_normalise(x)), y.astype(np.uint8), exact_below=10**9)
    reals = FloatBank(l2_normalise(train_real))

    def knn(features: np.ndarray) -> np.ndarray:
        return reals.search(features, 5, exact=True, invariant=False)[1].astype(float).mean(1)

    choice = choose(train_real, val_real, val_fake, knn)

    def realonly(features: np.ndarray) -> np.ndarray:
        if choice.scorer == "knn":
            return knn(features)
        gauss = choice.model.score(features)
        return gauss if choice.scorer == "gaussian" else combined(knn(features), gauss, choice.z)

    def scores(features: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            t = torch.from_numpy(features)
            lin = linear(t).squeeze(1).numpy()
            tra = traces(t).squeeze(1).numpy()
        return {
            "linear": lin,
            "nn": nn.vote(features, 1).score,
            "traces": tra,
            "realonly_knn": knn(features),
            "realonly": realonly(features),
        }

    real_scores = scores(test_real)
    result: dict = {
        "geometry": geometry,
        "outside_span": world.outside_span,
        "seed": seed,
        "realonly_choice": choice.scorer,
        "validation_ap": choice.validation_ap,
    }
    for split, fakes in tests.items():
        fake_scores = scores(fakes)
        labels = np.r_[np.zeros(len(test_real)), np.ones(len(fakes))].astype(bool)
        result[split] = {
            m: {
                "ap": average_precision(labels, np.r_[real_scores[m], fake_scores[m]]),
                "auc": roc_auc(labels, np.r_[real_scores[m], fake_scores[m]]),
            }
            for m in METHODS
        }
    return result


def targets(row: dict) -> list[str]:
    """The issue's targets this row misses (empty: all met)."""
    missed = []
    seen, unseen = row["seen"], row["unseen"]
    if row["outside_span"]:
        if not (unseen["traces"]["ap"] >= 0.95 and seen["traces"]["ap"] >= 0.99):
            missed.append("traces unseen >= 0.95 with seen >= 0.99")
        if unseen["realonly"]["ap"] < 0.95:
            missed.append("realonly unseen >= 0.95")
    else:
        if max(unseen["traces"]["ap"], unseen["realonly"]["ap"]) < 0.85:
            missed.append("best real-aware unseen >= 0.85")
        if unseen["traces"]["ap"] < unseen["realonly"]["ap"] - 0.02:
            missed.append("traces no worse than realonly")
    return missed


def markdown(rows: list[dict]) -> str:
    head = "| geometry | seed | split | " + " | ".join(METHODS) + " | realonly scorer | misses |"
    lines = [head, "|---|---|---|" + "---|" * (len(METHODS) + 2)]
    for r in rows:
        for split in ("seen", "unseen"):
            cells = [f"{r[split][m]['ap']:.3f} / {r[split][m]['auc']:.3f}" for m in METHODS]
            extra = (
                [r["realonly_choice"], "; ".join(targets(r)) or "-"]
                if split == "unseen"
                else ["", ""]
            )
            span = "out of span" if r["outside_span"] else "in span"
            lines.append(
                f"| {r['geometry']} ({span}) | {r['seed']} | {split} | "
                + " | ".join(cells + extra)
                + " |"
            )
    return "\n".join(lines) + "\n\nCells: AP / ROC-AUC.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--geometries", default="all")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    names = list(GEOMETRIES) if args.geometries == "all" else args.geometries.split(",")
    rows = []
    for name in names:
        for seed in (int(s) for s in args.seeds.split(",")):
            rows.append(run(name, args.n, seed))
            print(name, seed, "misses:", targets(rows[-1]) or "none", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generalisation.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "generalisation.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
