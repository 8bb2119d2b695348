"""The toy world: renderer, prompt grammar, tokenizer, pipeline round trip, checksums, training."""
import os

import numpy as np
import pytest
import torch

from anse_lib.provenance import ChecksumError, repo_relative, verify_manifest, write_manifest
from anse_lib.toyworld import (
    ObjectSpec,
    ToyVideoPipeline,
    WordTokenizer,
    build_components,
    load_toy_pipeline,
    make_split,
    parse_prompt,
    render,
    sample_prompts,
)
from anse_lib.toyworld.pipeline import DEFAULT_GUIDANCE_RESCALE
from anse_lib.toyworld.world import COLOURS, MOTIONS, SHAPES, VOCAB


# --- grammar and tokenizer ---------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "a big red circle moving left",
    "a blue square moving up and a small green triangle moving right",
    "a yellow triangle staying still on a gray background",
])
def test_prompts_round_trip(text):
    spec = parse_prompt(text)
    assert spec.text == text
    assert parse_prompt(spec.text) == spec


def test_unknown_word_names_it_and_lists_vocabulary():
    with pytest.raises(ValueError, match=r"unknown word 'purple'.*vocabulary is: a and on") as err:
        parse_prompt("a purple circle moving left")
    assert "magenta" in str(err.value)
    with pytest.raises(ValueError, match="unknown word 'hexagon'"):
        WordTokenizer()("a red hexagon moving left")


@pytest.mark.parametrize("text, fragment", [
    ("a red circle moving", "expected a direction"),
    ("red circle moving left", "expected 'a'"),
    ("a red circle moving left and a red square moving up", "differ in colour"),
    ("a red circle moving still", "expected a direction"),
])
def test_grammar_errors_say_where(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_prompt(text)


def test_bad_attribute_named():
    with pytest.raises(ValueError, match="unknown shape 'star'; allowed: circle, square, triangle"):
        ObjectSpec(colour="red", shape="star", motion="left")


def test_tokenizer_pads_and_encodes_empty_prompt_as_padding():
    tok = WordTokenizer()
    ids = tok(["a red circle moving left", ""])["input_ids"]
    assert ids.shape == (2, 20)
    assert ids[0, :5].tolist() == [VOCAB.index(w) for w in "a red circle moving left".split()]
    assert ids[0, 5:].eq(0).all() and ids[1].eq(0).all()


def test_split_holds_out_combinations_not_attributes():
    split = make_split(0.2, seed=0)
    assert len(split.held_out) == round(0.2 * len(COLOURS) * len(SHAPES) * len(MOTIONS))
    for i, values in enumerate((COLOURS, SHAPES, MOTIONS)):
        seen = {t[i] for t in set(
            (c, s, m) for c in COLOURS for s in SHAPES for m in MOTIONS) - split.held_out}
        assert seen == set(values)  # every attribute value is still seen in training
    assert type(split).from_json(split.to_json()) == split
    rng = np.random.default_rng(0)
    assert all(split.is_held_out(p) for p in sample_prompts(20, rng, split, held_out=True))
    assert not any(split.is_held_out(p) for p in sample_prompts(20, rng, split, held_out=False))


# --- renderer ------------------------------------------------------------------------------------------
def test_render_shape_range_and_determinism():
    specs = sample_prompts(32, np.random.default_rng(0))
    a = render(specs, np.random.default_rng(1))
    b = render(specs, np.random.default_rng(1))
    assert a.video.shape == (32, 8, 3, 32, 32)
    assert a.video.min() >= -1 and a.video.max() <= 1
    assert torch.equal(a.video, b.video)


def test_render_motion_and_size_follow_the_prompt():
    rb = render([parse_prompt(p) for p in ["a big red circle moving right", "a small red circle moving up",
                                           "a red square staying still"]], np.random.default_rng(0))
    c = rb.centres[:, 0]  # (B, F, 2)
    assert c[0, -1, 0] - c[0, 0, 0] == pytest.approx(12.0)  # 6 px per 16 px of frame
    assert c[1, -1, 1] - c[1, 0, 1] == pytest.approx(-12.0)
    assert np.allclose(c[2, -1], c[2, 0])
    red = torch.tensor([1.0, 0.1, 0.1]) * 2 - 1
    area = lambda i: ((rb.video[i, 0].permute(1, 2, 0) - red).norm(dim=-1) < 0.5).sum().item()
    assert area(0) > 2 * area(1)  # big vs small


def test_two_objects_do_not_overlap_unless_moving_at_right_angles():
    import importlib

    render_module = importlib.import_module("anse_lib.toyworld.render")
    rng = np.random.default_rng(0)
    specs = [s for s in sample_prompts(300, rng) if len(s.objects) == 2][:60]
    rb = render(specs, rng)
    gap = np.abs(rb.centres[:, 0] - rb.centres[:, 1]).max(-1).min(-1)  # (B,) closest approach, Chebyshev
    axis = {"left": "x", "right": "x", "up": "y", "down": "y", "still": None}
    for spec, sizes, g in zip(specs, rb.sizes, gap):
        axes = {axis[o.motion] for o in spec.objects}
        if axes == {"x", "y"}:
            continue  # perpendicular movers may have no separating placement
        need = (render_module.HALF_EXTENT[sizes[0]] + render_module.HALF_EXTENT[sizes[1]]) * 2 + 1
        assert g >= need, (spec.text, g, need)


def test_render_rejects_bad_resolution():
    with pytest.raises(ValueError, match="multiple of 16"):
        render(sample_prompts(1, np.random.default_rng(0)), np.random.default_rng(0), resolution=20)


# --- pipeline ---------------------------------------------------------------------------------------------
def tiny_pipeline(seed=0):
    return ToyVideoPipeline(**build_components(seed=seed, transformer_config=dict(num_layers=2)))


def test_pipeline_save_load_generate(tmp_path):
    pipe = tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path)
    write_manifest(tmp_path, command="test", config={})
    loaded = load_toy_pipeline(tmp_path)
    kw = dict(prompt="a big red circle moving left", num_inference_steps=3, guidance_scale=3.0)
    a = pipe(**kw, generator=torch.Generator().manual_seed(0)).frames
    b = loaded(**kw, generator=torch.Generator().manual_seed(0)).frames
    assert a.shape == (1, 8, 32, 32, 3) and a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, b)


