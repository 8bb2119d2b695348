"""The schedule twin (data/toy_model_sd_schedule): loads hash-checked, keeps SD 1.5's schedule,
carries the guidance the sweep rule chose, and its cached tables recompute."""
import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from test_shipped import ROOT, assert_rows_match

from anse_lib import sweeps
from anse_lib.provenance import model_hash, read_manifest
from anse_lib.studies import footprint as FP
from anse_lib.toyworld import DEFAULT_MODEL_DIR, load_toy_pipeline
from anse_lib.toyworld.pipeline import GUIDANCE_NAME

TWIN_DIR = DEFAULT_MODEL_DIR.parent / "toy_model_sd_schedule"


@pytest.fixture(scope="module")
def twin():
    return load_toy_pipeline(TWIN_DIR)  # checks every file against the manifest


def bench():
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    import schedule_twin

    return schedule_twin


def test_twin_keeps_sd_schedule_and_the_shipped_architecture(twin):
    c = twin.scheduler.config
    assert (c.prediction_type, c.rescale_betas_zero_snr, c.timestep_spacing, c.steps_offset) == (
        "epsilon", False, "leading", 1)
    assert float(twin.scheduler.alphas_cumprod[-1]) == pytest.approx(0.00466, abs=1e-5)
    shipped = load_toy_pipeline()
    same = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    assert same(twin.transformer.config) == same(shipped.transformer.config)
    manifest = read_manifest(TWIN_DIR)
    assert "--schedule sd" in manifest["command"] and "--init-from data/toy_model" in manifest["command"]
    assert manifest["init_from"]["trained_steps"] == read_manifest(DEFAULT_MODEL_DIR)["trained_steps"]
    assert (TWIN_DIR / "split.json").read_text() == (DEFAULT_MODEL_DIR / "split.json").read_text()


def test_twin_generates(twin):
    video = twin("a big red circle moving left", num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert video.frames.shape == (1, 8, 16, 16, 3) and np.isfinite(video.frames).all()


def test_twin_guidance_is_the_sweep_rules_choice(twin):
    table, meta = sweeps.load("schedule_twin_guidance", TWIN_DIR)
    saved = json.loads((TWIN_DIR / GUIDANCE_NAME).read_text())
    assert (saved["guidance_scale"], saved["guidance_rescale"]) == bench().choose_guidance(table)
    assert saved["_model_hash"] == model_hash(TWIN_DIR)
    assert twin.guidance_defaults == {"guidance_scale": saved["guidance_scale"],
                                      "guidance_rescale": saved["guidance_rescale"]}
    assert meta["config"]["shipped_model_hash"] == model_hash(DEFAULT_MODEL_DIR)


def test_cached_twin_heldout_sample_recomputes(twin):
    """The first prompt's rows of the held-out table, for both models, regenerated."""
    table, meta = sweeps.load("schedule_twin_heldout", TWIN_DIR)
    prompt = table[table.chunk == 0].prompt.iloc[0]
    work = bench().heldout_chunk({"shipped": load_toy_pipeline(), "twin": twin}, meta["config"]["seeds"])
    rows = pd.DataFrame(work((0, prompt)))
    assert_rows_match(rows, table[table.chunk == 0].drop(columns="chunk").reset_index(drop=True))


def test_footprint_splits_the_sum_of_squares_exactly():
    """ss between seeds + ss between prompts = the total sum of squares around the grand mean;
    at step 0 (the same seeds for every prompt) all of it is between seeds."""
    pipe = load_toy_pipeline()
    prompts, seeds = ["a big red circle moving left", "a small blue square moving up"], [0, 1]
    rows = pd.DataFrame(FP.footprint_rows(pipe, "shipped", prompts, seeds, steps=(1,), num_inference_steps=3))
    noise = torch.stack([FP.initial_noise(pipe, seeds)] * 2).flatten(2).double()
    step0 = rows[rows.step == 0]
    total = float(((noise - noise.mean((0, 1))) ** 2).sum())
    assert step0.ss_between_seeds.sum() == pytest.approx(total) and step0.ss_between_prompts.abs().max() < 1e-9
    share = FP.seed_share(rows)
    assert share.loc[("shipped", 0), "share between seeds"] == pytest.approx(1.0)
    assert 0 <= share.loc[("shipped", 1), "share between seeds"] < 1


def test_first_update_keeps_the_noise_at_zero_terminal_snr(twin):
    shipped = FP.first_update(load_toy_pipeline(), "a big red circle moving left", seed=3)
    assert shipped["alpha_bar"] == 0 and shipped["max |eps_hat - x_T|"] < 1e-5  # float32 rounding
    sd = FP.first_update(twin, "a big red circle moving left", seed=3)
    assert sd["first t"] == 961 and sd["max |eps_hat - x_T|"] > 0
