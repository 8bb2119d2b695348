"""Synthetic attention: maps and tiny attention layers whose shape we control.

Used by the first notebooks and tests, before any video model is involved.

Study helper for: Notebooks 01-03.
"""
from __future__ import annotations

import torch
from torch import nn


def attention_logits(nq: int, nk: int, heads: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard-normal logits ``(heads, nq, nk)``."""
    return torch.randn(heads, nq, nk, generator=generator)


def attention_map(nq: int, nk: int, temperature: float = 1.0, heads: int = 1,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Softmax of Gaussian logits / ``temperature``: ``(heads, nq, nk)``.

    Low temperature gives peaked rows (entropy near 0), high gives diffuse ones (near log nk).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return torch.softmax(attention_logits(nq, nk, heads, generator) / temperature, dim=-1)


class TinyAttention(nn.Module):
    """One attention head on token features, with dropout on its input features.

    ``forward(x)`` -> attention probabilities ``(B, N, N)`` for tokens ``x`` ``(B, N, dim)``.
    In train mode the dropout makes each call a different stochastic sample (MC dropout).
    """

    def __init__(self, dim: int = 16, head_dim: int = 8, dropout: float = 0.2):
        super().__init__()
        self.to_q = nn.Linear(dim, head_dim, bias=False)
        self.to_k = nn.Linear(dim, head_dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x)
        q, k = self.to_q(x), self.to_k(x)
        return torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)


def tiny_attention(seed: int = 0, **kwargs) -> TinyAttention:
    torch.manual_seed(seed)
    return TinyAttention(**kwargs)


def token_features(batch: int, tokens: int, dim: int = 16, scale: float = 1.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Random token features ``(batch, tokens, dim)``; larger ``scale`` -> sharper attention."""
    return scale * torch.randn(batch, tokens, dim, generator=generator)
