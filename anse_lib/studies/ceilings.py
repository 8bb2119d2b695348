"""Learned ceilings: how well any reader of a set of features could pick seeds, trained on other prompts.

The tables are ``benchmarks/first_step_study.py``'s: one row per (prompt, seed) with features
(first-step attention per layer and head ``h_*``, the pooled starting noise ``noise_*``, the
pooled predicted clean video after ``s`` steps ``x0s{s}_*``) and the final video's ToyBench
(``final_*``). A ridge regression is fitted on the *training-split* table only, to the target
standardised within prompt (what a selector needs: which seed of this prompt is better, not
which prompt is easier), its penalty chosen by cross-validation with folds grouped by prompt;
on the held-out table it keeps, per prompt, the seed it predicts best. :func:`endpoint` compares
any pick with random (the prompt's mean over its seeds) by paired differences over prompts with
a bootstrap interval and p-value; :func:`holm` corrects a family of them.

Study helper for: Notebook 06.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .selector_study import detectable_gain

#: ridge penalties tried (on standardised features)
ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))


def feature_columns(table: pd.DataFrame, kind: str) -> list[str]:
    """The columns of one feature set: ``"attention"`` (``h_*``: per layer and head BANSA, its
    kept-mass and spread terms, entropy, collision), ``"noise"``, ``"x0sS"`` (after S steps) or
    ``"bansa_layers"`` (``layer_*``)."""
    prefix = {"attention": "h_", "noise": "noise_", "bansa_layers": "layer_"}.get(kind, f"{kind}_")
    cols = [c for c in table.columns if c.startswith(prefix)]
    if not cols:
        raise ValueError(f"no {kind!r} feature columns (prefix {prefix!r}) in the table")
    return cols


def with_spread_terms(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``h_spread_term_XX_H`` = ``h_kept_mass_term_XX_H`` - ``h_bansa_XX_H`` (BANSA's other term)."""
    tails = [c[len("h_kept_mass_term_"):] for c in table.columns if c.startswith("h_kept_mass_term_")]
    spread = {f"h_spread_term_{t}": table[f"h_kept_mass_term_{t}"] - table[f"h_bansa_{t}"] for t in tails}
    return pd.concat([table, pd.DataFrame(spread, index=table.index)], axis=1)


def within_prompt_z(table: pd.DataFrame, target: str, key: str = "prompt_index") -> pd.Series:
    """``target`` standardised within each prompt (0 where a prompt's seeds all score the same)."""
    g = table.groupby(key)[target]
    sd = g.transform("std").replace(0, np.nan)
    return ((table[target] - g.transform("mean")) / sd).fillna(0.0)


def grouped_folds(groups, folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Row indices of ``folds`` test folds; every group (prompt) falls in exactly one."""
    groups = np.asarray(groups)
    unique = np.random.default_rng(seed).permutation(np.unique(groups))
    return [np.flatnonzero(np.isin(groups, part)) for part in np.array_split(unique, folds)]


@dataclass
class Ridge:
    """A fitted ridge regression on standardised features."""
    columns: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    alpha: float
    cv: pd.DataFrame

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        return ((table[self.columns].to_numpy(float) - self.mean) / self.scale) @ self.coef + self.intercept


def _solve(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    xm, ym = x.mean(0), y.mean()
    xc = x - xm
    coef = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - ym))
    return coef, float(ym - xm @ coef)


def fit_ridge(train: pd.DataFrame, columns: list[str], target: str, alphas=ALPHAS, folds: int = 5,
              key: str = "prompt_index") -> Ridge:
    """Ridge from ``columns`` to ``target`` standardised within prompt, its penalty by grouped CV.

    Features are standardised with the training table's mean and SD (constant columns dropped
    from the scale). The CV criterion is the mean within-prompt Pearson r of prediction and
    target on the held-out folds (what a selector needs); the best penalty is refitted on all
    training rows.
    """
    x_raw = train[columns].to_numpy(float)
    mean, scale = x_raw.mean(0), x_raw.std(0)
    scale[scale == 0] = 1.0
    x = (x_raw - mean) / scale
    y = within_prompt_z(train, target, key).to_numpy()
    groups = train[key].to_numpy()
    rows = []
    for alpha in alphas:
        rs = []
        for test in grouped_folds(groups, folds):
            fit = np.setdiff1d(np.arange(len(y)), test)
            coef, b = _solve(x[fit], y[fit], alpha)
            pred = pd.Series(x[test] @ coef + b)
            rs.append(_mean_within_r(pred.to_numpy(), y[test], groups[test]))
        rows.append({"alpha": alpha, "cv_within_prompt_r": float(np.nanmean(rs))})
    cv = pd.DataFrame(rows)
    alpha = float(cv.alpha[cv.cv_within_prompt_r.idxmax()])
    coef, b = _solve(x, y, alpha)
    return Ridge(list(columns), mean, scale, coef, b, alpha, cv)


def _mean_within_r(pred: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    rs = []
    for g in np.unique(groups):
        m = groups == g
        if np.std(pred[m]) > 0 and np.std(y[m]) > 0:
            rs.append(np.corrcoef(pred[m], y[m])[0, 1])
    return float(np.mean(rs)) if rs else np.nan


def pick_gain(table: pd.DataFrame, score, target: str, keep: str = "max", key: str = "prompt_index") -> pd.Series:
    """Per prompt: ``target`` of the seed with the best ``score`` (a column or an array; ``keep``
    ``"max"`` or ``"min"``; ties go to the first seed) minus the prompt's mean ``target``."""
    s = table[score].to_numpy(float) if isinstance(score, str) else np.asarray(score, float)
    frame = pd.DataFrame({key: table[key].to_numpy(), "s": s if keep == "max" else -s,
                          "y": table[target].to_numpy(float)})
    best = frame.loc[frame.groupby(key).s.idxmax()].set_index(key).y
    return best - frame.groupby(key).y.mean()


