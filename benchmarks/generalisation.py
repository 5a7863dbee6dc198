"""Generalisation to an unseen generator: linear vs NN vs traces vs real-only.

Train on reals + fakes of generators 0..G-2 (synthetic features, see
``ufd.export.train.synthetic``); test on held-out reals against (a) fakes of the
training generators and (b) fakes of generator G-1, whose artefact direction
no training generator used. Reports AP and ROC-AUC per method.

Usage:
    python benchmarks/generalisation.py [--n 4000] [--dim 768]
Writes benchmarks/results/generalisation.json and .md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ufd.export.train.linear import TrainOptions, train_linear_head
from ufd.export.train.synthetic import SyntheticWorld
from ufd.export.train.traces import TracesOptions, train_traces_head
from ufd.runtime.search.hnsw import HnswBank
from ufd.runtime.search.neighbours import LabelledBank
from ufd.runtime.tools.metrics import average_precision, roc_auc


def run(n: int, dim: int, seed: int = 0, traces_epochs: int = 30) -> dict:
    """Train every method and score seen and unseen generators."""
    world = SyntheticWorld(dim=dim, seed=seed)
    seen = list(range(world.generators - 1))
    unseen = world.generators - 1
    per_gen = n // len(seen)
    train_real = world.reals(n, seed=1)
    train_fake = np.concatenate([world.fakes(per_gen, g, seed=2) for g in seen])
    val_real, val_fake = (
        world.reals(n // 4, 3),
        np.concatenate([world.fakes(n // 4 // len(seen), g, 4) for g in seen]),
    )
    test_real = world.reals(n // 2, 5)
    tests = {
        "seen": np.concatenate([world.fakes(n // 2 // len(seen), g, 6) for g in seen]),
        "unseen": world.fakes(n // 2, unseen, 7),
    }
    x = np.concatenate([train_real, train_fake])
    y = np.r_[np.zeros(len(train_real)), np.ones(len(train_fake))].astype(np.float32)
    vx = np.concatenate([val_real, val_fake])
    vy = np.r_[np.zeros(len(val_real)), np.ones(len(val_fake))].astype(np.float32)

    linear = train_linear_head(x, y, vx, vy, TrainOptions(epochs=30, lr=1e-3, seed=seed)).linear
    traces, _ = train_traces_head(x, y, vx, vy, TracesOptions(epochs=traces_epochs, seed=seed))
    nn_bank = LabelledBank(HnswBank.build(x), y.astype(np.uint8), exact_below=10**9)
    reals_bank = HnswBank.build(train_real)

    def scores(features: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            t = torch.from_numpy(features)
            lin = linear(t).squeeze(1).numpy()
            tra = traces(t).squeeze(1).numpy()
        _, dist = reals_bank.search(features, 5, exact=True)
        return {
            "linear": lin,
            "nn_k1": nn_bank.vote(features, 1).score,
            "traces": tra,
            "realonly_k5": dist.mean(axis=1),
        }

    real_scores = scores(test_real)
    result: dict = {"n_train": len(x), "dim": dim, "seed": seed}
    for name, fakes in tests.items():
        fake_scores = scores(fakes)
        labels = np.r_[np.zeros(len(test_real)), np.ones(len(fakes))].astype(bool)
        result[name] = {
            method: {
                "ap": average_precision(labels, np.r_[real_scores[method], fake_scores[method]]),
                "auc": roc_auc(labels, np.r_[real_scores[method], fake_scores[method]]),
            }
            for method in real_scores
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    rows = [run(args.n, args.dim, int(s)) for s in args.seeds.split(",")]
    lines = ["| seed | split | " + " | ".join(rows[0]["seen"]) + " |", "|---|---|" + "---|" * 4]
    for row in rows:
        for split in ("seen", "unseen"):
            cells = [f"AP {v['ap']:.3f} / AUC {v['auc']:.3f}" for v in row[split].values()]
            lines.append(f"| {row['seed']} | {split} | " + " | ".join(cells) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generalisation.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "generalisation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
