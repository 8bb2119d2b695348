"""The shipped toy model, the cached sweep made with it (a sample recomputed), the demo and the CLI."""
import ast
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from anse_lib import sweeps
from anse_lib.provenance import model_hash, verify_manifest
from anse_lib.toyworld import DEFAULT_MODEL_DIR, WorldSplit, load_toy_pipeline

ROOT = DEFAULT_MODEL_DIR.parents[1]


@pytest.fixture(scope="module")
def pipe():
    return load_toy_pipeline()


def test_shipped_model_matches_its_manifest(pipe):
    manifest = verify_manifest(DEFAULT_MODEL_DIR)
    assert manifest["command"].startswith("python -m anse_lib.toyworld.train")
    assert manifest["trained_steps"] > 0
    assert pipe.transformer.config.num_layers == manifest["config"]["transformer"]["num_layers"]
    curve = pd.read_csv(DEFAULT_MODEL_DIR / "training_curve.csv")
    assert curve.step.max() == manifest["trained_steps"] and curve.loss.iloc[-1] < curve.loss.iloc[0]


def test_shipped_model_is_deterministic(pipe):
    a = pipe("a big red circle moving left", num_inference_steps=4, generator=torch.Generator().manual_seed(0)).frames
    b = pipe("a big red circle moving left", num_inference_steps=4, generator=torch.Generator().manual_seed(0)).frames
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["heldout_quality", "heldout_quality_guidance", "heldout_quality_unguided"])
def test_cached_sweeps_were_made_by_the_shipped_model(name):
    table, meta = sweeps.load(name, DEFAULT_MODEL_DIR)  # refuses another model's table
    assert meta["command"].startswith("python benchmarks/toy_model_quality.py")
    seeds = meta["config"]["seeds"]
    assert sorted(table.seed.unique()) == sorted(seeds if isinstance(seeds, list) else range(seeds))
    assert len(table) and table.chunk.nunique() == len(meta["chunks"])


def test_pipeline_defaults_are_the_guidance_sweeps_best_semantic_score():
    """The rule in pipeline.py's docstring, applied to the shipped model's cached guidance sweep."""
    from anse_lib.toyworld.pipeline import DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_RESCALE

    sweep, _ = sweeps.load("heldout_quality_guidance", DEFAULT_MODEL_DIR)
    best = sweep.groupby(["guidance", "guidance_rescale"]).semantic.mean().idxmax()
    assert best == (DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_RESCALE)


@pytest.mark.parametrize("name", ["heldout_quality", "score_quality_study", "training_runs"])
def test_cached_sweeps_used_the_pipelines_guidance(name):
    """The model hash alone would not catch a table generated at an older default guidance."""
    from anse_lib.toyworld.pipeline import DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_RESCALE

    _, meta = sweeps.load(name, DEFAULT_MODEL_DIR)
    assert (meta["config"]["guidance"], meta["config"]["guidance_rescale"]) == (DEFAULT_GUIDANCE,
                                                                                DEFAULT_GUIDANCE_RESCALE)


def benchmark():
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    import toy_model_quality

    return toy_model_quality


def _is_score(col: str) -> bool:
    return col == "bansa" or col.startswith("layer_")


def assert_rows_match(rows: pd.DataFrame, cached: pd.DataFrame, is_score=_is_score):
    """Scores (``is_score``) to 1e-6, other floats (ToyBench) to 1e-4, everything else exactly."""
    for col in rows.columns:
        if is_score(col):
            # a prompt's candidates differ by ~1e-4 nats (std over seeds, 4e-5 at least): check far below
            np.testing.assert_allclose(rows[col], cached[col], atol=1e-6, rtol=0, err_msg=col)
        elif rows[col].dtype.kind == "f":
            np.testing.assert_allclose(rows[col], cached[col], atol=1e-4, err_msg=col)
        else:
            assert rows[col].tolist() == cached[col].tolist(), col


def test_cached_sweep_sample_recomputes(pipe):
    """Regenerate the first chunk of the held-out sweep exactly as the benchmark did."""
    bench = benchmark()
    table, meta = sweeps.load("heldout_quality", DEFAULT_MODEL_DIR)
    cfg = meta["config"]
    chunk = table[table.chunk == 0].reset_index(drop=True)
    prompt_index, prompt = int(chunk.prompt_index[0]), chunk.prompt[0]
    assert prompt == bench.heldout_prompts(cfg["prompts"])[prompt_index]
    rows = pd.DataFrame(bench.quality_chunk(pipe, cfg["seeds"], cfg["steps"], cfg["guidance"], cfg["guidance_rescale"],
                                            cfg["k"], cfg["drop_prob"])((prompt_index, prompt)))
    assert_rows_match(rows, chunk.drop(columns="chunk"))