def bootstrap_p(values, n: int = 20000, seed: int = 0) -> float:
    """Two-sided bootstrap p-value for a zero mean: twice the smaller tail of the bootstrap
    distribution of the mean centred at zero (at least ``1 / n``)."""
    v = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    means = (v - v.mean())[rng.integers(0, len(v), (n, len(v)))].mean(1)
    tail = np.mean(np.abs(means) >= abs(v.mean()))
    return float(max(tail, 1 / n))


def endpoint(differences: pd.Series, name: str, n: int = 2000, seed: int = 0) -> dict:
    """Mean paired difference over prompts, its 95 % bootstrap interval, p-value and detectable gain."""
    v = differences.to_numpy(float)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n, len(v)))].mean(1)
    return {"endpoint": name, "gain": float(v.mean()), "low": float(np.quantile(means, 0.025)),
            "high": float(np.quantile(means, 0.975)), "p": bootstrap_p(v, seed=seed),
            "detectable": detectable_gain(v), "prompts": len(v)}


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (the family-wise error rate), in the input's order."""
    p = np.asarray(pvalues, float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (len(p) - rank) * p[i])
        adjusted[i] = min(1.0, running)
    return adjusted


def anse_score(table: pd.DataFrame, depth: int) -> pd.Series:
    """ANSE's score: the mean first-step BANSA of layers 1..``depth`` (``layer_00`` ...), lowest wins."""
    return table[[f"layer_{i:02d}" for i in range(depth)]].mean(axis=1)


def median_pick_gain(table: pd.DataFrame, score, target: str, key: str = "prompt_index") -> pd.Series:
    """Per prompt: ``target`` of the seed whose ``score`` is closest to the prompt's median score
    (ties: the lower score), minus the prompt's mean ``target``."""
    s = pd.Series(np.asarray(score, float), index=table.index)
    out = {}
    for prompt, g in table.groupby(key, sort=True):
        v = s.loc[g.index]
        dist = (v - v.median()).abs()
        best = pd.DataFrame({"d": dist, "v": v}).sort_values(["d", "v"], kind="stable").index[0]
        out[prompt] = g.at[best, target] - g[target].mean()
    return pd.Series(out)


def by_rank(table: pd.DataFrame, score, target: str, key: str = "prompt_index") -> pd.Series:
    """Mean ``target`` (centred within prompt) by the seed's within-prompt rank of ``score`` (1: lowest)."""
    s = pd.Series(np.asarray(score, float), index=table.index)
    rank = s.groupby(table[key]).rank(method="first").astype(int)
    centred = table[target] - table.groupby(key)[target].transform("mean")
    return centred.groupby(rank).mean().rename_axis("rank")


def selector_differences(train: pd.DataFrame | None, test: pd.DataFrame, depth: int, target: str,
                         feature_sets: dict[str, list[str]]) -> tuple[dict[str, pd.Series], dict[str, Ridge]]:
    """Per prompt of ``test``, each selector's pick minus random on ``target``: ANSE (layers 1..``depth``),
    a ridge per feature set (fitted on ``train`` only), and the oracle. Returns the differences and the fits."""
    diffs = {"ANSE": pick_gain(test, anse_score(test, depth), target, keep="min")}
    fits = {}
    for name, cols in feature_sets.items():
        fits[name] = fit_ridge(train, cols, target)
        diffs[name] = pick_gain(test, fits[name].predict(test), target)
    diffs["oracle"] = pick_gain(test, target, target)
    return diffs, fits
