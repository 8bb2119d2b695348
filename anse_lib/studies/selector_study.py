"""Many selectors on one sweep table: picks, paired gains over random, cost, correlation and power.

The table is ``data/sweeps/score_quality_study.csv`` (``benchmarks/score_quality_study.py``):
one row per (prompt, seed) with the final video's ToyBench (``final_*``) and every score a
selector could read before or instead of generating. A :class:`Selector` names a score
column, whether it keeps the lowest or the highest value, and its cost in transformer
passes per candidate. Picks are averaged over random ``m``-subsets of each prompt's seeds,
so a prompt's outcome does not hang on which ``m`` seeds happened to come first; random is
the exact expectation (the prompt's mean over all its seeds).

Study helper for: Notebook 05.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .analysis import bootstrap_mean

#: transformer passes of one generation at the toy pipeline's defaults (25 steps, CFG)
GENERATION_PASSES = 50


@dataclass(frozen=True)
class Selector:
    """A rule that keeps one of ``m`` candidates.

    Args:
        name: the label in tables and plots.
        score: a column of the table, or ``"random"``.
        keep: ``"min"`` or ``"max"``: which end of the score wins.
        passes: transformer passes per candidate to compute the score (a generation is 50);
            ``generates``: whether that work already produces the final video (so the
            winner need not be generated again).
        family: a group for plots ("attention", "baseline", "control", ...).
        tiebreak: a second column (kept at its highest) for scores with ties (ToyBench).
    """
    name: str
    score: str
    keep: str = "min"
    passes: float = 1.0
    generates: bool = False
    family: str = "attention"
    tiebreak: str | None = None

    def generations(self, m: int) -> float:
        """Cost of choosing among ``m`` candidates and producing the winner's video, in generations."""
        return m * self.passes / GENERATION_PASSES + (0 if self.generates else 1)


def layer_mean(table: pd.DataFrame, prefix: str, depth: int) -> pd.Series:
    """Mean of ``{prefix}00 .. {prefix}{depth-1:02d}``: a score over layers 1..depth, as the paper averages them."""
    cols = [f"{prefix}{i:02d}" for i in range(depth)]
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the table (prefix {prefix!r}, depth {depth})")
    return table[cols].mean(axis=1)


def add_depth_scores(table: pd.DataFrame, depth: int) -> pd.DataFrame:
    """The table with layer-averaged scores over layers 1..``depth`` (``*_d``) for every per-layer score family."""
    out = table.copy()
    prefixes = sorted({c[:-2] for c in table.columns if c[-2:].isdigit() and c[-3] == "_" and
                       not c.startswith(("lookahead", "final"))})
    for p in prefixes:
        if all(f"{p}{i:02d}" in table.columns for i in range(depth)):
            out[f"{p}d"] = layer_mean(table, p, depth)
    return out