def test_pipeline_latents_and_prompt_embeds_paths():
    pipe = tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(3)
    drawn = pipe.prepare_latents(2, torch.float32, "cpu", generator=torch.Generator().manual_seed(3))
    out_seed = pipe(["a red circle moving up", "a blue square moving down"], num_inference_steps=2,
                    generator=g, output_type="pt").frames
    out_latents = pipe(["a red circle moving up", "a blue square moving down"], num_inference_steps=2,
                       latents=drawn, output_type="pt").frames
    assert torch.equal(out_seed, out_latents)
    emb, neg = pipe.encode_prompt("a red circle moving up", do_classifier_free_guidance=True)
    via_embeds = pipe(prompt_embeds=emb, negative_prompt_embeds=neg, num_inference_steps=2,
                      latents=drawn[:1], output_type="pt").frames
    via_text = pipe("a red circle moving up", num_inference_steps=2, latents=drawn[:1], output_type="pt").frames
    assert torch.equal(via_embeds, via_text)
    # guidance_rescale (diffusers' rescale_noise_cfg): 0 is plain CFG, > 0 changes the video
    cfg_kw = dict(num_inference_steps=2, latents=drawn[:1], output_type="pt", guidance_scale=4.0)
    default = pipe("a red circle moving up", **cfg_kw).frames
    assert torch.equal(pipe("a red circle moving up", guidance_rescale=DEFAULT_GUIDANCE_RESCALE, **cfg_kw).frames,
                       default)
    plain_cfg = pipe("a red circle moving up", guidance_rescale=0.0, **cfg_kw).frames
    rescaled = pipe("a red circle moving up", guidance_rescale=0.7, **cfg_kw).frames
    assert not torch.equal(plain_cfg, rescaled)
    with pytest.raises(ValueError, match=r"guidance_rescale must be in \[0, 1\], got 1.5"):
        pipe("a red circle moving up", guidance_rescale=1.5)
    with pytest.raises(ValueError, match="output_type"):
        pipe("a red circle moving up", output_type="gif")
    with pytest.raises(ValueError, match="latents have shape"):
        pipe("a red circle moving up", latents=torch.zeros(1, 8, 3, 16, 16))


