"""Fit the UnivFD linear head on frozen features with the paper's recipe.

``nn.Linear(D, 1)``, weight ~ N(0, 0.02), bias 0; AdamW (lr 1e-4, betas
(0.9, 0.999), no weight decay), batch 256, BCE with logits. Early stopping on
validation accuracy with patience 5: on trigger the learning rate is divided
by 10 and training goes on from the best weights; it stops once lr < 1e-6 or
after ``epochs``. Deterministic for a seed (CPU).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

logger = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    """Hyper-parameters (defaults: the official ``train.py``)."""

    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-4
    patience: int = 5
    min_lr: float = 1e-6
    seed: int = 0


@dataclass(frozen=True)
class TrainingSummary:
    """Provenance of a trained head: how ``ufd-train`` produced it."""

    method: str
    n_train_real: int
    n_train_fake: int
    n_val: int
    epochs_run: int
    best_epoch: int
    best_val_acc: float
    final_lr: float
    augment: str
    views: int
    seed: int


@dataclass
class TrainResult:
    """The best head and how training went."""

    linear: torch.nn.Linear
    epochs_run: int
    best_epoch: int
    best_val_acc: float
    final_lr: float
    history: list[dict]


def train_linear_head(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    options: TrainOptions,
    on_epoch: Callable[[dict], None] = lambda row: None,
) -> TrainResult:
    """Train on (N, D) features and 0/1 labels (1 = fake); select on validation accuracy."""
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    x = torch.from_numpy(np.ascontiguousarray(train_x, np.float32))
    y = torch.from_numpy(np.asarray(train_y, np.float32))
    vx = torch.from_numpy(np.ascontiguousarray(val_x, np.float32))
    vy = torch.from_numpy(np.asarray(val_y, np.float32))
    linear = torch.nn.Linear(x.shape[1], 1)
    torch.nn.init.normal_(linear.weight, 0.0, 0.02)
    torch.nn.init.zeros_(linear.bias)
    optimiser = torch.optim.AdamW(
        linear.parameters(), lr=options.lr, betas=(0.9, 0.999), weight_decay=0.0
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    lr, best_acc, best_epoch, stale = options.lr, -1.0, 0, 0
    best_state = {k: v.clone() for k, v in linear.state_dict().items()}
    history, epoch = [], 0
    for epoch in range(1, options.epochs + 1):
        linear.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), options.batch_size):
            idx = order[start : start + options.batch_size]
            optimiser.zero_grad()
            loss = loss_fn(linear(x[idx]).squeeze(1), y[idx])
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
        acc = _accuracy(linear, vx, vy)
        row = {"epoch": epoch, "loss": total / len(x), "val_acc": acc, "lr": lr}
        history.append(row)
        on_epoch(row)
        if acc > best_acc:
            best_acc, best_epoch, stale = acc, epoch, 0
            best_state = {k: v.clone() for k, v in linear.state_dict().items()}
            continue
        stale += 1
        if stale >= options.patience:
            lr /= 10
            if lr < options.min_lr:
                break
            logger.info("no improvement for %d epochs: lr -> %.1e", options.patience, lr)
            linear.load_state_dict(best_state)
            for group in optimiser.param_groups:
                group["lr"] = lr
            stale = 0
    linear.load_state_dict(best_state)
    return TrainResult(linear.eval(), epoch, best_epoch, best_acc, lr, history)


def _accuracy(linear: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    linear.eval()
    with torch.no_grad():
        return float(((linear(x).squeeze(1) > 0).float() == y).float().mean())
