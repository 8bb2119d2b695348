"""Attention capture, row statistics and the widgets of notebooks 02-04."""
import math
import warnings

import numpy as np
import pytest
import torch

from anse_lib import AnseConfig, BansaConfig, select_noise
from anse_lib.bansa import bansa_chunked
from anse_lib.capture import capture_attention
from anse_lib.rowstats import row_statistics
from anse_lib.studies import attention_views as V
from anse_lib.toyworld import ToyVideoPipeline, build_components
from anse_lib.widgets import AttentionExplorer, MaskPlayground

warnings.filterwarnings("ignore")
PROMPT = "a big red circle moving left"


def cfg(k: int, **fields) -> AnseConfig:
    """AnseConfig with K = k masks and the given selection fields (BANSA's too, by name)."""
    return AnseConfig(bansa=BansaConfig(num_masks=k)).replace(**fields)


@pytest.fixture(scope="module")
def toy():
    pipe = ToyVideoPipeline(**build_components(seed=0, transformer_config=dict(num_layers=2)))
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --- row statistics ------------------------------------------------------------------------------
def test_row_statistics_bansa_is_the_scorers_and_splits_into_its_two_terms():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(1, 3, 40, 50, generator=g, dtype=torch.float64), -1)
    want = bansa_chunked(probs=probs, k=6, drop_prob=0.3, seed=5, salt=2, accumulate_dtype=torch.float64).rows[0]
    got = row_statistics(probs[0], k=6, drop_prob=0.3, seed=5, salt=2)
    np.testing.assert_allclose(got["bansa"], want.double(), atol=1e-6)
    np.testing.assert_allclose(got["bansa"], got["kept_mass_term"] - got["spread_term"], atol=1e-12)
    part = row_statistics(probs[0, 1, 7:9], k=6, drop_prob=0.3, seed=5, salt=2, heads=[1], rows=[7, 8])
    np.testing.assert_allclose(part["bansa"], want[1, 7:9].double(), atol=1e-6)


def test_row_statistics_of_uniform_and_one_hot_rows():
    n = 64
    uniform = row_statistics(torch.full((1, n), 1.0 / n, dtype=torch.float64), k=10, drop_prob=0.2)
    assert float(uniform["entropy"][0]) == pytest.approx(math.log(n))
    assert float(uniform["effective_keys"][0]) == pytest.approx(n)
    assert float(uniform["collision"][0]) == pytest.approx(1 / n)
    one_hot = torch.zeros(1, n, dtype=torch.float64)
    one_hot[0, 3] = 1
    s = row_statistics(one_hot, k=10, drop_prob=0.2)
    assert float(s["bansa"][0]) == 0 and float(s["effective_keys"][0]) == pytest.approx(1)


def test_row_statistics_errors():
    with pytest.raises(ValueError, match=r"heads \(2,\) and rows"):
        row_statistics(torch.full((3, 8), 1 / 8), heads=[0, 1])
    with pytest.raises(ValueError, match="k .*>= 2"):
        row_statistics(torch.full((3, 8), 1 / 8), k=1)


# --- capture ---------------------------------------------------------------------------------------
def test_capture_matches_the_probe_and_selection(toy):
    cap = capture_attention(toy, PROMPT, seed=3, k=4)
    assert cap.grid == (8, 8, 8) and cap.text_len == 20 and cap.num_tokens == 532 and cap.step == 0
    probs = cap.probs(1, 2)
    np.testing.assert_allclose(probs.sum(-1), 1, atol=1e-5)
    for layer in cap.layers:  # the probe's per-row scores are the row statistics' BANSA
        np.testing.assert_allclose(cap.row_statistics(layer)["bansa"], cap.bansa_rows[layer], atol=2e-6)
    sel = select_noise(toy, PROMPT, cfg(4), seeds=[3])
    np.testing.assert_allclose([float(cap.bansa_rows[i].mean()) for i in cap.layers], sel.layer_scores()[0],
                               atol=1e-6)
    assert torch.equal(cap.latents, sel.latents)


def test_capture_at_a_later_step_matches_score_step(toy):
    cap = capture_attention(toy, PROMPT, seed=3, k=4, step=2, num_inference_steps=5)
    sel = select_noise(toy, PROMPT, cfg(4, score_step=2), seeds=[3], num_inference_steps=5)
    np.testing.assert_allclose([float(cap.bansa_rows[i].mean()) for i in cap.layers], sel.layer_scores()[0],
                               atol=1e-6)
    assert cap.timestep == float(toy.scheduler.timesteps[2])


