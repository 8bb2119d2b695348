"""Selection outcomes, bootstrap intervals and paired differences on small hand-made tables."""
import numpy as np
import pandas as pd
import pytest

from anse_lib.studies.analysis import bootstrap_mean, outcome_summary, paired_difference, selection_outcomes


def table():
    # two prompts x 3 seeds; in "a" the lowest score is the best video, in "b" the worst
    return pd.DataFrame({
        "prompt": ["a"] * 3 + ["b"] * 3,
        "seed": [0, 1, 2] * 2,
        "bansa": [3.0, 1.0, 2.0, 2.0, 1.0, 3.0],
        "semantic": [0.2, 1.0, 0.6, 0.8, 0.0, 0.4],
        "quality": [0.5] * 6,
    })


def test_selection_outcomes_picks():
    out = selection_outcomes(table(), m=3).set_index(["prompt", "strategy"]).seed
    assert out["a"].to_dict() == {"random": -1, "ANSE (min score)": 1, "max score": 0, "oracle": 1}
    assert out["b"].to_dict() == {"random": -1, "ANSE (min score)": 1, "max score": 2, "oracle": 0}
    with pytest.raises(ValueError, match="fewer than m=4"):
        selection_outcomes(table(), m=4)
    with pytest.raises(ValueError, match="score column 'nope' not in the table"):
        selection_outcomes(table(), score="nope", m=3)


def test_outcome_summary_paired_row():
    summary = outcome_summary(selection_outcomes(table(), m=3))
    # random is the mean of a prompt's m seeds (a: 0.6, b: 0.4); ANSE - random: a: 1.0 - 0.6, b: 0.0 - 0.4
    assert summary.loc["random", "semantic"] == pytest.approx(0.5)
    assert summary.loc["ANSE - random (paired)", "semantic"] == pytest.approx(0.0)
    assert summary.loc["oracle", "semantic"] == pytest.approx(0.9)


def test_bootstrap_mean_brackets_the_mean_and_is_seeded():
    v = np.random.default_rng(0).normal(size=50)
    mean, lo, hi = bootstrap_mean(v)
    assert mean == pytest.approx(v.mean()) and lo < mean < hi
    assert bootstrap_mean(v) == (mean, lo, hi)
    assert bootstrap_mean([2.0, 2.0]) == (2.0, 2.0, 2.0)


def test_paired_difference_uses_shared_rows_and_averages_per_prompt():
    t = table()
    base = t.copy()
    base["semantic"] = base["semantic"] - np.array([0.1, 0.1, 0.1, 0.3, 0.3, 0.3])
    base = base[base.seed < 2]  # the baseline has fewer seeds: only shared rows count
    diff = paired_difference(t, base)
    assert diff.loc["semantic", "difference"] == pytest.approx(0.2)  # mean of per-prompt 0.1 and 0.3
    assert diff.loc["semantic", "videos"] == 4 and diff.loc["semantic", "prompts"] == 2
    assert diff.loc["quality", "difference"] == 0.0
    with pytest.raises(ValueError, match="share no rows"):
        paired_difference(t, base.assign(prompt="z"))


def test_paired_difference_leaves_out_undefined_rows_and_prompts():
    # ToyBench's size is NaN where the prompt names no size: such rows (and prompts) are left out
    t = table().assign(size=[1.0, 0.0, 1.0, np.nan, np.nan, np.nan])
    base = t.assign(size=[0.0, 0.0, 0.0, np.nan, np.nan, np.nan])
    diff = paired_difference(t, base, targets=["size", "semantic"])
    assert diff.loc["size", "difference"] == pytest.approx(2 / 3)
    assert diff.loc["size", "prompts"] == 1 and diff.loc["size", "videos"] == 3
    assert diff.loc["semantic", "prompts"] == 2 and diff.loc["semantic", "videos"] == 6
    nowhere = paired_difference(t.assign(size=np.nan), base, targets=["size"])
    assert np.isnan(nowhere.loc["size", "difference"]) and nowhere.loc["size", "prompts"] == 0


def test_differences_from_random_and_null_band():
    from anse_lib.studies.analysis import differences_from_random, null_correlation_band

    rng = np.random.default_rng(0)
    table = pd.DataFrame([{"prompt": p, "seed": s, "bansa": rng.normal(), "semantic": rng.random(),
                           "quality": rng.random()} for p in range(12) for s in range(10)])
    outcomes = selection_outcomes(table, m=10)
    diffs = differences_from_random(outcomes).set_index(["strategy", "target"])
    summary = outcome_summary(outcomes)
    # the summary's paired row is the ANSE row of the differences
    anse = diffs.loc[("ANSE (min score)", "semantic"), "difference"]
    assert summary.loc["ANSE - random (paired)", "semantic"] == pytest.approx(anse)
    assert diffs.loc[("oracle", "semantic"), "low"] > 0  # the semantic oracle beats the mean of its seeds
    low, high, draws = null_correlation_band(table, "bansa", "semantic", shuffles=50)
    assert -1 <= low < 0 < high <= 1 and len(draws) == 12 * 50


def test_masked_bansa_limit_matches_the_diffuse_formula_and_the_one_key_value():
    import math

    import torch

    from anse_lib.studies.mask_studies import many_keys_approximation, masked_bansa_limit

    uniform = torch.full((1, 200), 1 / 200)
    assert masked_bansa_limit(uniform, 0.2).item() == pytest.approx(many_keys_approximation(uniform, 0.2).item(),
                                                                      abs=2e-3)
    one_key = torch.full((1, 48), 1e-8 / 47)
    one_key[0, 0] = 1 - 1e-8
    h = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))
    # H(p) plus p times the (uniform) rest's score, which sits at its floor -log(1 - p)
    assert masked_bansa_limit(one_key, 0.2, samples=20000).item() == pytest.approx(h - 0.2 * math.log(0.8), abs=0.01)
    exact = torch.zeros(1, 48)
    exact[0, 3] = 1.0
    assert masked_bansa_limit(exact, 0.2).item() == 0.0
