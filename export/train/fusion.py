"""Fit ``--method fused``: logistic regression over the methods' standardised scores.

Inputs are each available method's continuous score on labelled validation
features (linear and traces logits, the NN score, the real-only distance),
standardised with the validation mean and standard deviation. A small L2
penalty keeps the weights finite when one method separates perfectly.
"""

from __future__ import annotations

import numpy as np
import torch

from ufd.runtime.methods.fused import FusionConfig


def fit_fusion(
    scores: dict[str, np.ndarray], labels: np.ndarray, l2: float = 1e-3
) -> tuple[FusionConfig, dict]:
    """Weights for ``p(fake) = sigmoid(sum_m w_m z_m + b)`` from per-method raw scores.

    Returns:
        (the method's config, its provenance: ``n_val`` and ``val_acc``).
    """
    methods = list(scores)
    raw = np.stack([np.asarray(scores[m], np.float64) for m in methods], axis=1)
    means, stds = raw.mean(axis=0), raw.std(axis=0) + 1e-9
    z = torch.from_numpy((raw - means) / stds)
    y = torch.from_numpy(np.asarray(labels, np.float64))
    w = torch.zeros(len(methods) + 1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        logits = z @ w[:-1] + w[-1]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        loss = loss + l2 * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        accuracy = float((((z @ w[:-1] + w[-1]) > 0).double() == y).double().mean())
    config = FusionConfig(
        methods=methods,
        means=means.tolist(),
        stds=stds.tolist(),
        weights=w[:-1].detach().tolist(),
        bias=float(w[-1].detach()),
    )
    return config, {"n_val": len(labels), "val_acc": accuracy}
