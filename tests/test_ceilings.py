"""Learned ceilings (anse_lib.studies.ceilings): grouped folds, ridge on synthetic worlds with and without
a signal, picks, the bootstrap p-value and Holm's correction."""
import numpy as np
import pandas as pd
import pytest

from anse_lib.studies import ceilings as C


def world(prompts=40, seeds=8, signal=2.0, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(prompts):
        effect = rng.normal(0, 3)  # prompts differ far more than seeds
        for s in range(seeds):
            f = rng.normal(size=3)
            rows.append({"prompt_index": p, "seed": s, "h_a": f[0], "h_b": f[1], "noise_0": f[2],
                         "final_semantic": effect + signal * f[0] + rng.normal(0, 0.5)})
    return pd.DataFrame(rows)


def test_grouped_folds_keep_prompts_whole():
    groups = np.repeat(np.arange(13), 4)
    folds = C.grouped_folds(groups, 5)
    assert sorted(np.concatenate(folds)) == list(range(len(groups)))
    for fold in folds:
        inside = set(groups[fold])
        assert all(set(groups[f]).isdisjoint(inside) for f in folds if f is not fold)


def test_ridge_reaches_the_oracle_when_the_feature_decides():
    table = world()
    train, test = table[table.prompt_index < 30], table[table.prompt_index >= 30]
    model = C.fit_ridge(train, ["h_a", "h_b"], "final_semantic")
    gain = C.pick_gain(test, model.predict(test), "final_semantic").mean()
    oracle = C.pick_gain(test, "final_semantic", "final_semantic").mean()
    assert gain > 0.8 * oracle > 0
    assert model.coef[0] > 5 * abs(model.coef[1])


def test_ridge_finds_nothing_without_a_signal():
    table = world(prompts=60, signal=0.0, seed=1)
    train, test = table[table.prompt_index < 40], table[table.prompt_index >= 40]
    model = C.fit_ridge(train, ["h_b", "noise_0"], "final_semantic")
    gain = C.pick_gain(test, model.predict(test), "final_semantic")
    res = C.endpoint(gain, "null")
    oracle = C.pick_gain(test, "final_semantic", "final_semantic").mean()
    assert abs(res["gain"]) < 0.3 * oracle and res["low"] < 0 < res["high"]


def test_within_prompt_z_and_picks():
    t = pd.DataFrame({"prompt_index": [0, 0, 0, 1, 1, 1], "y": [1.0, 2.0, 3.0, 5.0, 5.0, 5.0],
                      "s": [0.3, 0.1, 0.2, 1.0, 2.0, 3.0]})
    np.testing.assert_allclose(C.within_prompt_z(t, "y"), [-1, 0, 1, 0, 0, 0])
    gains = C.pick_gain(t, "s", "y", keep="min")  # prompt 0 keeps seed 1 (y = 2 = the mean); prompt 1: all 5
    np.testing.assert_allclose(gains.to_numpy(), [0.0, 0.0])
    np.testing.assert_allclose(C.pick_gain(t, "s", "y", keep="max").to_numpy(), [-1.0, 0.0])


def test_holm_and_bootstrap_p():
    np.testing.assert_allclose(C.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(C.holm([0.2, 0.9]), [0.4, 0.9])  # step-down, kept monotone
    assert C.bootstrap_p(np.full(30, 1.0) + np.random.default_rng(0).normal(0, 0.1, 30)) == pytest.approx(1 / 20000)
    x = np.random.default_rng(1).normal(0, 1, 200)
    assert C.bootstrap_p(x - x.mean()) == 1.0  # a mean of exactly zero


def test_spread_terms_are_the_difference():
    t = pd.DataFrame({"h_bansa_00_1": [0.2], "h_kept_mass_term_00_1": [0.25]})
    assert C.with_spread_terms(t)["h_spread_term_00_1"].iloc[0] == pytest.approx(0.05)


def test_median_pick_and_ranks():
    t = pd.DataFrame({"prompt_index": [0] * 4, "s": [0.1, 0.4, 0.2, 0.3], "y": [0.0, 0.0, 1.0, 3.0]})
    # median 0.25: 0.2 and 0.3 tie in distance, the lower score (0.2, y = 1) wins; mean y = 1
    assert C.median_pick_gain(t, t.s, "y").iloc[0] == pytest.approx(0.0)
    ranks = C.by_rank(t, t.s, "y")
    assert ranks.to_dict() == {1: -1.0, 2: 0.0, 3: 2.0, 4: -1.0}
    assert C.anse_score(pd.DataFrame({"layer_00": [1.0], "layer_01": [3.0], "layer_02": [9.0]}), 2).iloc[0] == 2.0
