"""The multi-selector study helpers (notebook 05) and the cost model (notebook 07) on hand-made inputs."""
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from anse_lib.studies import cost_model as C
from anse_lib.studies import selector_study as S


def table():
    # two prompts x 4 seeds; in prompt 0 the lowest score is the best video, in prompt 1 the worst
    return pd.DataFrame({
        "prompt_index": [0] * 4 + [1] * 4,
        "seed": [0, 1, 2, 3] * 2,
        "score_00": [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0],
        "score_01": [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0],
        "final_semantic": [1.0, 0.5, 0.5, 0.0, 0.0, 0.5, 0.5, 1.0],
        "final_quality": [0.5] * 8,
    })


def exact_pick_mean(y, s, m):
    """Mean over every m-subset of the y at the subset's lowest s (no ties)."""
    vals = [y[min(c, key=lambda i: s[i])] for c in [list(c) for c in combinations(range(len(y)), m)]]
    return float(np.mean(vals))


def test_picks_average_random_subsets_and_random_is_the_mean():
    t = table()
    lowest = S.Selector("low", "score_00", "min")
    got = S.picks(t, lowest, m=2, target="final_semantic", subsets=4000)
    y, s = t.final_semantic.to_numpy(), t.score_00.to_numpy()
    assert got[0] == pytest.approx(exact_pick_mean(y[:4], s[:4], 2), abs=0.02)  # 0.75
    assert got[1] == pytest.approx(exact_pick_mean(y[4:], s[4:], 2), abs=0.02)  # 0.25
    assert S.picks(t, lowest, m=4, target="final_semantic").tolist() == [1.0, 0.0]  # all seeds: the argmin
    assert S.picks(t, S.Selector("r", "random"), m=2, target="final_semantic").tolist() == [0.5, 0.5]
    highest = S.Selector("high", "score_00", "max")
    assert S.picks(t, highest, m=4, target="final_semantic").tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="m=5 is more than the 4 seeds"):
        S.picks(t, lowest, m=5, target="final_semantic")


def test_gains_are_paired_and_scaled_by_the_oracle():
    g = S.gains(table(), [S.Selector("low", "score_00", "min", passes=0.5)], m=4, targets=("final_semantic",))
    row = g.iloc[0]
    assert row.gain == pytest.approx(0.0)  # +0.5 on one prompt, -0.5 on the other
    assert row.low < 0 < row.high and row.of_oracle == pytest.approx(0.0)
    assert row.generations == pytest.approx(4 * 0.5 / 50 + 1)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_depth_scores_variance_split_and_correlations():
    t = S.add_depth_scores(table(), 2)
    np.testing.assert_allclose(t.score_d, t.score_00)
    with pytest.raises(ValueError, match="not in the table"):
        S.layer_mean(t, "score_", 3)
    split = S.variance_split(t, "final_semantic")
    assert split["between"] == pytest.approx(0.0) and split["share_between"] == pytest.approx(0.0)
    r = S.pooled_and_within(t, "score_00", "final_semantic")
    assert r["pooled r"] == pytest.approx(0.0) and r["within-prompt r"] == pytest.approx(0.0)


def test_power_formulas():
    d = np.array([0.1, -0.1] * 50)
    assert S.detectable_gain(d) == pytest.approx(2.8016 * d.std(ddof=1) / 10, rel=1e-4)
    assert S.prompts_needed(0.1, 0.02) == 197  # (2.8016 x 0.1 / 0.02)^2 = 196.2


def test_cost_model_counts_and_constants():
    size = C.ModelSize("x", layers=4, heads=2, head_dim=8, width=16, query_rows=10, keys=10, depth=2)
    assert size.entries() == 200 and size.forward_macs() == 2 * 2 * 10 * 10 * 8 + 12 * 16**2 * 10
    crossed = C.ModelSize("y", 4, 2, 8, 16, 10, 10, 2, ffn=32, cross_text=5)
    assert crossed.forward_macs() == (2 * 2 * 10 * 10 * 8 + 4 * 16**2 * 10 + 2 * 16 * 32 * 10
                                      + 2 * 16**2 * 15 + 2 * 2 * 10 * 5 * 8)
    p = C.predicted_overhead(size, forward_s_per_mac=1.0, scorer_s_per_entry=0.0, m=10, steps=50)
    assert p["predicted overhead"] == pytest.approx(10 * 2 / (2 * 50 * 4))  # notebook 08's idealised estimate
    over = pd.DataFrame({"model": ["x"] * 2, "depth": [2, 2], "candidates": [10, 10], "rows": ["none", "all"],
                         "selection_s": [1.0, 3.0], "plain_s": [100.0, 100.0]})
    consts = C.measured_constants(over, {"x": size})
    assert consts.loc["x", "scorer_s_per_entry"] == pytest.approx(2.0 / (10 * 2 * 200))
    assert consts.loc["x", "forward_s_per_mac"] == pytest.approx(100.0 / (100 * 4 * size.forward_macs()))
    mem = C.scorer_memory_gib(size)
    assert mem["naive GiB"] == pytest.approx(11 * 10 * 200 * 4 / 2**30)