def picks(table: pd.DataFrame, selector: Selector, m: int, target: str, subsets: int = 200,
          seed: int = 0) -> pd.Series:
    """Per prompt, the expected ``target`` of the candidate ``selector`` keeps among ``m`` seeds.

    The expectation is over ``subsets`` random ``m``-subsets of the prompt's seeds (the same
    subsets for every selector: pass the same ``seed``); ``random`` is the prompt's mean.
    Ties in the score are broken by ``tiebreak`` (highest), then at random among equals.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for prompt, g in table.groupby("prompt_index", sort=True):
        y = g[target].to_numpy(dtype=float)
        if selector.score == "random":
            out[prompt] = y.mean()
            continue
        n = len(g)
        if m > n:
            raise ValueError(f"m={m} is more than the {n} seeds of prompt {prompt}")
        s = g[selector.score].to_numpy(dtype=float) * (1 if selector.keep == "min" else -1)
        tb = -g[selector.tiebreak].to_numpy(dtype=float) if selector.tiebreak else np.zeros(n)
        jitter = rng.random((subsets, n))
        idx = np.argsort(rng.random((subsets, n)), axis=1)[:, :m]
        # lexicographic min over (score, -tiebreak, jitter) within each subset
        key = np.stack([s[idx], tb[idx], np.take_along_axis(jitter, idx, 1)], -1)
        order = np.lexsort((key[..., 2], key[..., 1], key[..., 0]), axis=1)[:, 0]
        out[prompt] = y[idx[np.arange(subsets), order]].mean()
    return pd.Series(out, name=selector.name)


def gains(table: pd.DataFrame, selectors: list[Selector], m: int, targets=("final_semantic", "final_quality"),
          subsets: int = 200) -> pd.DataFrame:
    """Every selector minus random on the same prompts, with 95 % bootstrap intervals over prompts.

    One row per (selector, target): ``gain``, ``low``, ``high``, the share of the oracle's
    gain it reaches (``of_oracle``), and the cost in generations for ``m`` candidates.
    """
    rows = []
    for t in targets:
        base = picks(table, Selector("random", "random"), m, t)
        oracle = picks(table, Selector("oracle", t, "max", tiebreak=_other(t, targets)), m, t, subsets) - base
        for sel in selectors:
            diff = picks(table, sel, m, t, subsets) - base
            mean, lo, hi = bootstrap_mean(diff)
            rows.append({"selector": sel.name, "family": sel.family, "target": t, "gain": mean, "low": lo, "high": hi,
                         "of_oracle": mean / oracle.mean() if oracle.mean() else np.nan,
                         "generations": sel.generations(m), "prompts": len(diff)})
    return pd.DataFrame(rows)


def best_of_m_curve(table: pd.DataFrame, selectors: list[Selector], ms, target: str,
                    subsets: int = 200) -> pd.DataFrame:
    """Mean over prompts of each selector's pick, for ``m`` candidates in ``ms`` (random is flat)."""
    rows = []
    for m in ms:
        for sel in selectors:
            rows.append({"m": m, "selector": sel.name, target: picks(table, sel, m, target, subsets).mean()})
    return pd.DataFrame(rows)


def variance_split(table: pd.DataFrame, column: str) -> dict:
    """How much of a column's variance lies between prompts and how much between a prompt's seeds.

    Returns ``between`` (variance of prompt means), ``within`` (mean within-prompt variance)
    and ``share_between`` = between / (between + within).
    """
    g = table.groupby("prompt_index")[column]
    between, within = float(g.mean().var(ddof=0)), float(g.var(ddof=0).mean())
    return {"column": column, "between": between, "within": within, "share_between": between / (between + within)}


def pooled_and_within(table: pd.DataFrame, score: str, target: str) -> dict:
    """Pearson r over all rows (the paper's way), over prompt means, and within prompts (both centred)."""
    x, y = table[score], table[target]
    gx = table.groupby("prompt_index")[score].transform("mean")
    gy = table.groupby("prompt_index")[target].transform("mean")
    means = table.groupby("prompt_index")[[score, target]].mean()
    return {"score": score, "target": target, "pooled r": float(np.corrcoef(x, y)[0, 1]),
            "r of prompt means": float(np.corrcoef(means[score], means[target])[0, 1]),
            "within-prompt r": float(np.corrcoef(x - gx, y - gy)[0, 1])}


def detectable_gain(differences, alpha_z: float = 1.96, power_z: float = 0.8416) -> float:
    """The smallest true mean gain a two-sided test at 5 % would detect with 80 % power over these prompts.

    ``(z_alpha + z_power) * sd / sqrt(n)`` for the per-prompt paired differences.
    """
    d = np.asarray(differences, dtype=float)
    return float((alpha_z + power_z) * d.std(ddof=1) / np.sqrt(len(d)))


def prompts_needed(sd: float, gain: float, alpha_z: float = 1.96, power_z: float = 0.8416) -> int:
    """Prompts needed to detect a mean paired gain ``gain`` with 80 % power at 5 % (per-prompt SD ``sd``)."""
    return int(np.ceil(((alpha_z + power_z) * sd / gain) ** 2))


def _other(target: str, targets) -> str | None:
    rest = [t for t in targets if t != target]
    return rest[0] if rest else None
