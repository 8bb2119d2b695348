"""Row statistics next to BANSA: why one attention row scores high and another low.

For an attention row ``a`` over ``Nk`` keys and K Bernoulli keep-masks ``m_k`` (the
scorer's own, :func:`~anse_lib.bansa.keep_masks`), with kept mass ``Z_k = sum_j m_kj a_j``
and mean sample ``qbar = a w``, ``w_j = (1/K) sum_k m_kj / Z_k``, BANSA splits exactly into

    BANSA = E_k[-log Z_k] - KL(qbar || a)

(:func:`~anse_lib.bansa._bansa_rows_block` computes the same two terms). The first term,
the *kept-mass term*, is large when a mask can drop most of a row's mass: a row with a few
strong keys. The second is the spread of the mean sample away from the row. Next to them:
the row's entropy ``H`` (nats), its effective number of keys ``exp(H)`` (``Nk`` for a
uniform row, 1 for a one-hot row) and its collision probability ``sum_j a_j^2`` (the
chance that two draws from the row pick the same key; ``1/Nk`` for a uniform row).
"""
from __future__ import annotations

import torch

from .bansa import EMPTY_ROW_MASS, check_drop_prob, check_k, check_probabilities, keep_masks, row_entropy

#: the statistics :func:`row_statistics` returns, in order
STATISTICS = ("bansa", "kept_mass_term", "spread_term", "entropy", "effective_keys", "collision")


def row_statistics(probs: torch.Tensor, k: int = 10, drop_prob: float = 0.2, seed: int = 0, salt: int = 0,
                   heads: torch.Tensor | None = None, rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-row BANSA and what it is made of, for attention rows ``(H, R, Nk)``.

    Args:
        probs: ``(H, R, Nk)`` attention probabilities of one batch entry (rows sum to 1),
            or ``(R, Nk)`` for one head.
        k, drop_prob, seed, salt: the masks, as in :func:`~anse_lib.bansa.bansa_chunked`
            (the probe uses the layer index as ``salt``).
        heads: ``(H,)`` the heads' indices in the model (default ``0..H-1``); masks depend on
            them, so give ``tensor([h])`` to match the probe's masks for head ``h`` alone.
        rows: ``(R,)`` the rows' query indices (default ``0..R-1``), for the same reason.

    Returns:
        ``{name: (H, R)}`` for each of :data:`STATISTICS` (``(R,)`` for 2-d input; float32,
        float64 for float64 input): ``bansa`` = ``kept_mass_term`` - ``spread_term`` (nats); ``entropy`` (nats);
        ``effective_keys`` = exp(entropy); ``collision`` = sum of squares. An empty sample
        (every kept key had zero mass) counts as the unmasked row, as in the scorer.

    Examples:
        >>> import torch
        >>> from anse_lib.rowstats import row_statistics
        >>> uniform = torch.full((1, 100), 0.01)
        >>> stats = row_statistics(uniform, k=10, drop_prob=0.2)
        >>> round(float(stats["effective_keys"][0]), 3), round(float(stats["collision"][0]), 6)
        (100.0, 0.01)
    """
    probs = check_probabilities(probs)
    check_k(k)
    check_drop_prob(drop_prob)
    single = probs.dim() == 2
    a = probs.unsqueeze(0) if single else probs
    a = a if a.dtype == torch.float64 else a.float()
    if a.dim() != 3:
        raise ValueError(f"probs must have shape (H, R, Nk) or (R, Nk), got {tuple(probs.shape)}")
    h, r, nk = a.shape
    heads = torch.arange(h) if heads is None else torch.as_tensor(heads, dtype=torch.int64)
    rows = torch.arange(r) if rows is None else torch.as_tensor(rows, dtype=torch.int64)
    if heads.shape != (h,) or rows.shape != (r,):
        raise ValueError(f"heads {tuple(heads.shape)} and rows {tuple(rows.shape)} must be ({h},) and ({r},)")
    m = keep_masks(k, heads, rows, nk, drop_prob, seed, salt).to(a.dtype).permute(1, 2, 0, 3)  # (H, R, K, Nk)
    z = torch.matmul(m, a.unsqueeze(-1)).squeeze(-1)  # (H, R, K) kept mass per mask
    empty = z <= EMPTY_ROW_MASS  # an empty sample is the unmasked row: mask all ones, Z = 1
    z = torch.where(empty, torch.ones_like(z), z)
    inv_z = torch.where(empty, torch.zeros_like(z), 1.0 / z)
    w = (torch.matmul(inv_z.unsqueeze(-2), m).squeeze(-2) + empty.sum(-1, keepdim=True)) / k  # (H, R, Nk)
    kept = (-torch.log(z)).mean(-1)
    spread = torch.special.xlogy(w, w).mul(a).sum(-1)  # KL(a w || a) = sum a w log w
    entropy = row_entropy(a)
    out = dict(bansa=(kept - spread).clamp_min(0.0), kept_mass_term=kept, spread_term=spread, entropy=entropy,
               effective_keys=entropy.exp(), collision=a.pow(2).sum(-1))
    return {name: (v[0] if single else v) for name, v in out.items()}
