"""Does the score pick better seeds? Selection outcomes and correlations from a sweep table.

A sweep table has one row per (prompt, seed) with ToyBench columns and score columns
(``bansa``, ``layer_XX``); see ``benchmarks/toy_model_quality.py``. Prompts are grouped by
``prompt_index`` where the table has it (one group per prompt draw, even if two draws
happen to have the same text), else by ``prompt``.

Study helper for: Notebooks 00 and 09, ``benchmarks/toy_model_quality.py``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

STRATEGIES = ("random", "ANSE (min score)", "max score", "oracle")


def selection_outcomes(table: pd.DataFrame, score: str = "bansa", m: int = 10,
                       targets=("semantic", "quality")) -> pd.DataFrame:
    """For every prompt, the video each strategy picks among its first ``m`` seeds.

    random: what a user without ANSE gets on average, the expected value of a uniformly
    random pick among the ``m`` seeds, i.e. their mean (seed ``-1``; exact, and free of the
    luck of any one seed, which would be shared by every prompt); ANSE: the lowest
    ``score``; max score: the highest (the paper's sanity check); oracle: the best
    ``targets[0]`` (ties broken by ``targets[1]``), an upper bound no method can beat.
    Returns one row per (prompt, strategy) with the picked seed and its targets.
    """
    if score not in table.columns:
        raise ValueError(f"score column {score!r} not in the table; columns: {', '.join(table.columns)}")
    rows = []
    for prompt, group in table.groupby(_prompt_key(table), sort=False):
        g = group.sort_values("seed").head(m)
        if len(g) < m:
            raise ValueError(f"prompt {prompt!r} has {len(g)} seeds, fewer than m={m}")
        rows.append({"prompt": prompt, "strategy": "random", "seed": -1, **{t: g[t].mean() for t in targets}})
        picks = {
            "ANSE (min score)": g[score].idxmin(),
            "max score": g[score].idxmax(),
            "oracle": g.sort_values(list(targets), ascending=False).index[0],
        }
        for strategy, idx in picks.items():
            rows.append({"prompt": prompt, "strategy": strategy, "seed": g.at[idx, "seed"],
                         **{t: g.at[idx, t] for t in targets}})
    return pd.DataFrame(rows)


def bootstrap_mean(values, n: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and a percentile bootstrap confidence interval: ``(mean, low, high)``."""
    v = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n, len(v)))].mean(1)
    a = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def outcome_summary(outcomes: pd.DataFrame, targets=("semantic", "quality")) -> pd.DataFrame:
    """Mean of each target per strategy with 95 % bootstrap intervals, and the paired
    difference ANSE - random (same prompts) with its interval."""
    rows = []
    for strategy in STRATEGIES:
        sub = outcomes[outcomes.strategy == strategy]
        row = {"strategy": strategy}
        for t in targets:
            row[t], row[f"{t} low"], row[f"{t} high"] = bootstrap_mean(sub[t])
        rows.append(row)
    summary = pd.DataFrame(rows).set_index("strategy")
    paired = differences_from_random(outcomes, targets).set_index(["strategy", "target"])
    for t in targets:
        summary.loc["ANSE - random (paired)", [t, f"{t} low", f"{t} high"]] = \
            paired.loc[("ANSE (min score)", t), ["difference", "low", "high"]].to_numpy()
    return summary


def differences_from_random(outcomes: pd.DataFrame, targets=("semantic", "quality")) -> pd.DataFrame:
    """Every strategy minus random on the same prompts, with 95 % bootstrap intervals over prompts.

    One row per (strategy, target): ``difference``, ``low``, ``high``, ``prompts``. This is
    the comparison to plot (a paired difference and its interval), rather than each
    strategy's mean as a bar from zero.
    """
    rows = []
    for t in targets:
        pivot = outcomes.pivot(index="prompt", columns="strategy", values=t)
        for strategy in STRATEGIES[1:]:
            mean, lo, hi = bootstrap_mean(pivot[strategy] - pivot["random"])
            rows.append({"strategy": strategy, "target": t, "difference": mean, "low": lo, "high": hi,
                         "prompts": len(pivot)})
    return pd.DataFrame(rows)


def paired_difference(table: pd.DataFrame, baseline: pd.DataFrame, targets=("semantic", "quality"),
                      on=("prompt", "seed")) -> pd.DataFrame:
    """``table`` minus ``baseline`` on the rows they share (same prompt and seed: same noise).

    One row per target: both means over the shared rows, and the mean of the per-prompt
    differences with its 95 % bootstrap interval over prompts. Rows where a target is
    undefined (NaN, e.g. ToyBench's size when the prompt names none) are left out of that
    target, and so are prompts left with no rows; ``prompts`` counts the prompts used (a
    target defined nowhere gives NaN). The difference averages prompts equally; the two
    means average videos.
    """
    paired = table.merge(baseline, on=list(on), suffixes=("", " baseline"))
    if not len(paired):
        raise ValueError(f"the two tables share no rows on {list(on)}")
    rows = []
    for t in targets:
        defined = paired.dropna(subset=[t, f"{t} baseline"])
        per_prompt = (defined[t] - defined[f"{t} baseline"]).groupby(defined[on[0]]).mean()
        mean, lo, hi = bootstrap_mean(per_prompt) if len(per_prompt) else (np.nan, np.nan, np.nan)
        rows.append({"target": t, "mean": defined[t].mean(), "baseline mean": defined[f"{t} baseline"].mean(),
                     "difference": mean, "low": lo, "high": hi, "prompts": len(per_prompt), "videos": len(defined)})
    return pd.DataFrame(rows).set_index("target")


def within_prompt_correlation(table: pd.DataFrame, score: str, target: str) -> pd.Series:
    """Spearman correlation between ``score`` and ``target`` across the seeds of each prompt.

    NaN where either is constant over a prompt's seeds. (The paper reports Pearson r over
    its whole set; within a prompt is what matters for choosing a seed.)
    """
    def corr(g):
        if g[score].nunique() < 2 or g[target].nunique() < 2:
            return np.nan
        return spearmanr(g[score], g[target])[0]

    return table.groupby(_prompt_key(table)).apply(corr, include_groups=False)


def null_correlation_band(table: pd.DataFrame, score: str, target: str, shuffles: int = 200, seed: int = 0,
                          level: float = 0.95) -> tuple[float, float, np.ndarray]:
    """What :func:`within_prompt_correlation` gives when the score carries no information.

    The score is shuffled among each prompt's seeds ``shuffles`` times (the ToyBench values,
    their ties and the number of seeds stay as they are). Returns the central ``level``
    band of the per-prompt correlations under that null, ``(low, high)``, and all of
    them (for a reference histogram).
    """
    rng = np.random.default_rng(seed)
    null = []
    for _, g in table.groupby(_prompt_key(table)):
        if g[score].nunique() < 2 or g[target].nunique() < 2:
            continue
        y = g[target].to_numpy()
        x = g[score].to_numpy()
        null.extend(spearmanr(rng.permutation(x), y)[0] for _ in range(shuffles))
    null = np.asarray(null)
    if not len(null):  # no prompt where both vary
        return float("nan"), float("nan"), null
    a = (1 - level) / 2
    return float(np.quantile(null, a)), float(np.quantile(null, 1 - a)), null


def _prompt_key(table: pd.DataFrame) -> str:
    return "prompt_index" if "prompt_index" in table.columns else "prompt"