def test_capture_geometry(toy):
    cap = capture_attention(toy, PROMPT, seed=0, k=3, layers=[1])
    assert cap.layers == [1]
    i = cap.video_token(frame=2, row=3, col=4)
    assert i == 20 + 2 * 64 + 3 * 8 + 4 and cap.token_label(i) == "video frame 2 row 3 col 4"
    values = torch.arange(cap.num_tokens)
    assert int(cap.video_map(values)[2, 3, 4]) == i
    assert cap.text_token("red") == 2 and cap.token_label(2) == "text 'red'"
    assert list(cap.text_values(values)) == list(range(6))
    with pytest.raises(ValueError, match="'blue' is not a word of the prompt"):
        cap.text_token("blue")
    with pytest.raises(ValueError, match=r"layer 0 was not captured; captured layers: \[1\]"):
        cap.probs(0, 0)
    with pytest.raises(ValueError, match=r"outside the video's grid"):
        cap.video_token(8, 0, 0)


def test_attention_views_draw(toy):
    cap = capture_attention(toy, PROMPT, seed=0, k=3)
    video = np.zeros((8, 16, 16, 3))
    video[0, 6:8, 10:12] = 1  # an object in patch row 3, column 5
    assert V.object_patch(cap, video) == (3, 5)
    summary = V.row_summary(cap)
    assert set(summary.index.get_level_values("rows")) == {"prompt words", "text padding", "video patches"}
    for fig in (V.query_rows_figure(cap, 0, {"red": 2, "patch": cap.video_token(0, 3, 5)}),
                V.masked_samples_figure(cap, 0, 1, 30, "patch"), V.bansa_maps_figure(cap),
                V.bansa_maps_figure(cap, by="head", layer=1), V.entropy_histograms({"seed 0": cap})):
        assert fig.axes
    mass = V.key_mass(cap, 0, None, 30)
    assert list(mass) == ["prompt words", "text padding", "video patches"]
    assert sum(mass.values()) == pytest.approx(1, abs=1e-5)
    words = V.top_words(cap, 0, 30, n=2)
    assert len(words) == 2 and words[0][1] >= words[1][1] and {w for w, _ in words} <= set(cap.words)
    samples = V.masked_samples(cap, 0, 1, 30)
    assert samples.shape == (3, 532)
    np.testing.assert_allclose(samples.sum(-1), 1, atol=1e-5)


# --- widgets ---------------------------------------------------------------------------------------
def test_explorer_callbacks_redraw_and_report_errors(toy):
    ex = AttentionExplorer(toy, PROMPT, seed=0, k=3)
    assert ex.error.value == "" and ex.image.value
    for name, value in [("layer", 1), ("head", 2), ("query", 2), ("k", 5), ("drop_prob", 0.5), ("mask_seed", 3),
                        ("seed", 7), ("step", 2)]:
        before = ex.image.value
        ex.controls[name].value = value
        assert ex.error.value == "", name
        assert ex.image.value != before, name
    assert "text &#x27;red&#x27;" in ex.query_label.value
    before = ex.image.value
    ex.controls["prompt"].value = "a big red blob"
    assert "unknown word &#x27;blob&#x27;" in ex.error.value and ex.image.value == before
    ex.controls["prompt"].value = "a small blue square moving up"
    assert ex.error.value == "" and ex.image.value != before
    ex._generate()
    assert ex.video.value[:6] == b"GIF89a"
    bundle = ex._repr_mimebundle_()
    assert {"image/png", "application/vnd.jupyter.widget-view+json"} <= set(bundle)


def test_mask_playground_callbacks():
    pg = MaskPlayground()
    for name, value in [("temperature", 2.0), ("k", 20), ("drop_prob", 0.6), ("mask_seed", 4)]:
        before = pg.image.value
        pg.controls[name].value = value
        assert pg.error.value == "" and pg.image.value != before, name
    assert "image/png" in pg._repr_mimebundle_()


# --- baselines and the look-ahead control (issue 18's harness) ----------------------------------------
def test_attention_scores_match_selection_and_split_rows(toy):
    from anse_lib.studies.selectors import attention_scores

    table = attention_scores(toy, PROMPT, seeds=[3, 4], k=4)
    sel = select_noise(toy, PROMPT, cfg(4), seeds=[3, 4])
    np.testing.assert_allclose(table[["bansa_00", "bansa_01"]].to_numpy(), sel.layer_scores(), atol=1e-6)
    n, t = 532, 20
    mixed = (t * table.bansa_text_00 + (n - t) * table.bansa_video_00) / n
    np.testing.assert_allclose(mixed, table.bansa_00, atol=1e-6)
    assert (table.entropy_00 > 0).all() and (table.collision_00 < 1).all()
    assert not np.allclose(table.bansa_other_00, table.bansa_00)