@pytest.mark.parametrize("name", ["heldout_quality_guidance", "heldout_quality_unguided"])
def test_cached_guidance_sweeps_sample_recomputes(pipe, name):
    """Regenerate one chunk of each guidance table: the last, which in the sweep is rescaled CFG."""
    bench = benchmark()
    table, meta = sweeps.load(name, DEFAULT_MODEL_DIR)
    index = len(meta["chunks"]) - 1
    guidance, rescale, prompt = ast.literal_eval(meta["chunks"][index])
    assert prompt in bench.heldout_prompts(64)
    rows = pd.DataFrame(bench.guidance_chunk(pipe, meta["config"]["seeds"], meta["config"]["steps"])(
        (guidance, rescale, prompt)))
    assert_rows_match(rows, table[table.chunk == index].drop(columns="chunk").reset_index(drop=True))


def test_demo_runs_small(pipe, tmp_path):
    from anse_lib import AnseConfig, BansaConfig
    from anse_lib.demo import run_demo

    lines = []
    table = run_demo(pipe, prompts=["a big red circle moving left"],
                     config=AnseConfig(num_candidates=3, depth=1, bansa=BansaConfig(num_masks=2)), steps=3,
                     folder=tmp_path, out=lines.append)
    assert list(table["winner seed"]) and "selection cost / plain generation" in "\n".join(lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "demo_1_anse.gif", "demo_1_random.gif", "demo_scores.png", "demo_videos.png"]


