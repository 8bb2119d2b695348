"""The attention probe and ANSE selection on the toy model and tiny diffusers video models."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anse_lib import AnseConfig, BansaConfig, calibrate_depth, generate_with_anse, select_noise
from anse_lib import tiny_pipelines as T
from anse_lib.bansa import bansa_bernoulli
from anse_lib.probe import FAMILIES, AttentionProbe, StopForward, attention_layers
from anse_lib.toyworld import ToyVideoPipeline, build_components

warnings.filterwarnings("ignore")
PROMPT = "a big red circle moving left"


def cfg(k: int, **fields) -> AnseConfig:
    """AnseConfig with K = k masks and the given selection fields (BANSA's too, by name)."""
    return AnseConfig(bansa=BansaConfig(num_masks=k)).replace(**fields)


@pytest.fixture(scope="module")
def toy():
    pipe = ToyVideoPipeline(**build_components(seed=0, transformer_config=dict(num_layers=3)))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module", params=sorted(T.PIPELINES))
def real(request):
    return (request.param, *T.PIPELINES[request.param]())


def latent_output(pipe, kw, seed=0, **extra):
    return pipe(generator=torch.Generator().manual_seed(seed), output_type="latent", **{**kw, **extra}).frames


# --- transparency -------------------------------------------------------------------------------------
def test_probe_transparent_on_real_pipelines(real):
    name, pipe, kw = real
    model = pipe.transformer if name != "animatediff" else pipe.unet
    ref = latent_output(pipe, kw)
    with AttentionProbe(model, k=3) as probe:
        armed = latent_output(pipe, kw)
        assert probe.records, name
        probe.armed = False
        n = len(probe.records)
        disarmed = latent_output(pipe, kw)
        assert len(probe.records) == n
    assert torch.equal(ref, armed) and torch.equal(ref, disarmed), name
    assert torch.equal(ref, latent_output(pipe, kw))  # restored


def test_probe_transparent_on_unet3d():
    unet = T.tiny_unet3d()
    g = torch.Generator().manual_seed(0)
    x, emb = torch.randn(2, 4, 3, 8, 8, generator=g), torch.randn(2, 5, 32, generator=g)
    with torch.no_grad():
        ref = unet(x, 10, encoder_hidden_states=emb).sample
        with AttentionProbe(unet, k=3) as probe:
            out = unet(x, 10, encoder_hidden_states=emb).sample
    assert torch.equal(ref, out)
    assert {r.layer for r in probe.records} == set(range(len(attention_layers(unet))))
    modules = dict(attention_layers(unet))
    frames = x.shape[2]
    for r in probe.records:  # spatial attention runs per frame: one mean score per (video, frame) and head
        assert r.scores.shape == (2 * frames, modules[r.name].heads), r.name


def test_probe_transparent_on_toy_with_cfg(toy):
    ref = toy(PROMPT, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt").frames
    with AttentionProbe(toy.transformer, k=3):
        out = toy(PROMPT, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt").frames
    assert torch.equal(ref, out)


def test_rotary_embedding_reaches_the_wrapped_processor():
    """A **kwargs wrapper would lose image_rotary_emb (old-style Attention.forward filters by signature)."""
    pipe, kw = T.tiny_cogvideox_pipeline(rotary=True)
    with AttentionProbe(pipe.transformer, k=2):
        probed = latent_output(pipe, kw)
    pipe.transformer.config.use_rotary_positional_embeddings = False  # pipeline then passes no RoPE
    without_rope = latent_output(pipe, kw)
    pipe.transformer.config.use_rotary_positional_embeddings = True
    assert torch.equal(probed, latent_output(pipe, kw))
    assert not torch.equal(probed, without_rope)


def test_processors_restored_after_exception(toy):
    originals = [m.processor for _, m in attention_layers(toy.transformer)]
    with pytest.raises(ZeroDivisionError):
        with AttentionProbe(toy.transformer):
            assert type(attention_layers(toy.transformer)[0][1].processor).__name__.startswith("Probed")
            1 / 0
    assert [m.processor for _, m in attention_layers(toy.transformer)] == originals
    with pytest.raises(StopForward):
        with AttentionProbe(toy.transformer, stop_at=(0, 0)):
            toy(PROMPT, num_inference_steps=1)
    assert [m.processor for _, m in attention_layers(toy.transformer)] == originals


# --- the scores are BANSA of the model's own attention ---------------------------------------------------
def test_probe_scores_equal_naive_bansa_of_captured_attention(toy):
    captured = []
    real = F.scaled_dot_product_attention

    def capture(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        captured.append(torch.softmax(q @ k.transpose(-1, -2) * (scale or q.shape[-1] ** -0.5), -1))
        return real(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale)

    latents = toy.prepare_latents(1, torch.float32, "cpu", generator=torch.Generator().manual_seed(0))
    emb, _ = toy.encode_prompt(PROMPT, do_classifier_free_guidance=False)
    args = dict(hidden_states=latents, encoder_hidden_states=emb, timestep=torch.tensor([999]))
    F.scaled_dot_product_attention = capture
    try:
        with torch.no_grad():
            toy.transformer(**args)
    finally:
        F.scaled_dot_product_attention = real
    with torch.no_grad(), AttentionProbe(toy.transformer, k=5, drop_prob=0.3, mask_seed=7,
                                         accumulate_dtype=torch.float64) as probe:
        toy.transformer(**args)
    for layer, probs in enumerate(captured):
        naive = bansa_bernoulli(probs, k=5, drop_prob=0.3, seed=7, salt=layer).score  # (1, H)
        assert torch.allclose(probe.scores(0)[layer], naive, atol=1e-6), layer


def test_probe_batch_slice_and_row_sample_score_parts_of_the_full_result(toy):
    """batch_slice scores only some batch entries, row_sample a fixed subset of query rows:
    both equal the matching part of the full computation."""
    from anse_lib.bansa import sample_query_rows
    gen = torch.Generator().manual_seed(0)
    latents = toy.prepare_latents(2, torch.float32, "cpu", generator=gen)
    emb, _ = toy.encode_prompt([PROMPT, "a small blue square moving up"], do_classifier_free_guidance=False)
    args = dict(hidden_states=latents, encoder_hidden_states=emb, timestep=torch.tensor([999, 999]))
    runs = {}
    for name, kw in dict(full={}, half=dict(batch_slice=slice(1, 2)), sub=dict(row_sample=50)).items():
        with torch.no_grad(), AttentionProbe(toy.transformer, k=4, keep_rows=True, **kw) as probe:
            toy.transformer(**args)
        runs[name] = probe
    for layer in range(3):
        full = runs["full"].records[layer].rows  # (2, H, N)
        assert torch.allclose(runs["half"].records[layer].rows, full[1:2], atol=1e-6)
        picked = sample_query_rows(torch.arange(full.shape[-1]), 50, seed=0, salt=layer)
        assert torch.allclose(runs["sub"].records[layer].rows, full[..., picked], atol=1e-6)
    with pytest.raises(ValueError, match="row_sample must be an int >= 1.*0"):
        AttentionProbe(toy.transformer, row_sample=0)


def test_select_row_sample_deterministic_and_all_rows_when_large(toy):
    ref = select_noise(toy, PROMPT, cfg(4, depth=2), seeds=[0, 1, 2])
    big = select_noise(toy, PROMPT, cfg(4, depth=2, row_sample=10_000), seeds=[0, 1, 2])
    np.testing.assert_allclose(big.scores.bansa, ref.scores.bansa, atol=1e-6)
    a = select_noise(toy, PROMPT, cfg(4, depth=2, row_sample=64), seeds=[0, 1, 2])
    b = select_noise(toy, PROMPT, cfg(4, depth=2, row_sample=64), seeds=[2, 0])
    assert a.config.bansa.row_sample == 64
    np.testing.assert_allclose(b.scores.bansa, a.scores.bansa.iloc[[2, 0]], atol=1e-6)  # same rows for all
    assert not np.allclose(a.scores.bansa, ref.scores.bansa)


def test_probe_rows_option_on_joint_attention():
    pipe, kw = T.tiny_cogvideox_pipeline(num_layers=1)
    results = {}
    for rows in ("all", "video", "text"):
        with AttentionProbe(pipe.transformer, rows=rows, k=4, keep_rows=True) as probe:
            latent_output(pipe, kw, num_inference_steps=1)
        results[rows] = probe.records[0].rows
    text_len = kw["prompt_embeds"].shape[1]
    assert results["text"].shape[-1] == text_len
    assert torch.allclose(results["all"][..., :text_len], results["text"], atol=1e-6)
    assert torch.allclose(results["all"][..., text_len:], results["video"], atol=1e-6)
    with pytest.raises(ValueError, match="needs joint text"):
        AttentionProbe(T.tiny_wan_pipeline()[0].transformer, rows="video")


def test_hunyuan_video_rows_are_video_then_text_and_blocks_in_forward_order():
    pipe, kw = T.tiny_hunyuan_video_pipeline(num_layers=2, num_single_layers=2)
    names = [n for n, _ in attention_layers(pipe.transformer)]
    assert names == ["transformer_blocks.0.attn", "transformer_blocks.1.attn",
                     "single_transformer_blocks.0.attn", "single_transformer_blocks.1.attn"]
    results = {}
    for rows in ("all", "video", "text"):
        with AttentionProbe(pipe.transformer, rows=rows, k=4, keep_rows=True) as probe:
            latent_output(pipe, kw, num_inference_steps=1)
        assert [r.name for r in probe.records] == names  # scored in the order the model runs them
        results[rows] = probe.records[2].rows
    text_len = kw["prompt_embeds"].shape[1]
    assert results["text"].shape[-1] == text_len and results["all"].shape[-1] == 32 + text_len
    assert torch.allclose(results["all"][..., -text_len:], results["text"], atol=1e-6)
    assert torch.allclose(results["all"][..., :-text_len], results["video"], atol=1e-6)


def test_hunyuan_video_embedded_guidance_is_kept_and_true_cfg_is_the_branch_switch():
    """HunyuanVideo's guidance_scale is a model input: selection must score with it unchanged.
    Its CFG is true_cfg_scale with a negative prompt: a second call per step, like Wan."""
    pipe, kw = T.tiny_hunyuan_video_pipeline()
    got = select_noise(pipe, None, cfg(3), seeds=[3], **kw)
    with AttentionProbe(pipe.transformer, k=3) as probe:
        latent_output(pipe, kw, seed=3, num_inference_steps=1)
    want = torch.stack([v.mean(-1) for v in probe.scores(0).values()], 1)
    np.testing.assert_allclose(got.layer_scores(), want.numpy(), atol=1e-6)
    other = select_noise(pipe, None, cfg(3), seeds=[3], **{**kw, "guidance_scale": 1.0})
    assert not np.allclose(other.layer_scores(), got.layer_scores())
    with pytest.raises(ValueError, match=r"true_cfg_scale > 1 and a negative prompt"):
        select_noise(pipe, None, cfg(3, branch="uncond"), seeds=[3], **kw)
    pipe, kw = T.tiny_hunyuan_video_pipeline(true_cfg=True)
    with AttentionProbe(pipe.transformer, k=3) as probe:
        latent_output(pipe, kw, seed=3)
    assert probe.call_batch_sizes == [1, 1, 1, 1]  # cond, uncond per step
    for branch, step, call in [("cond", 0, 0), ("uncond", 0, 1), ("cond", 1, 2)]:
        got = select_noise(pipe, None, cfg(3, branch=branch, score_step=step), seeds=[3], **kw)
        want = torch.stack([v.mean(-1) for v in probe.scores(call).values()], 1)
        np.testing.assert_allclose(got.layer_scores(), want.numpy(), atol=1e-6, err_msg=f"{branch} {step}")


@pytest.mark.parametrize("block_rows", [7, 100, None])
def test_chunk_size_invariance(toy, block_rows):
    ref = select_noise(toy, PROMPT, cfg(4, depth=2), seeds=[0, 1, 2])
    got = select_noise(toy, PROMPT, cfg(4, depth=2, block_rows=block_rows), seeds=[0, 1, 2])
    np.testing.assert_allclose(got.scores.bansa, ref.scores.bansa, atol=1e-6)


# --- selection ----------------------------------------------------------------------------------------------
def test_batched_equals_sequential_and_same_seeds_identical(toy):
    seeds = [3, 1, 4, 1_000_000, 5]
    together = select_noise(toy, PROMPT, cfg(4), seeds=seeds)
    one_by_one = select_noise(toy, PROMPT, cfg(4, batch_size=1), seeds=seeds)
    in_pairs = select_noise(toy, PROMPT, cfg(4, batch_size=2), seeds=seeds)
    np.testing.assert_allclose(one_by_one.scores.bansa, together.scores.bansa, atol=1e-6)
    np.testing.assert_allclose(in_pairs.scores.bansa, together.scores.bansa, atol=1e-6)
    again = select_noise(toy, PROMPT, cfg(4), seeds=seeds)
    assert again.scores.equals(together.scores)
    assert together.winner_seed == seeds[int(together.scores.bansa.argmin())]
    assert together.scores["rank"].tolist() == (together.scores.bansa.rank(method="first").astype(int)).tolist()


def test_seeds_drawn_from_generator(toy):
    a = select_noise(toy, PROMPT, cfg(2, num_candidates=3, depth=1), generator=torch.Generator().manual_seed(1))
    b = select_noise(toy, PROMPT, cfg(2, num_candidates=3, depth=1), generator=torch.Generator().manual_seed(1))
    assert a.seeds == b.seeds and len(set(a.seeds)) == 3
    assert a.scores.equals(b.scores)


def test_early_stop_gives_same_scores_as_full_pass(toy):
    full = select_noise(toy, PROMPT, cfg(4), seeds=[0, 1, 2])
    early = select_noise(toy, PROMPT, cfg(4, depth=2), seeds=[0, 1, 2])
    np.testing.assert_array_equal(early.scores[["layer_00", "layer_01"]], full.scores[["layer_00", "layer_01"]])
    picked = select_noise(toy, PROMPT, cfg(4, layers=[2]), seeds=[0, 1, 2])
    np.testing.assert_array_equal(picked.scores["layer_02"], full.scores["layer_02"])


def test_cond_branch_scored_without_cfg_equals_cond_half_of_cfg_batch(toy):
    """Selection scores the cond branch in a pass without CFG; that equals the cond half of
    the pipeline's own [uncond, cond] first step."""
    seeds = [0, 1, 2]
    got = select_noise(toy, PROMPT, cfg(4), seeds=seeds, guidance_scale=4.0)
    assert got.pipeline_kwargs["guidance_scale"] == 4.0
    with torch.no_grad(), AttentionProbe(toy.transformer, k=4, batch_slice=slice(3, 6)) as probe:
        toy(prompt=PROMPT, num_videos_per_prompt=3, num_inference_steps=1, guidance_scale=4.0, output_type="latent",
            generator=[torch.Generator().manual_seed(s) for s in seeds])
    assert probe.call_batch_sizes == [6]
    want = torch.stack([v.mean(-1) for v in probe.scores(0).values()], 1).mean(1)
    np.testing.assert_allclose(got.scores.bansa, want.numpy(), atol=1e-6)


def test_score_step_scores_that_steps_call_of_the_full_sampler(toy):
    """score_step=s equals a probe armed on the s-th call of an ordinary guided run (its cond half)."""
    step = 3
    got = select_noise(toy, PROMPT, cfg(4, score_step=step), seeds=[4], guidance_scale=4.0, num_inference_steps=6)
    assert got.config.score_step == step
    with torch.no_grad(), AttentionProbe(toy.transformer, k=4, batch_slice=slice(1, 2)) as probe:
        probe.on_model_call = lambda call, batch: setattr(probe, "armed", call == step)
        toy(prompt=PROMPT, num_inference_steps=6, guidance_scale=4.0, output_type="latent",
            generator=torch.Generator().manual_seed(4))
    want = torch.stack([v.mean(-1) for v in probe.scores(step).values()], 1)
    np.testing.assert_allclose(got.layer_scores(), want.numpy(), atol=1e-6)
    first = select_noise(toy, PROMPT, cfg(4), seeds=[4], guidance_scale=4.0, num_inference_steps=6)
    assert not np.allclose(first.layer_scores(), got.layer_scores())
    assert torch.equal(first.latents, got.latents)  # the candidate's initial noise either way


def test_score_step_on_wan_separate_cfg_calls():
    pipe, kw = T.tiny_wan_pipeline()
    assert kw["num_inference_steps"] == 2 and kw["guidance_scale"] > 1
    got = select_noise(pipe, None, cfg(3, score_step=1), seeds=[1], **kw)
    with AttentionProbe(pipe.transformer, k=3) as probe:
        probe.on_model_call = lambda call, batch: setattr(probe, "armed", call == 2)  # step 1, cond call
        latent_output(pipe, kw, seed=1)
    assert probe.call_batch_sizes == [1, 1, 1, 1]
    want = torch.stack([v.mean(-1) for v in probe.scores(2).values()], 1)
    np.testing.assert_allclose(got.layer_scores(), want.numpy(), atol=1e-6)


def test_uncond_branch_differs_from_cond(toy):
    cond = select_noise(toy, PROMPT, cfg(4, depth=1), seeds=[0, 1])
    uncond = select_noise(toy, PROMPT, cfg(4, depth=1, branch="uncond"), seeds=[0, 1])
    assert not np.allclose(cond.scores.bansa, uncond.scores.bansa)


def test_winner_latents_are_what_the_pipeline_draws(real):
    name, pipe, kw = real
    res = select_noise(pipe, None, cfg(3, depth=1), seeds=[11, 12, 13], **kw)
    captured = {}
    original = pipe.prepare_latents

    def spy(*a, **k):
        captured["latents"] = out = original(*a, **k)
        return out

    pipe.prepare_latents = spy
    try:
        latent_output(pipe, kw, seed=res.winner_seed, num_inference_steps=1)
    finally:
        del pipe.prepare_latents
    sigma = getattr(pipe.scheduler, "init_noise_sigma", 1.0)
    assert torch.equal(res.latents * sigma, captured["latents"]), name


def test_generate_with_anse_end_to_end(real):
    name, pipe, kw = real
    gen = generate_with_anse(pipe, None, cfg(3), output_type="latent", **kw, seeds=[5, 6, 7])
    out, res = gen, gen.selection
    assert len(res.scores) == 3 and res.scores.winner.sum() == 1
    assert torch.equal(out.frames, latent_output(pipe, kw, seed=res.winner_seed)), name


def test_generate_with_anse_decodes_through_a_vae():
    """With a (tiny, random) CogVideoX VAE the winner is decoded to pixel frames, exactly the
    video the pipeline makes from the winning seed."""
    pipe, kw = T.tiny_cogvideox_pipeline(vae=True)
    gen = generate_with_anse(pipe, None, cfg(3), output_type="pt", **kw, seeds=[5, 6])
    out, res = gen, gen.selection
    assert out.frames.shape == (1, 9, 3, 32, 32)
    again = pipe(generator=torch.Generator().manual_seed(res.winner_seed), output_type="pt", **kw).frames
    assert torch.equal(out.frames, again)


def test_wan_scores_each_cfg_call():
    pipe, kw = T.tiny_wan_pipeline()
    with AttentionProbe(pipe.transformer, k=3) as probe:
        latent_output(pipe, kw, num_inference_steps=1)
    assert probe.call_batch_sizes == [1, 1]  # cond, then uncond
    assert set(probe.scores(0)) == set(probe.scores(1)) == set(range(2))
    cond = select_noise(pipe, None, cfg(3), seeds=[1, 2], **kw)
    uncond = select_noise(pipe, None, cfg(3, branch="uncond"), seeds=[1, 2], **kw)
    assert not np.allclose(cond.scores.bansa, uncond.scores.bansa)


def test_toy_generation_uses_winner(toy):
    gen = generate_with_anse(toy, PROMPT, cfg(3, depth=1), num_inference_steps=2, seeds=[0, 1, 2])
    out, res = gen, gen.selection
    ref = toy(PROMPT, num_inference_steps=2, generator=torch.Generator().manual_seed(res.winner_seed)).frames
    np.testing.assert_array_equal(out.frames, ref)


def test_calibrate_depth(toy):
    cal = calibrate_depth(toy, [PROMPT, "a blue square moving up"], config=cfg(3), seeds=[0, 1, 2, 3])
    assert list(cal.curve.depth) == [1, 2, 3]
    assert cal.curve.r_pooled.iloc[-1] == pytest.approx(1.0)
    assert cal.d_star is not None and 1 <= cal.d_star <= 3
    assert len(cal.scores) == 8


# --- errors ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config, kwargs, match", [
    (dict(num_masks=1), {}, r"num_masks \(K\) must be an integer >= 2 .*got 1"),
    (dict(drop_prob=1.0), {}, r"drop_prob must be a probability in \(0, 1\) .*got 1.0"),
    (dict(num_candidates=0), {}, r"num_candidates \(M\) must be an integer >= 1, got 0"),
    (dict(layers=[0, 9]), {}, r"layer indices \[9\] out of range: this model has 3 attention layers"),
    (dict(depth=4), {}, r"depth=4 \(score layers 1..d\) must be in 1..3"),
    (dict(depth=0), {}, r"depth must be an integer >= 1 .*got 0"),
    (dict(depth=2, layers=[0]), {}, r"give depth .* or layers .*not both"),
    (dict(branch="both"), {}, r"branch must be one of cond, uncond, got 'both'"),
    (dict(branch="uncond"), dict(guidance_scale=1.0), r"needs classifier-free guidance"),
    (dict(score_step=25), {}, r"score_step=25 must be an integer step index in 0..24"),
    (dict(score_step=-1), {}, r"score_step must be an integer step index >= 0 .*got -1"),
    (dict(score_step=5), dict(num_inference_steps=5), r"score_step=5 must be an integer step index in 0..4"),
    ({}, dict(k=3), r"k= is not a pipeline argument; select_noise takes it in the config: "
                    r"AnseConfig\(bansa=BansaConfig\(num_masks=...\)\)"),
    ({}, dict(layers=2), r"layers= is not a pipeline argument.*AnseConfig\(depth=d\)"),
])
def test_selection_errors_name_the_bad_value(toy, config, kwargs, match):
    with pytest.raises(ValueError, match=match):
        select_noise(toy, PROMPT, AnseConfig().replace(**config), **kwargs)


def test_generate_with_anse_refuses_latents_and_config_settings(toy):
    with pytest.raises(ValueError, match="latents= cannot be given"):
        generate_with_anse(toy, PROMPT, latents=torch.zeros(1))
    with pytest.raises(ValueError, match="drop_prob= is not a pipeline argument; generate_with_anse takes it"):
        generate_with_anse(toy, PROMPT, drop_prob=0.5)
    with pytest.raises(ValueError, match="layers takes 0-based layer indices .*got 2; .*range\\(d\\)"):
        AttentionProbe(toy.transformer, layers=2)


def test_candidate_noise_is_the_pipelines_cpu_generator_draw(toy):
    """Seeds mean the same noise everywhere: candidate i's latents are what the pipeline draws
    with torch.Generator("cpu").manual_seed(seed), whatever the batch."""
    sel = select_noise(toy, PROMPT, cfg(2, depth=1, batch_size=2),
                       seeds=[7, 8, 9])
    for i, seed in enumerate([7, 8, 9]):
        want = toy.prepare_latents(1, torch.float32, "cpu", torch.Generator("cpu").manual_seed(seed))
        assert torch.equal(sel.candidate_latents[i : i + 1], want)
    assert sel.config.num_candidates == 3 and sel.seeds == [7, 8, 9]


def test_selection_output_is_a_diffusers_base_output(toy):
    from diffusers.utils import BaseOutput

    sel = select_noise(toy, PROMPT, cfg(2, depth=1), seeds=[1, 2])
    assert isinstance(sel, BaseOutput) and sel["winner_seed"] == sel.winner_seed
    out = generate_with_anse(toy, PROMPT, cfg(2, depth=1), seeds=[1, 2],
                             num_inference_steps=2)
    assert isinstance(out, BaseOutput) and out.selection.winner_seed == sel.winner_seed
    assert out.frames.shape[:2] == (1, 8)  # (B, F, H, W, 3) numpy frames


def test_unsupported_model_lists_supported():
    with pytest.raises(ValueError, match="unsupported model Linear; supported: " + ", ".join(FAMILIES)):
        AttentionProbe(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="attention='joint' is not available for WanTransformer3DModel"):
        AttentionProbe(T.tiny_wan_pipeline()[0].transformer, attention="joint")


def test_probe_refuses_attention_it_cannot_see():
    """A backend other than torch's SDPA, set per processor or globally, is an error naming the fix
    (Wan's processor goes through diffusers' dispatcher; CogVideoX's calls SDPA itself and is unaffected)."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    from anse_lib.probe import _dispatches

    cog, cog_kw = T.tiny_cogvideox_pipeline(num_layers=1)
    assert not _dispatches(type(cog.transformer.transformer_blocks[0].attn1.processor))
    cog.transformer.transformer_blocks[0].attn1.processor._attention_backend = "flash"  # has no effect on it
    assert len(select_noise(cog, None, AnseConfig(), seeds=[0, 1], **cog_kw).scores) == 2
    pipe, kw = T.tiny_wan_pipeline()
    model = pipe.transformer
    processor = model.blocks[0].attn1.processor
    assert _dispatches(type(processor))
    processor._attention_backend = "flash"
    with pytest.raises(ValueError, match="attention backend 'flash'.*reset_attention_backend"):
        select_noise(pipe, None, AnseConfig(num_candidates=2), seeds=[0, 1], **kw)
    processor._attention_backend = "_native_math"  # still torch's SDPA: scored as usual
    assert len(select_noise(pipe, None, AnseConfig(), seeds=[0, 1], **kw).scores) == 2
    processor._attention_backend = None
    before = _AttentionBackendRegistry._active_backend
    _AttentionBackendRegistry.set_active_backend("sage")
    try:
        with pytest.raises(ValueError, match="'sage'"):
            select_noise(pipe, None, AnseConfig(), seeds=[0, 1], **kw)
    finally:
        _AttentionBackendRegistry.set_active_backend(before)


def test_probe_tolerates_model_cpu_offload():
    """Accelerate's offload hooks (enable_model_cpu_offload, here with the CPU as the 'accelerator') change no score."""
    pipe, kw = T.tiny_cogvideox_pipeline(num_layers=1)
    before = select_noise(pipe, None, AnseConfig(), seeds=[0, 1], **kw).scores.bansa.to_numpy()
    pipe.enable_model_cpu_offload(device="cpu")
    after = select_noise(pipe, None, AnseConfig(), seeds=[0, 1], **kw).scores.bansa.to_numpy()
    np.testing.assert_array_equal(before, after)


def test_probe_refuses_a_compiled_denoiser():
    pipe, kw = T.tiny_cogvideox_pipeline(num_layers=1)
    pipe.transformer = torch.compile(pipe.transformer)  # a wrapper: nothing is compiled until it runs
    with pytest.raises(ValueError, match="torch.compile'd"):
        select_noise(pipe, None, AnseConfig(), seeds=[0, 1], **kw)
    pipe, kw = T.tiny_cogvideox_pipeline(num_layers=1)
    pipe.transformer.transformer_blocks[0].compile()  # in place, one block
    with pytest.raises(ValueError, match="a block of it"):
        select_noise(pipe, None, AnseConfig(), seeds=[0, 1], **kw)
