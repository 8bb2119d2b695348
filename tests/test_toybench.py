"""ToyBench: near-best on ground truth, and each corruption lowers the metric meant to see it."""
import numpy as np
import pytest

from anse_lib.toyworld import parse_prompt, render, sample_prompts, toybench
from anse_lib.toyworld.corrupt import CORRUPTIONS


@pytest.fixture(scope="module")
def ground_truth():
    rng = np.random.default_rng(123)
    specs = sample_prompts(64, rng)
    return specs, render(specs, rng).video


@pytest.fixture(scope="module")
def ground_truth_scores(ground_truth):
    specs, video = ground_truth
    return toybench.toybench_table(video, specs)


def test_ground_truth_scores_near_best(ground_truth_scores):
    df = ground_truth_scores
    for check in toybench.SEMANTIC_CHECKS:
        assert df[check].mean() >= 0.97, check
    assert df["semantic"].mean() >= 0.98
    for q in toybench.QUALITY_METRICS:
        assert df[q].mean() >= 0.9, q
    assert df["quality"].mean() >= 0.95


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruption_lowers_its_metric(name, ground_truth, ground_truth_scores):
    fn, metric = CORRUPTIONS[name]
    specs, video = ground_truth
    # reversed motion only changes objects that move
    keep = [i for i, s in enumerate(specs) if name != "reversed motion" or any(o.motion != "still" for o in s.objects)]
    corrupted = [fn(toybench.as_frames(video[i]), specs[i]) for i in keep]
    after = toybench.toybench_table(corrupted, [specs[i] for i in keep])
    before = ground_truth_scores.iloc[keep].reset_index(drop=True)
    assert after[metric].mean() < before[metric].mean() - 0.3, (name, metric, before[metric].mean(),
                                                                 after[metric].mean())
    combined = "semantic" if metric in toybench.SEMANTIC_CHECKS else "quality"
    assert after[combined].mean() < before[combined].mean(), combined


def test_blank_video_fails_semantics():
    spec = parse_prompt("a big red circle moving left")
    s = toybench.toybench(np.zeros((8, 32, 32, 3)), spec)
    assert s.colour == s.shape == s.motion == s.size == s.count == 0.0
    assert s.semantic == 0.0


def test_size_is_nan_when_prompt_names_no_size():
    spec = parse_prompt("a red circle moving left")
    video = render([spec], np.random.default_rng(0)).video[0]
    s = toybench.toybench(video, spec)
    assert np.isnan(s.size) and s.semantic == 1.0


def test_accepts_both_layouts():
    spec = parse_prompt("a small green triangle moving up on a gray background")
    video = render([spec], np.random.default_rng(0)).video[0]  # (F, 3, H, W) in [-1, 1]
    a = toybench.toybench(video, spec)
    b = toybench.toybench(toybench.as_frames(video), spec)
    assert a == b
    with pytest.raises(ValueError, match="4-d"):
        toybench.toybench(np.zeros((8, 32, 32)), spec)