def test_checksum_mismatch_is_a_clear_error(tmp_path):
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path)
    write_manifest(tmp_path, command="test", config={})
    weights = tmp_path / "transformer" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="SHA-256 mismatch for .*diffusion_pytorch_model.safetensors"):
        load_toy_pipeline(tmp_path)
    with pytest.raises(FileNotFoundError, match="no toy model"):
        load_toy_pipeline(tmp_path / "missing")


# --- training --------------------------------------------------------------------------------------------
def test_three_training_steps_resume_exactly(tmp_path):
    from anse_lib.toyworld import train

    cfg = dict(steps=3, batch_size=2, warmup_steps=2, seed=1, num_layers=1)  # 1 layer: fast
    straight = train.Trainer(train.TrainConfig(**cfg), tmp_path / "a")
    straight.run(ckpt_every=10, progress=False)
    interrupted = train.Trainer(train.TrainConfig(**{**cfg, "steps": 2}), tmp_path / "b")
    interrupted.run(ckpt_every=1, progress=False)
    resumed = train.Trainer(train.TrainConfig(**cfg), tmp_path / "b")
    assert resumed.step == 2
    resumed.run(ckpt_every=10, progress=False)
    for (n, p), (_, q) in zip(straight.ema.state_dict().items(), resumed.ema.state_dict().items()):
        assert torch.equal(p, q), n
    with pytest.raises(ValueError, match="only --steps may change"):
        train.Trainer(train.TrainConfig(**{**cfg, "lr": 0.5}), tmp_path / "b")
    resumed.export(tmp_path / "model", command="test")
    manifest = verify_manifest(tmp_path / "model")
    assert manifest["trained_steps"] == 3 and "split.json" in manifest["files"]
    assert load_toy_pipeline(tmp_path / "model").transformer.config.num_layers == 1


def test_training_continues_from_an_exported_model(tmp_path):
    from anse_lib.provenance import read_manifest
    from anse_lib.toyworld import train

    cfg = dict(batch_size=2, warmup_steps=2, seed=1, autocast="none", num_layers=1)
    first = train.Trainer(train.TrainConfig(steps=2, **cfg), tmp_path / "a")
    first.run(ckpt_every=10, progress=False)
    first.export(tmp_path / "model", command="first")
    cont = train.Trainer(train.TrainConfig(steps=3, init_from=str(tmp_path / "model"), **cfg), tmp_path / "b")
    assert cont.step == cont.base_step == 2
    for (n, p), (_, q) in zip(first.ema.state_dict().items(), cont.modules.state_dict().items()):
        assert torch.equal(p, q), n  # starts from the exported (EMA) weights
    assert cont.lr_at(2) == pytest.approx(cont.cfg.lr / 2)  # the fresh optimiser warms up again
    cont.run(ckpt_every=10, progress=False)
    assert cont.step == 3
    cont.export(tmp_path / "model2", command="second")
    manifest = read_manifest(tmp_path / "model2")
    assert manifest["init_from"]["trained_steps"] == 2 and manifest["init_from"]["command"] == "first"
    # the recorded chain replays as written: --init-from names what the previous command exported
    chained = train.reproduce_command(cont.cfg, "runs/b", "data/next", 3,
                                      {"command": "python -m anse_lib.toyworld.train --steps 2 --export data/m"})
    assert chained == ("python -m anse_lib.toyworld.train --steps 2 --export data/m && "
                       "python -m anse_lib.toyworld.train --out runs/b --steps 3 --seed 1 --batch-size 2 "
                       "--warmup-steps 2 --autocast none --init-from data/m --num-layers 1 --export data/next")
    with pytest.raises(ValueError, match="already has 2 steps; got steps=2"):
        train.Trainer(train.TrainConfig(steps=2, init_from=str(tmp_path / "model"), **cfg), tmp_path / "c")
    with pytest.raises(ValueError, match="autocast must be one of .*'fp16'"):
        train.TrainConfig(steps=2, autocast="fp16").validate()
    with pytest.raises(ValueError, match=r"has architecture .*'num_layers': 1.* asks for .*'num_layers': 2"):
        train.Trainer(train.TrainConfig(steps=3, init_from=str(tmp_path / "model"), **{**cfg, "num_layers": 2}),
                      tmp_path / "d")
    with pytest.raises(ValueError, match="multiple of 16 .* and of patch_size >= 1, got resolution=16, patch_size=3"):
        train.TrainConfig(resolution=16, patch_size=3).validate()