def test_lookahead_at_the_last_step_is_the_generated_video(toy):
    from anse_lib.studies.selectors import lookahead_x0

    x0 = lookahead_x0(toy, PROMPT, seeds=[1, 2], steps=(1, 3), num_inference_steps=3)
    assert set(x0) == {1, 3} and x0[1].shape == (2, *toy.video_shape)
    final = toy(PROMPT, num_inference_steps=3, num_videos_per_prompt=2, output_type="latent",
                generator=[torch.Generator().manual_seed(s) for s in (1, 2)]).frames
    torch.testing.assert_close(x0[3], final, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(x0[1], final, atol=1e-3)
    assert "step" not in vars(toy.scheduler)  # the scheduler's own step is back
    with pytest.raises(ValueError, match="must be in 1..num_inference_steps"):
        lookahead_x0(toy, PROMPT, seeds=[1], steps=(4,), num_inference_steps=3)


def test_dropout_bansa_layer0_is_the_bernoulli_score_with_its_masks_and_zero_without_dropout(toy):
    from anse_lib.studies.selectors import dropout_bansa

    k, p = 3, 0.3
    table = dropout_bansa(toy, PROMPT, seeds=[2, 5], k=k, drop_prob=p, per_call=1)
    assert list(table.columns) == ["seed", "bansa_d_00", "bansa_d_01"] and list(table.seed) == [2, 5]
    # batching candidates together changes nothing
    np.testing.assert_allclose(dropout_bansa(toy, PROMPT, seeds=[2, 5], k=k, drop_prob=p, per_call=2).iloc[:, 1:],
                               table.iloc[:, 1:], atol=1e-6)
    # layer 0 sees no earlier dropout: BANSA of the captured map under the same masks
    cap = capture_attention(toy, PROMPT, 5)
    probs = torch.stack([cap.probs(0, h) for h in range(cap.num_heads)])
    masks = torch.rand((k, *probs.shape), generator=torch.Generator().manual_seed(0)) >= p
    kept = probs * masks
    sample = kept / kept.sum(-1, keepdim=True)
    ent = lambda a: -(a * a.clamp_min(1e-30).log()).sum(-1)  # noqa: E731
    by_hand = (ent(sample.mean(0)) - ent(sample).mean(0)).mean()
    assert table.bansa_d_00[1] == pytest.approx(float(by_hand), abs=1e-5)
    # without dropout every pass is the same: no disagreement
    none = dropout_bansa(toy, PROMPT, seeds=[2], k=k, drop_prob=0.0)
    np.testing.assert_allclose(none.iloc[0, 1:].to_numpy(dtype=float), 0.0, atol=1e-6)


def test_inversion_stability_generates_the_pipelines_videos_and_scores_a_cosine(toy):
    from anse_lib.studies.selectors import ddim_invert, initial_noise, inversion_stability

    seeds = [1, 4]
    noise = initial_noise(toy, seeds)
    torch.testing.assert_close(noise[1:], select_noise(toy, PROMPT, cfg(2), seeds=[4]).latents)
    table, videos = inversion_stability(toy, PROMPT, seeds, num_inference_steps=3)
    plain = toy(PROMPT, num_inference_steps=3, num_videos_per_prompt=2, output_type="latent",
                generator=[torch.Generator().manual_seed(s) for s in seeds]).frames
    torch.testing.assert_close(videos, plain)
    assert list(table.seed) == seeds and table.inversion_cosine.between(-1, 1).all()
    back = ddim_invert(toy, PROMPT, videos, 3)
    expected = torch.nn.functional.cosine_similarity(back.flatten(1), noise.flatten(1), dim=1)
    np.testing.assert_allclose(table.inversion_cosine, expected.numpy(), atol=1e-6)


def test_later_step_bansa_is_selection_at_that_step(toy):
    from anse_lib.studies.selectors import later_step_bansa

    table = later_step_bansa(toy, PROMPT, seeds=[0, 3], steps=(1,), k=4)
    sel = select_noise(toy, PROMPT, cfg(4, score_step=1), seeds=[0, 3])
    np.testing.assert_allclose(table[["step1_bansa_00", "step1_bansa_01"]].to_numpy(), sel.layer_scores())


def test_gif_of_a_pipelines_pil_frames_is_not_white():
    """CogVideoX returns PIL frames by default: the GIF keeps their pixels (they were once read as
    floats in [0, 1] and clipped to white), and equals the GIF of the same video's np output."""
    from anse_lib import tiny_pipelines as T
    from anse_lib.viz import gif_bytes, to_uint8_frames

    pipe, kw = T.tiny_cogvideox_pipeline(vae=True)
    pil = pipe(generator=torch.Generator().manual_seed(0), **kw).frames[0]
    as_np = pipe(generator=torch.Generator().manual_seed(0), output_type="np", **kw).frames[0]
    frames = to_uint8_frames(pil)
    assert frames.shape == as_np.shape and frames.min() < 250  # not all white
    assert np.abs(frames.astype(int) - to_uint8_frames(as_np).astype(int)).max() <= 1  # the same video
    assert gif_bytes(pil, scale=1) == gif_bytes(frames, scale=1)
