"""Studies of the Bernoulli-mask approximation: K, drop_prob, Monte-Carlo spread, ranking stability.

Each function returns a tidy ``pandas.DataFrame`` (one row per measurement) for plotting.
All scores come from :mod:`anse_lib.bansa`; nothing here re-implements them.

Study helper for: Notebook 03.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..bansa import EMPTY_ROW_MASS, attention_entropy, bansa_bernoulli, bansa_chunked, bansa_mc_dropout
from .costs import measure


def map_scores(maps: torch.Tensor, k: int, drop_prob: float, seed: int) -> torch.Tensor:
    """BANSA of maps ``(M, H, Nq, Nk)`` -> ``(M,)`` (mean over heads and rows), all with one mask seed."""
    return bansa_chunked(probs=maps, k=k, drop_prob=drop_prob, seed=seed).score.mean(-1)


@torch.no_grad()
def mc_dropout_vs_bernoulli(layer: torch.nn.Module, inputs: list[torch.Tensor], k: int = 10,
                            drop_prob: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """For each input: BANSA from K dropout passes of ``layer`` vs from one pass + K masks.

    ``layer(x)`` returns attention probabilities ``(B, Nq, Nk)``; dropout is active in
    train mode. Columns: ``input``, ``mc_dropout``, ``bernoulli``, ``entropy``.
    """
    rows = []
    for i, x in enumerate(inputs):
        layer.train()
        torch.manual_seed(seed + i)
        mc = bansa_mc_dropout(lambda _: layer(x), k=k).mean().item()
        layer.eval()
        attn = layer(x)
        bern = bansa_bernoulli(attn, k=k, drop_prob=drop_prob, seed=seed).score.mean().item()
        rows.append({"input": i, "mc_dropout": mc, "bernoulli": bern, "entropy": attention_entropy(attn).mean().item()})
    return pd.DataFrame(rows)


def score_vs_k(attn: torch.Tensor, ks=(2, 3, 5, 10, 20, 50), seeds=range(20), drop_prob: float = 0.2) -> pd.DataFrame:
    """BANSA of one map for several K and mask seeds. Columns: ``k``, ``seed``, ``score``."""
    return pd.DataFrame(
        [{"k": k, "seed": s, "score": map_scores(attn[None], k, drop_prob, s).item()} for k in ks for s in seeds]
    )


def score_vs_p(attn: torch.Tensor, ps=np.round(np.arange(0.05, 1.0, 0.05), 2), k: int = 10,
               seeds=range(5)) -> pd.DataFrame:
    """BANSA under both readings of the paper's p.

    ``reading="drop"``: p is the drop probability (``drop_prob = p``, our choice);
    ``reading="keep"``: p is the keep probability (``drop_prob = 1 - p``).
    Columns: ``p``, ``reading``, ``seed``, ``score``.
    """
    out = []
    for p in ps:
        for reading, drop in (("drop", p), ("keep", 1 - p)):
            for s in seeds:
                score = map_scores(attn[None], k, float(drop), s).item()
                out.append({"p": float(p), "reading": reading, "seed": s, "score": score})
    return pd.DataFrame(out)


def argmin_stability(candidate_maps: torch.Tensor, ks=(2, 5, 10, 20, 50), seeds=range(20), drop_prob: float = 0.2,
                     common_random_numbers: bool = True) -> pd.DataFrame:
    """How often the lowest-BANSA candidate is the same when only the mask RNG changes.

    ``candidate_maps``: ``(M, H, Nq, Nk)``, one attention map per candidate noise. For each
    K and mask seed the argmin candidate is found; with ``common_random_numbers`` every
    candidate uses the same mask seed, otherwise each draws its own. ``agreement`` is the
    share of seeds that pick the most frequent winner. Columns: ``k``, ``agreement``,
    ``winner``, ``crn``.
    """
    m = candidate_maps.shape[0]
    out = []
    for k in ks:
        winners = []
        for s in seeds:
            if common_random_numbers:
                scores = map_scores(candidate_maps, k, drop_prob, s)
            else:
                scores = torch.cat([map_scores(candidate_maps[c : c + 1], k, drop_prob, s * 1000 + c)
                                    for c in range(m)])
            winners.append(int(scores.argmin()))
        values, counts = np.unique(winners, return_counts=True)
        out.append({"k": k, "agreement": counts.max() / len(winners), "winner": int(values[counts.argmax()]),
                    "crn": common_random_numbers})
    return pd.DataFrame(out)


def cost_sweep(token_counts=(256, 512, 1024, 1536), heads: int = 2, head_dim: int = 32, k: int = 10,
               block_rows: int = 256, methods=("naive", "chunked (PyTorch)", "chunked")) -> pd.DataFrame:
    """Measured time and peak extra memory of naive vs chunked BANSA of one attention call
    (``chunked``: the default scorer, compiled where gcc is there; see :func:`anse_lib.studies.costs.measure`).

    Columns: ``method``, ``tokens``, ``seconds``, ``peak_extra_mib``.
    """
    return pd.DataFrame(
        [{"method": meth, "tokens": n, **vars(measure(meth, heads=heads, tokens=n, head_dim=head_dim, k=k,
                                                        block_rows=block_rows))}
         for n in token_counts for meth in methods]
    )


def many_keys_approximation(attn: torch.Tensor, drop_prob: float = 0.2) -> torch.Tensor:
    """Masked BANSA of each row for K -> infinity when no key dominates the row.

    ``attn``: ``(..., Nq, Nk)`` -> ``(..., Nq)`` in nats. The kept mass ``Z = sum_j m_j a_j``
    has mean ``1 - p`` and variance ``p (1 - p) sum_j a_j^2``; a second-order expansion of
    ``E[-log Z]`` gives ``-log(1 - p) + p * sum_j a_j^2 / (2 (1 - p))`` (derived in
    notebook 03). It tends to the floor ``-log(1 - p)`` for diffuse rows and underestimates
    rows with a dominant key, where the expansion fails.
    """
    collision = (attn.double() ** 2).sum(-1)
    return -torch.log1p(torch.tensor(-drop_prob, dtype=torch.float64)) + drop_prob * collision / (2 * (1 - drop_prob))


def masked_bansa_limit(attn: torch.Tensor, drop_prob: float = 0.2, samples: int = 4000, seed: int = 0) -> torch.Tensor:
    """Masked BANSA of each row for K -> infinity, ``E[-log Z] - KL(qbar || a)``, by Monte Carlo.

    ``attn``: ``(Nq, Nk)`` -> ``(Nq,)`` in nats. ``Z`` is the kept mass of one mask and
    ``qbar_j = a_j E[m_j / Z]`` the mean sample. BANSA from K masks is exactly this
    expression with both expectations taken over the K masks (the one-log form of
    :func:`anse_lib.bansa.bansa_chunked`), so the limit is that score at ``K = samples``,
    computed in float64; its bias shrinks as 1/K and, with ``samples`` in the thousands, it
    and the Monte-Carlo error are far below the differences plotted in notebook 03.
    """
    return bansa_chunked(probs=attn[None, None], k=samples, drop_prob=drop_prob, seed=seed, backend="torch",
                         accumulate_dtype=torch.float64).rows[0, 0]


def score_vs_temperature(temperatures=np.round(np.geomspace(0.02, 10, 18), 3), size: int = 48, k: int = 10,
                         drop_prob: float = 0.2, seeds=range(3), map_seed: int = 0) -> pd.DataFrame:
    """Bernoulli BANSA as a function of row sharpness (synthetic maps at a logit temperature).

    Columns: ``temperature``, ``entropy`` (mean row entropy, nats), ``seed``, ``score``
    (K masks), ``limit`` (K -> infinity, :func:`masked_bansa_limit`), ``approximation``
    (:func:`many_keys_approximation`), ``one_hot_rows`` (share of rows whose mass outside the
    top key is at most ``EMPTY_ROW_MASS``: masks cannot change them, so they score 0); the
    last four are means over rows.
    """
    from .synthetic import attention_map

    out = []
    for t in temperatures:
        attn = attention_map(size, size, temperature=float(t), heads=1,
                             generator=torch.Generator().manual_seed(map_seed))
        rest = attn[0].sum(-1) - attn[0].max(-1).values
        per_map = {"temperature": float(t), "entropy": attention_entropy(attn).item(),
                   "limit": masked_bansa_limit(attn[0], drop_prob).mean().item(),
                   "approximation": many_keys_approximation(attn[0], drop_prob).mean().item(),
                   "one_hot_rows": (rest <= EMPTY_ROW_MASS).double().mean().item()}
        for s in seeds:
            out.append({**per_map, "seed": s, "score": map_scores(attn[None], k, drop_prob, s).item()})
    return pd.DataFrame(out)