def test_rope_and_encoderless_text_train_export_and_generate(tmp_path):
    """--positions rope (CogVideoX-5B's 3D RoPE) and --text-layers 0 reach the model, its
    manifest and every forward: training, the pipeline and predicted_x0 pass image_rotary_emb."""
    from anse_lib.provenance import read_manifest
    from anse_lib.toyworld import train
    from anse_lib.toyworld.model import rotary_embeddings
    from anse_lib.toyworld.sensitivity import predicted_x0

    cfg = dict(batch_size=2, warmup_steps=1, seed=1, autocast="none", num_layers=1, resolution=16, patch_size=2,
               positions="rope", text_layers=0)
    trainer = train.Trainer(train.TrainConfig(steps=2, **cfg), tmp_path / "a")
    assert trainer.rotary_emb[0].shape == (8 * 8 * 8, 32)  # (F * H/p * W/p, head dim)
    assert not trainer.transformer.patch_embed.use_positional_embeddings  # RoPE replaces the sin-cos table
    trainer.run(ckpt_every=10, progress=False)
    trainer.export(tmp_path / "model", command="rope")
    pipe = load_toy_pipeline(tmp_path / "model")
    assert pipe.transformer.config.use_rotary_positional_embeddings and pipe.text_encoder.config.num_layers == 0
    assert read_manifest(tmp_path / "model")["config"]["text_encoder"]["num_layers"] == 0
    video = pipe("a red circle moving left", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames
    assert video.shape == (1, 8, 16, 16, 3)
    noisy = torch.randn(1, 8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    x0 = predicted_x0(pipe, noisy, torch.tensor([500]), ["a red circle moving left"])
    # without the rotary embedding the same transformer computes something else
    emb = pipe.text_encoder(pipe.tokenizer(["a red circle moving left"])["input_ids"])
    with torch.no_grad():
        plain = pipe.transformer(hidden_states=noisy, encoder_hidden_states=emb, timestep=torch.tensor([500]),
                                 return_dict=False)[0]
        roped = pipe.transformer(hidden_states=noisy, encoder_hidden_states=emb, timestep=torch.tensor([500]),
                                 image_rotary_emb=rotary_embeddings(pipe.transformer), return_dict=False)[0]
    a = pipe.scheduler.alphas_cumprod[500]
    assert torch.allclose(x0, a.sqrt() * noisy - (1 - a).sqrt() * roped, atol=1e-6)
    assert not torch.allclose(plain, roped, atol=1e-4)
    assert rotary_embeddings(build_components(transformer_config=dict(num_layers=1))["transformer"]) is None
    with pytest.raises(ValueError, match=r"asks for .*'use_rotary_positional_embeddings': False"):
        train.Trainer(train.TrainConfig(steps=3, init_from=str(tmp_path / "model"), **{**cfg, "positions": "sincos"}),
                      tmp_path / "b")
    with pytest.raises(ValueError, match=r"has architecture .*'text_layers': 0.* asks for .*'text_layers': 2"):
        train.Trainer(train.TrainConfig(steps=3, init_from=str(tmp_path / "model"), **{**cfg, "text_layers": 2}),
                      tmp_path / "c")
    with pytest.raises(ValueError, match=r"positions must be one of \('sincos', 'rope'\), got 'alibi'"):
        train.TrainConfig(positions="alibi").validate()
    with pytest.raises(ValueError, match="text_layers must be >= 0 .*got -1"):
        train.TrainConfig(text_layers=-1).validate()


def test_timestep_bias_weights_and_errors():
    from anse_lib.toyworld import train

    w = train.timestep_weights(train.TrainConfig(timestep_bias_strategy="later", timestep_bias_portion=0.3,
                                                 timestep_bias_multiplier=3.0), 1000)
    assert w[:700].eq(1).all() and w[700:].eq(3).all()  # high timesteps are the noisy ones
    w = train.timestep_weights(train.TrainConfig(timestep_bias_strategy="earlier", timestep_bias_portion=0.1,
                                                 timestep_bias_multiplier=2.0), 1000)
    assert w[:100].eq(2).all() and w[100:].eq(1).all()
    assert train.timestep_weights(train.TrainConfig(), 1000).eq(1).all()
    with pytest.raises(ValueError, match="timestep_bias_strategy must be one of .*got 'late'"):
        train.TrainConfig(timestep_bias_strategy="late").validate()
    with pytest.raises(ValueError, match=r"timestep_bias_portion must be in \(0, 1\], got 1.5"):
        train.TrainConfig(timestep_bias_portion=1.5).validate()
    with pytest.raises(ValueError, match="timestep_bias_multiplier must be > 0, got 0"):
        train.TrainConfig(timestep_bias_multiplier=0.0).validate()
    with pytest.raises(ValueError, match="decay_steps must be >= 0, got -1"):
        train.TrainConfig(decay_steps=-1).validate()


def test_learning_rate_warms_up_and_cools_down(tmp_path):
    from anse_lib.toyworld import train

    cfg = train.TrainConfig(steps=10, lr=1.0, warmup_steps=2, decay_steps=4, num_layers=1)
    t = train.Trainer(cfg, tmp_path / "run")
    assert [t.lr_at(s) for s in range(10)] == pytest.approx([0.5, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25])


def test_promote_moves_a_staged_model_and_rewrites_its_export(tmp_path, monkeypatch):
    from anse_lib.provenance import model_hash, read_manifest
    from anse_lib.toyworld import train

    cfg = train.TrainConfig(steps=2, batch_size=2, warmup_steps=2, seed=1, autocast="none", num_layers=1,
                            timestep_bias_strategy="later", timestep_bias_multiplier=4.0)
    trainer = train.Trainer(cfg, tmp_path / "run")
    trainer.run(ckpt_every=10, progress=False)
    cmd = train.reproduce_command(cfg, "runs/x", str(tmp_path / "staged"), 2,
                                  {"command": "python -m anse_lib.toyworld.train --steps 1 --export data/m"})
    assert "--timestep-bias-strategy later --timestep-bias-multiplier 4.0" in cmd
    trainer.export(tmp_path / "staged", command=cmd)
    trainer.export(tmp_path / "shipped", command="older")
    staged_hash = model_hash(tmp_path / "staged")
    staged_manifest = (tmp_path / "staged" / "MANIFEST.json").read_text()
    real_replace = os.replace

    def failing_replace(src, dst):
        if os.fspath(src) == os.fspath(tmp_path / "staged"):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(train.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        train.promote(tmp_path / "staged", tmp_path / "shipped")
    monkeypatch.setattr(train.os, "replace", real_replace)
    assert read_manifest(tmp_path / "shipped")["command"] == "older"  # a failed move leaves both as they were
    assert (tmp_path / "staged" / "MANIFEST.json").read_text() == staged_manifest
    train.main(["--promote", str(tmp_path / "staged"), "--export", str(tmp_path / "shipped")])
    assert not (tmp_path / "staged").exists()
    assert model_hash(tmp_path / "shipped") == staged_hash
    manifest = read_manifest(tmp_path / "shipped")
    assert manifest["command"].startswith("python -m anse_lib.toyworld.train --steps 1 --export data/m && ")
    assert manifest["command"].endswith(f"--export {tmp_path / 'shipped'}")
    assert "moved to" in manifest["promoted"]
    assert repo_relative(train.DEFAULT_MODEL_DIR) == "data/toy_model"  # what the shipped chain records
    assert load_toy_pipeline(tmp_path / "shipped").transformer.config.num_layers == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "shipped"]  # nothing left behind


def test_evaluation_loss_is_fixed_data_per_band():
    from anse_lib.toyworld import train

    pipe = tiny_pipeline()
    split = train.make_split()
    bands = {"high": (900, 1000), "low": (0, 300)}
    a = train.evaluation_loss(pipe, split, batches=1, batch_size=2, bands=bands)
    assert a == train.evaluation_loss(pipe, split, batches=1, batch_size=2, bands=bands)  # same data, same loss
    assert set(a) == {"high", "low", "uniform"} and all(v > 0 for v in a.values())
    assert a["uniform"] == pytest.approx((100 * a["high"] + 300 * a["low"]) / 400)
    # one band alone sees the same videos, noise and timesteps as it does beside another
    assert train.evaluation_loss(pipe, split, batches=1, batch_size=2, bands={"low": (0, 300)})["low"] == a["low"]


def test_training_step_loss_is_prediction_loss_of_its_batch(tmp_path):
    """train_step, evaluation_loss and predicted_x0 share one model call; the step's loss is that objective."""
    from anse_lib.toyworld import train
    from anse_lib.toyworld.model import denoiser_output

    cfg = train.TrainConfig(steps=1, batch_size=2, num_layers=1, resolution=16, patch_size=2, text_layers=0,
                            warmup_steps=1, cond_dropout=0.0, timestep_bias_strategy="none", autocast="none")
    trainer = train.Trainer(cfg, tmp_path / "run")
    prompts, x0 = train.make_batch(0, cfg, trainer.split)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003)
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(0, trainer.scheduler.config.num_train_timesteps, (x0.shape[0],), generator=gen)  # no bias
    with torch.no_grad():
        expected = train.prediction_loss(trainer.transformer, trainer.text_encoder, trainer.tokenizer,
                                         trainer.scheduler, prompts, x0, noise, t).item()
        velocity = trainer.scheduler.get_velocity(x0, noise, t)
        out = denoiser_output(trainer.transformer, trainer.text_encoder, trainer.tokenizer,
                              trainer.scheduler.add_noise(x0, noise, t), t, prompts)
    assert expected == pytest.approx(torch.nn.functional.mse_loss(out, velocity).item(), rel=1e-6)
    assert trainer.train_step() == expected  # the step before its update: the same batch, weights and loss
    with pytest.raises(ValueError, match="one prompt per video: got 1 prompts for 2 videos"):
        denoiser_output(trainer.transformer, trainer.text_encoder, trainer.tokenizer, x0, t, prompts[:1])


def test_describe_model_names_folder_steps_and_hash(tmp_path):
    import shutil

    from anse_lib.provenance import model_hash, read_manifest, save_manifest
    from anse_lib.toyworld import DEFAULT_MODEL_DIR, describe_model

    steps = read_manifest(DEFAULT_MODEL_DIR)["trained_steps"]
    assert describe_model() == (f"toy model data/toy_model: {steps:,} training steps, "
                                f"model hash {model_hash(DEFAULT_MODEL_DIR)[:12]}")
    copy = tmp_path / "copy"
    shutil.copytree(DEFAULT_MODEL_DIR, copy)
    assert describe_model(copy).startswith(f"toy model {copy.resolve()}: ")  # outside the repository: absolute
    manifest = read_manifest(copy)
    del manifest["trained_steps"]
    save_manifest(copy, manifest)
    with pytest.raises(ValueError, match="records no trained_steps"):
        describe_model(copy)


def test_sd_schedule_twin_trains_epsilon_without_zero_snr(tmp_path):
    """--schedule sd: SD 1.5's betas without the zero-SNR rescale (alpha_bar_T ~ 0.0047), epsilon target."""
    from anse_lib.toyworld import train
    from anse_lib.toyworld.model import denoiser_output

    cfg = train.TrainConfig(steps=1, batch_size=2, num_layers=1, resolution=16, patch_size=2, text_layers=0,
                            warmup_steps=1, cond_dropout=0.0, timestep_bias_strategy="none", autocast="none",
                            schedule="sd")
    trainer = train.Trainer(cfg, tmp_path / "run")
    sched = trainer.scheduler
    assert sched.config.prediction_type == "epsilon" and not sched.config.rescale_betas_zero_snr
    assert float(sched.alphas_cumprod[-1]) == pytest.approx(0.0047, abs=2e-4)
    sched.set_timesteps(25)
    assert sched.timesteps[0] == 961 and sched.timesteps[-1] == 1  # leading spacing, steps_offset 1
    prompts, x0 = train.make_batch(0, cfg, trainer.split)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003)
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(0, sched.config.num_train_timesteps, (x0.shape[0],), generator=gen)
    with torch.no_grad():
        out = denoiser_output(trainer.transformer, trainer.text_encoder, trainer.tokenizer,
                              sched.add_noise(x0, noise, t), t, prompts)
    assert trainer.train_step() == pytest.approx(torch.nn.functional.mse_loss(out, noise).item(), rel=1e-6)
    with pytest.raises(ValueError, match="schedule must be one of zero_snr, sd, got 'flow'"):
        train.TrainConfig(schedule="flow").validate()