def test_cli_select(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "anse_lib", "select", "--prompt", "a blue square moving up", "--candidates", "3",
         "-k", "2", "--layers", "1", "--steps", "3", "--out", "cli", "--figures", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "winner: seed" in proc.stdout and "scoring candidates" in proc.stderr
    assert (tmp_path / "cli_winner.gif").exists() and (tmp_path / "cli_scores.png").exists()


def test_cli_rejects_bad_input(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "anse_lib", "select", "--prompt", "a purple circle moving left",
                           "--candidates", "2", "--figures", str(tmp_path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode != 0 and "unknown word 'purple'" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "anse_lib", "select", "--prompt", "x", "--layers", "a,b"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2 and "--layers takes a depth d" in proc.stderr


def test_cached_score_quality_study_sample_recomputes(pipe):
    """Recompute one prompt of the score-versus-quality sweep (every selector's column) as the benchmark did."""
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    import score_quality_study as study

    table, meta = sweeps.load("score_quality_study", DEFAULT_MODEL_DIR)
    assert meta["command"].startswith("python benchmarks/score_quality_study.py")
    cfg = meta["config"]
    index = len(meta["chunks"]) - 1
    prompt_index, prompt = ast.literal_eval(meta["chunks"][index])
    pipe.set_progress_bar_config(disable=True)
    rows = pd.DataFrame(study.study_chunk(pipe, cfg["seeds"], cfg["k"], cfg["drop_prob"], tuple(cfg["other"]),
                                          cfg["later_steps"], cfg["lookahead"])((prompt_index, prompt)))
    cached = table[table.chunk == index].drop(columns="chunk").reset_index(drop=True)
    assert list(rows.columns) == list(cached.columns)
    assert_rows_match(rows, cached, is_score=lambda col: rows[col].dtype.kind == "f" and
                      not col.startswith(("final_", "lookahead")))


def test_cached_selection_overhead_table_and_its_rank_agreement():
    """Timings cannot be recomputed; the table's provenance and its deterministic columns can."""
    from scipy.stats import spearmanr

    from anse_lib import AnseConfig, BansaConfig, select_noise

    table, meta = sweeps.load("selection_overhead", DEFAULT_MODEL_DIR)
    assert meta["command"].startswith("python benchmarks/selection_overhead.py") and "--save" in meta["command"]
    assert {"measured", "threads", "cpu", "scorer"} <= set(meta["config"])
    toy = table[table.model.str.startswith("toy") & (table.candidates == meta["config"]["M"])]
    assert sorted(toy.depth.unique()) == [1, 2, 3, 4] and set(toy.rows.astype(str)) == {"none", "logits", "all",
                                                                                          "all/pt", "256"}
    assert (table.ratio > 0).all() and np.allclose(table.ratio, table.selection_s / table.plain_s)
    row = toy[(toy.depth == 3) & (toy.rows.astype(str) == "256")].iloc[0]
    pipe = load_toy_pipeline()
    config = AnseConfig(depth=3, bansa=BansaConfig(num_masks=meta["config"]["K"]))
    kw = dict(seeds=list(range(meta["config"]["M"])), num_inference_steps=meta["config"]["steps"])
    exact = select_noise(pipe, "a big red circle moving left", config, **kw).scores.bansa
    sampled = select_noise(pipe, "a big red circle moving left", config.replace(row_sample=256), **kw).scores.bansa
    # the cache keeps the rank agreement to 2 decimals: equal within that rounding
    assert abs(spearmanr(sampled, exact)[0] - float(row.rank_agreement)) <= 0.005 + 1e-9


def training_runs_benchmark():
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    import toy_training_runs

    return toy_training_runs


def test_cached_training_runs_sample_recomputes():
    """The shipped model's rows of the training-runs tables recompute (the other models are not shipped)."""
    bench = training_runs_benchmark()
    table, meta = sweeps.load("training_runs", DEFAULT_MODEL_DIR)
    shipped = model_hash(DEFAULT_MODEL_DIR)
    assert meta["command"].startswith("python benchmarks/toy_training_runs.py")
    assert shipped in meta["config"]["models"].values()
    name = next(n for n, h in meta["config"]["models"].items() if h == shipped)
    index = next(i for i, c in enumerate(meta["chunks"]) if ast.literal_eval(c)[0] == name)
    _, prompt_index, prompt = ast.literal_eval(meta["chunks"][index])
    assert prompt == bench.heldout_prompts(64)[prompt_index]
    models = bench.Models({name: DEFAULT_MODEL_DIR})
    rows = pd.DataFrame(bench.quality_chunk(models, meta["config"]["seeds"])((name, prompt_index, prompt)))
    assert_rows_match(rows, table[table.chunk == index].drop(columns="chunk").reset_index(drop=True),
                      is_score=lambda col: col.startswith("eval_loss"))
    words, words_meta = sweeps.load("training_runs_words", DEFAULT_MODEL_DIR)
    cfg = words_meta["config"]
    split = WorldSplit.from_json((DEFAULT_MODEL_DIR / "split.json").read_text())
    assert cfg["prompts"] == bench.one_object_prompts(split, len(cfg["prompts"]))
    rows = pd.DataFrame(bench.words_chunk(models, cfg["prompts"], cfg["videos"])(name))
    cached = words[words.model == name].drop(columns="chunk").reset_index(drop=True)
    assert_rows_match(rows, cached, is_score=lambda col: col in ("rms",) or col.startswith("eval_loss"))


def test_cached_training_curve_contains_the_shipped_model():
    """The lineage's curve (copied from the last run) starts with the shipped model's own curve."""

    lineage, meta = sweeps.load("training_runs_curve")  # the last model's curve: not always the shipped one
    runs, runs_meta = sweeps.load("training_runs", DEFAULT_MODEL_DIR)
    assert runs_meta["config"]["models"][meta["copied_from"]] == meta["model_hash"]
    assert lineage.step.max() == runs[runs.model == meta["copied_from"]].trained_steps.iloc[0]
    own = pd.read_csv(DEFAULT_MODEL_DIR / "training_curve.csv")
    pd.testing.assert_frame_equal(lineage.iloc[: len(own)].reset_index(drop=True), own, check_exact=True)


def test_cached_train_step_profile_table():
    """Timings cannot be recomputed; the table's provenance and its arithmetic can."""
    table, meta = sweeps.load("train_step_profile", DEFAULT_MODEL_DIR)
    assert meta["command"].startswith("python benchmarks/train_step_profile.py") and "--save" in meta["command"]
    assert {"train", "threads", "torch"} <= set(meta["config"])
    for part in ("phases", "operators"):
        rows = table[table.table == part]
        assert abs(rows.share.sum() - 1) < 1e-6, part
        assert np.allclose(rows.share, rows["seconds per step"] / rows["seconds per step"].sum(), atol=1e-6)
    assert set(table[table.table == "phases"].name) == {"data", "forward", "backward", "clip and optimiser", "ema"}
    variants = table[table.table == "variants"].set_index("name")
    default = variants.loc["default (fused CPU attention, float32)"]
    assert default["ratio to default"] == 1.0
    assert np.allclose(variants["ratio to default"], variants["seconds per step"] / default["seconds per step"],
                       rtol=1e-5)
