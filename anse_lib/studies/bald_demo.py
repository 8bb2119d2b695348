"""BALD (Houlsby et al. 2011) on a tiny classifier: the idea BANSA borrows.

A classifier's prediction for one input is a categorical distribution over classes,
exactly like one attention row over keys; K MC-dropout predictions are K samples, and
BALD is :func:`anse_lib.bansa.bansa_rows_from_samples` applied to them (one "row" per
input). Nothing here re-implements the formula.

Study helper for: Notebook 02.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..bansa import bansa_rows_from_samples, row_entropy


def two_blobs(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two overlapping Gaussian blobs in 2-D: points ``(n, 2)``, labels ``(n,)``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 2)) * 0.8 + np.where(y[:, None] == 1, [1.2, 0.6], [-1.2, -0.6])
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


class DropoutMLP(nn.Module):
    def __init__(self, hidden: int = 64, dropout: float = 0.3, classes: int = 2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, classes))

    def forward(self, x):
        return self.net(x)


def train_classifier(x, y, steps: int = 400, seed: int = 0) -> DropoutMLP:
    torch.manual_seed(seed)
    model = DropoutMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@torch.no_grad()
def mc_dropout_predictions(model: nn.Module, x: torch.Tensor, k: int = 20, seed: int = 0) -> torch.Tensor:
    """K stochastic class distributions per input: ``(K, n, classes)`` (dropout on)."""
    torch.manual_seed(seed)
    model.train()
    out = torch.stack([torch.softmax(model(x), -1) for _ in range(k)])
    model.eval()
    return out


def bald(samples: torch.Tensor) -> torch.Tensor:
    """BALD per input from MC predictions ``(K, n, classes)`` -> ``(n,)``, nats."""
    return bansa_rows_from_samples(samples)


def predictive_entropy(samples: torch.Tensor) -> torch.Tensor:
    """Entropy of the mean prediction ``(K, n, classes)`` -> ``(n,)``: total uncertainty."""
    return row_entropy(samples.mean(0))


def grid(lim: float = 3.5, n: int = 80) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Points of an ``n x n`` grid over ``[-lim, lim]^2``: ``(n*n, 2)`` plus the mesh."""
    xs = np.linspace(-lim, lim, n)
    gx, gy = np.meshgrid(xs, xs)
    return torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32), gx, gy
