"""ANSE: choose the initial noise with the lowest BANSA, then generate from it.

Scoring uses the pipeline's own ``__call__`` so that every family prepares its inputs
(text embeddings, latents, timesteps, RoPE, masks, CFG batching) exactly as it would at
the first denoising step: candidates are run as one batch with one ``torch.Generator``
per seed (so each candidate's latents are exactly what the pipeline draws for that seed
alone), an armed :class:`~anse_lib.probe.AttentionProbe` scores the attention of the
first transformer call, and :class:`~anse_lib.probe.StopForward` ends the pass after
the last scored layer of the branch that is scored. No denoising step is completed.

``score_step=s`` scores the transformer call of denoising step ``s`` instead (0-based; 0,
the first, is the default and the paper's setting): the pipeline's own sampler runs the
first ``s`` steps in full, with the pipeline's guidance, and the probe, with the same
masks, scores step ``s``'s call.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from diffusers.utils import BaseOutput
from tqdm.auto import tqdm

from .config import AnseConfig
from .probe import AttentionProbe, StopForward, attention_layers

#: what used to be keyword arguments of select_noise -> where they live now
_MOVED = {
    **{name: f"AnseConfig(bansa=BansaConfig({name}=...))" for name in ("num_masks", "drop_prob", "mask_seed",
                                                                       "row_sample")},
    **{name: f"AnseConfig({name}=...)" for name in ("num_candidates", "depth", "branch", "score_step", "attention",
                                                    "rows", "batch_size", "block_rows", "bansa")},
    "k": "AnseConfig(bansa=BansaConfig(num_masks=...))",
    "layers": "AnseConfig(depth=d) or AnseConfig(layers=[...])",
    "keep_rows": "capture_attention (per-row scores of one candidate)",
    "selection": "the config argument",
}


def denoiser(pipe) -> torch.nn.Module:
    """The pipeline's denoising network (``transformer`` or ``unet``)."""
    model = getattr(pipe, "transformer", None)
    model = getattr(pipe, "unet", None) if model is None else model  # no `or`: a compiled module has no truth value
    if model is None:
        raise ValueError(f"{type(pipe).__name__} has neither a transformer nor a unet to probe")
    return model


@dataclass
class AnseSelectionOutput(BaseOutput):
    """What :func:`select_noise` found (a diffusers ``BaseOutput``).

    Args:
        winner_seed: the seed of the lowest-BANSA candidate.
        latents: ``(1, ...)`` the winner's initial latents exactly as the pipeline draws them
            for ``torch.Generator("cpu").manual_seed(winner_seed)`` (its ``latents=`` argument
            reproduces them).
        scores: one row per candidate: ``seed``, ``bansa`` (mean of the scored layers, nats),
            ``rank`` (1 = lowest), ``winner``, ``empty_rows`` and one ``layer_XX`` column per
            scored layer (mean over heads, nats).
        config: the :class:`~anse_lib.config.AnseConfig` used (``num_candidates`` as scored).
        layers: the 0-based layer indices scored.
        winner_index: the winner's row in ``scores``.
        prompt: the prompt (``None`` with ``prompt_embeds``).
        pipeline_kwargs: the pipeline settings that shaped the scored step (``num_inference_steps``
            and ``guidance_scale`` where given) and ``guidance``: whether the user's call runs CFG.
        seconds: wall-clock time of the selection.
        candidate_latents: ``(M, ...)`` every candidate's initial latents.
    """

    winner_seed: int
    latents: torch.Tensor
    scores: pd.DataFrame
    config: AnseConfig
    layers: list
    winner_index: int = 0
    prompt: str | None = None
    pipeline_kwargs: dict | None = None
    seconds: float = 0.0
    candidate_latents: torch.Tensor | None = None

    @property
    def seeds(self) -> list[int]:
        return self.scores["seed"].tolist()

    def layer_scores(self) -> np.ndarray:
        """``(M, L)`` per-layer scores of all candidates."""
        return self.scores[[f"layer_{i:02d}" for i in self.layers]].to_numpy()


@dataclass
class AnseGenerationOutput(BaseOutput):
    """What :func:`generate_with_anse` returns: the generated ``frames`` (the pipeline output's
    ``frames``, in its ``output_type``) and the ``selection`` (:class:`AnseSelectionOutput`)."""

    frames: object
    selection: AnseSelectionOutput


def _resolve_layers(model, depth: int | None, layers, attention) -> list[int]:
    """The scored layer indices: ``0..depth-1``, the given ``layers``, or (neither) every layer."""
    n = len(attention_layers(model, attention))
    if depth is not None:
        if not 1 <= depth <= n:
            raise ValueError(f"depth={depth} (score layers 1..d) must be in 1..{n} for this model")
        return list(range(int(depth)))
    if layers is None:
        return list(range(n))
    out = sorted(set(int(i) for i in layers))
    bad = [i for i in out if not 0 <= i < n]
    if bad or not out:
        raise ValueError(f"layer indices {bad or out} out of range: this model has {n} attention layers, 0..{n - 1}")
    return out


def _check_pipe_kwargs(pipe_kwargs: dict, entry: str):
    """A setting of the config given as a pipeline keyword is an error naming where it goes."""
    for key in pipe_kwargs:
        if key in _MOVED:
            raise ValueError(f"{key}= is not a pipeline argument; {entry} takes it in the config: {_MOVED[key]}")


def _cfg_setting(pipe, model, call_kwargs: dict) -> tuple[str, bool]:
    """``(name, active)``: the pipeline argument that sets classifier-free guidance, and whether
    this call runs an unconditional branch.

    Most video pipelines run CFG when ``guidance_scale > 1``. A model with guidance *embedded*
    (``config.guidance_embeds``, e.g. HunyuanVideo) takes ``guidance_scale`` as an input of
    every call instead; its pipeline runs a separate unconditional call only when
    ``true_cfg_scale > 1`` and a negative prompt is given.
    """
    embedded = bool(getattr(getattr(model, "config", None), "guidance_embeds", False))
    name = "true_cfg_scale" if embedded else "guidance_scale"
    value = call_kwargs.get(name)
    if value is None:
        value = call_default(pipe, name)
        value = 1.0 if value is None else value
    active = float(value) > 1.0
    if embedded:
        active = active and any(call_kwargs.get(k) is not None for k in ("negative_prompt", "negative_prompt_embeds"))
    return name, active


def call_default(pipe, name: str):
    """The value a pipeline call uses for argument ``name`` when none is given: its signature's
    default, or, where that is ``None``, the pipeline's ``guidance_defaults`` (the toy pipeline
    keeps each model's guidance there). ``None`` if neither says."""
    param = inspect.signature(pipe.__call__).parameters.get(name)
    value = param.default if param is not None and param.default is not inspect._empty else None
    if value is None:
        value = getattr(pipe, "guidance_defaults", {}).get(name)
    return value


def _draw_seeds(num_candidates, generator) -> list[int]:
    return torch.randint(0, 2**31 - 1, (num_candidates,), generator=generator).tolist()


def select_noise(
    pipe,
    prompt: str | None = None,
    config: AnseConfig | None = None,
    *,
    seeds: list[int] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    **pipe_kwargs,
) -> AnseSelectionOutput:
    """Score candidate initial noises by BANSA at the first denoising step; the lowest wins.

    Args:
        pipe: a diffusers video pipeline whose ``transformer`` or ``unet`` the probe
            supports (the toy pipeline, CogVideoX, Wan, LTX-Video, AnimateDiff, UNet3D,
            HunyuanVideo).
        prompt: the prompt, as the pipeline takes it (``None`` with ``prompt_embeds``).
        config: what to score, an :class:`~anse_lib.config.AnseConfig` (default: the paper's
            M = 10, K = 10, p = 0.2, every layer, the conditional branch, the first step).
        seeds: the candidate seeds (they set M). Default: ``config.num_candidates`` seeds drawn
            from ``generator``. Candidate i's noise is exactly what the pipeline draws for
            ``torch.Generator("cpu").manual_seed(seeds[i])``, drawn on the CPU and moved to the
            pipeline's device (diffusers' reproducibility convention), so a seed means the same
            noise on every device.
        generator: draws the candidate seeds when ``seeds`` is not given.
        progress: show a progress bar over the batches.
        **pipe_kwargs: the pipeline's own arguments that shape the first step
            (``num_inference_steps``, ``guidance_scale``, ``prompt_embeds``, ``height``,
            ``num_frames``, ...). ``"cond"`` at the first step is scored without the
            unconditional half (its first-step input does not depend on guidance); a model
            with embedded guidance (HunyuanVideo) takes ``guidance_scale`` as a model input,
            passed unchanged, and its CFG is ``true_cfg_scale``.

    Returns:
        :class:`AnseSelectionOutput`: the winner's seed and latents, one row per candidate
        (``seed``, ``bansa`` in nats, ``rank``, ``winner``, ``layer_XX``) and the config.

    Examples:
        >>> import torch
        >>> from anse_lib import AnseConfig, select_noise
        >>> from anse_lib.toyworld import load_toy_pipeline
        >>> pipe = load_toy_pipeline()
        >>> sel = select_noise(pipe, "a big red circle moving left", AnseConfig(num_candidates=4),
        ...                    generator=torch.Generator().manual_seed(0))
        >>> len(sel.scores), bool(sel.winner_seed == sel.scores.seed[sel.scores.bansa.idxmin()])
        (4, True)
        >>> video = pipe("a big red circle moving left", latents=sel.latents).frames[0]  # (F, H, W, 3)
    """
    t0 = time.perf_counter()
    config = AnseConfig() if config is None else config
    if not isinstance(config, AnseConfig):
        raise ValueError(f"config must be an AnseConfig, got {type(config).__name__}")
    _check_pipe_kwargs(pipe_kwargs, "select_noise")
    if seeds is not None:
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("seeds is empty; give at least one seed or seeds=None to draw them")
        config = config.replace(num_candidates=len(seeds))
    else:
        seeds = _draw_seeds(config.num_candidates, generator)
    m = config.num_candidates
    batch_size = m if config.batch_size is None else config.batch_size
    model, layer_ids, score_step, call_kwargs, score_kwargs, cfg, score_cfg, probe_kwargs = scoring_setup(
        pipe, config, pipe_kwargs)

    per_layer, empty, latents = [], [], []
    bar = tqdm(total=m, desc="scoring candidates", unit="seed", disable=not progress)
    for start in range(0, m, batch_size):
        batch_seeds = seeds[start : start + batch_size]
        s, e, lat = _score_batch(pipe, model, prompt, batch_seeds, layer_ids, config.branch, score_cfg, score_step,
                                 score_kwargs, probe_kwargs)
        per_layer.append(s)
        empty.append(e)
        latents.append(lat)
        bar.update(len(batch_seeds))
    bar.close()
    per_layer = torch.cat(per_layer)  # (M, L)
    bansa = per_layer.mean(1)
    order = torch.argsort(bansa, stable=True)
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(1, m + 1)
    winner = int(order[0])
    table = pd.DataFrame({"seed": seeds, "bansa": bansa.numpy(), "rank": ranks.numpy(),
                          "winner": np.arange(m) == winner, "empty_rows": torch.cat(empty).numpy()})
    for j, layer in enumerate(layer_ids):
        table[f"layer_{layer:02d}"] = per_layer[:, j].numpy()
    table.index.name = "candidate"
    candidate_latents = torch.cat(latents)
    shown = {key: call_kwargs[key] for key in ("num_inference_steps", "guidance_scale") if key in call_kwargs}
    return AnseSelectionOutput(winner_seed=seeds[winner], latents=candidate_latents[winner : winner + 1].clone(),
                               scores=table, config=config, layers=layer_ids, winner_index=winner, prompt=prompt,
                               pipeline_kwargs=dict(shown, guidance=cfg), seconds=time.perf_counter() - t0,
                               candidate_latents=candidate_latents)


def scoring_setup(pipe, config: AnseConfig, pipe_kwargs: dict) -> tuple:
    """What a scoring pass of ``config`` needs, resolved once: ``(model, layer_ids, score_step,
    call_kwargs, score_kwargs, cfg, score_cfg, probe_kwargs)`` (see :func:`_scoring_call`);
    ``probe_kwargs`` are the :class:`~anse_lib.probe.AttentionProbe` settings of the config."""
    model = denoiser(pipe)
    layer_ids = _resolve_layers(model, config.depth, config.layers, config.attention)
    score_step = _check_score_step(pipe, config.score_step, pipe_kwargs.get("num_inference_steps"))
    call_kwargs, score_kwargs, cfg, score_cfg = _scoring_call(pipe, model, config.branch, score_step, pipe_kwargs)
    b = config.bansa
    probe_kwargs = dict(attention=config.attention, rows=config.rows, k=b.num_masks, drop_prob=b.drop_prob,
                        mask_seed=b.mask_seed, row_sample=b.row_sample, block_rows=config.block_rows)
    return model, layer_ids, score_step, call_kwargs, score_kwargs, cfg, score_cfg, probe_kwargs


def _score_batch(pipe, model, prompt, seeds, layer_ids, branch, cfg, score_step, call_kwargs, probe_kwargs):
    """Per-layer scores ``(b, L)``, empty-row counts ``(b,)`` and drawn latents of one batch of candidates."""
    probe, call, latents = run_probe(pipe, model, prompt, seeds, layer_ids, branch, cfg, score_step, call_kwargs,
                                     probe_kwargs)
    scores = probe.scores(call)
    per_layer = torch.stack([scores[layer].mean(-1) for layer in layer_ids], 1)  # (b, L)
    empty = torch.stack([r.empty_rows.sum(-1) for r in probe.records if r.call == call]).sum(0)
    return per_layer, empty, latents


def run_probe(pipe, model, prompt, seeds, layer_ids, branch, cfg, score_step, call_kwargs, probe_kwargs):
    """Run the pipeline on a batch of candidate seeds until the scored call's last layer.

    The armed probe scores the transformer call of denoising step ``score_step`` and, in it,
    the batch entries of ``branch``. Returns ``(probe, call, latents)``: the probe with its
    records, the index of the scored model call, and the candidates' initial latents
    ``(b, ...)`` as the pipeline drew them (divided by the scheduler's ``init_noise_sigma``).
    """
    b = len(seeds)
    given = "prompt_embeds" in call_kwargs
    # CPU generators: diffusers' randn_tensor draws on the CPU and moves the noise to the
    # pipeline's device, so a seed gives the same noise on every device
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    captured = {}
    original_prepare = pipe.prepare_latents

    def capture_prepare(*args, **kwargs):
        out = original_prepare(*args, **kwargs)
        captured["latents"] = (out[0] if isinstance(out, tuple) else out).detach().clone()
        return out

    call_kwargs = _repeat_conditioning(call_kwargs, b)
    probe = AttentionProbe(model, layers=layer_ids, **probe_kwargs)
    # Which model call holds the scored branch, and where in its batch:
    #   batched CFG [uncond, cond] -> one call per step, second or first half; Wan-style
    #   separate calls (cond, then uncond) -> two calls per step, whole batch; no CFG -> one
    #   call per step, whole batch.
    layout = {}

    def on_call(call, batch):
        if call == 0:
            if batch == 2 * b:
                per_step, offset, rows = 1, 0, slice(b, 2 * b) if branch == "cond" else slice(0, b)
            elif batch == b:
                per_step = 2 if cfg else 1
                offset, rows = (0 if branch == "cond" or not cfg else 1), slice(0, b)
            else:
                raise RuntimeError(f"first model call has batch {batch}; expected {b} or {2 * b} candidates")
            layout.update(call=score_step * per_step + offset, rows=rows)
            probe.stop_at = (layout["call"], layer_ids[-1])
            probe.batch_slice = layout["rows"]  # score only the chosen branch's candidates
        probe.armed = call == layout["call"]

    probe.on_model_call = on_call
    shadowed = pipe.__dict__.get("prepare_latents")  # normally None: the class method
    pipe.prepare_latents = capture_prepare
    try:
        with probe:
            try:
                # one prompt per candidate: CogVideoXPipeline ignores num_videos_per_prompt (it sets 1)
                prompts = [prompt] * b if isinstance(prompt, str) and not given else prompt
                pipe(prompt=prompts, num_videos_per_prompt=1 if given or prompts is not prompt else b,
                     generator=generators, **call_kwargs)
                raise RuntimeError(f"the pipeline finished without reaching the last scored layer "
                                   f"(score_step={score_step})")
            except StopForward:
                pass
    finally:
        if shadowed is None:
            del pipe.prepare_latents  # back to the class method
        else:
            pipe.prepare_latents = shadowed
    sigma = float(getattr(pipe.scheduler, "init_noise_sigma", 1.0))
    return probe, layout["call"], captured["latents"] / sigma


def _scoring_call(pipe, model, branch, score_step, pipe_kwargs):
    """The pipeline arguments of a scoring pass: ``(call_kwargs, score_kwargs, cfg, score_cfg)``.

    ``call_kwargs``: the user's call (latent output, their steps and guidance); ``cfg``:
    whether that call runs an unconditional branch; ``score_kwargs``: what the scoring pass
    passes, and ``score_cfg``: whether it runs with CFG.
    """
    call_kwargs = dict(pipe_kwargs, output_type="latent")
    cfg_name, cfg = _cfg_setting(pipe, model, call_kwargs)
    if branch == "uncond" and not cfg:
        raise ValueError(f"branch='uncond' needs classifier-free guidance ({cfg_name} > 1"
                         f"{' and a negative prompt' if cfg_name == 'true_cfg_scale' else ''})")
    # The conditional branch's first-step input (latents, timestep, prompt) does not depend on
    # guidance, and the transformer treats batch entries independently: score it in a pass
    # without CFG, half the work of the [uncond, cond] batch. The uncond branch needs CFG, and
    # so does every later step (its input is the guided sampler's).
    score_cfg = cfg and (branch == "uncond" or score_step > 0)
    score_kwargs = call_kwargs if score_cfg or not cfg else dict(call_kwargs, **{cfg_name: 1.0})
    return call_kwargs, score_kwargs, cfg, score_cfg


def _check_score_step(pipe, score_step, num_inference_steps) -> int:
    """``score_step`` as an int in ``0 .. steps - 1`` (steps: the given or the pipeline's default)."""
    steps = num_inference_steps
    if steps is None:
        default = inspect.signature(pipe.__call__).parameters.get("num_inference_steps")
        steps = default.default if default is not None and default.default is not inspect._empty else None
    if isinstance(score_step, bool) or not isinstance(score_step, (int, np.integer)) or score_step < 0 or (
            steps is not None and score_step >= steps):
        allowed = f"0..{steps - 1}" if steps is not None else ">= 0"
        raise ValueError(f"score_step={score_step!r} must be an integer step index in {allowed} "
                         f"(0 is the first denoising step)")
    return int(score_step)


#: keyword arguments that carry one prompt's conditioning along dimension 0
_CONDITIONING = ("prompt_embeds", "negative_prompt_embeds", "prompt_attention_mask", "negative_prompt_attention_mask",
                 "pooled_prompt_embeds", "negative_pooled_prompt_embeds")


def _repeat_conditioning(call_kwargs: dict, b: int) -> dict:
    """Repeat given single-prompt embeddings (and their masks) to the candidate batch.

    With ``prompt_embeds``, diffusers video pipelines take the batch size from the
    embeddings and do not repeat them for ``num_videos_per_prompt``, so the candidates'
    batch is made here; the call then uses ``num_videos_per_prompt=1``.
    """
    out = dict(call_kwargs)
    for key in _CONDITIONING:
        value = out.get(key)
        if value is not None:
            if value.shape[0] != 1:
                raise ValueError(f"{key} must hold one prompt (batch 1) for selection, got batch {value.shape[0]}")
            out[key] = value.repeat_interleave(b, dim=0)
    return out


#: pipeline arguments that only shape the generated output, not the first denoising step
_OUTPUT_ONLY = ("output_type", "return_dict", "callback_on_step_end", "callback_on_step_end_tensor_inputs", "latents",
                "generator", "num_videos_per_prompt", "decode_timestep", "decode_noise_scale")


def generate_with_anse(pipe, prompt: str | None = None, config: AnseConfig | None = None, *,
                       seeds: list[int] | None = None, generator: torch.Generator | None = None,
                       progress: bool = False, **pipe_kwargs) -> AnseGenerationOutput:
    """Select the noise, then generate from it with the pipeline's normal call.

    Args:
        pipe: a supported diffusers video pipeline (see :func:`select_noise`).
        prompt: the prompt.
        config: what selection scores, an :class:`~anse_lib.config.AnseConfig`.
        seeds, generator, progress: as in :func:`select_noise`.
        **pipe_kwargs: the pipeline's own arguments for the generation; selection receives
            every one that shapes the first denoising step (embeddings and their masks, sizes,
            steps, guidance). Not ``latents=`` or ``generator=`` for the pipeline (the selected
            noise is the latents), and no setting of the config (``drop_prob=``, ``layers=``,
            ...): an error names where it goes.

    Returns:
        :class:`AnseGenerationOutput` with ``frames`` (exactly
        ``pipe(prompt, latents=selection.latents, **pipe_kwargs).frames``) and ``selection``.

    Examples:
        >>> import torch
        >>> from anse_lib import AnseConfig, generate_with_anse
        >>> from anse_lib.toyworld import load_toy_pipeline
        >>> pipe = load_toy_pipeline()
        >>> out = generate_with_anse(pipe, "a small blue square moving up", AnseConfig(num_candidates=3),
        ...                          generator=torch.Generator().manual_seed(0))
        >>> out.frames[0].shape  # (frames, height, width, RGB)
        (8, 16, 16, 3)
        >>> len(out.selection.scores)
        3
    """
    if "latents" in pipe_kwargs:
        raise ValueError("latents= cannot be given to generate_with_anse: the selected noise is the latents")
    _check_pipe_kwargs(pipe_kwargs, "generate_with_anse")
    shared = {key: value for key, value in pipe_kwargs.items() if key not in _OUTPUT_ONLY}
    selection = select_noise(pipe, prompt, config, seeds=seeds, generator=generator, progress=progress, **shared)
    output = pipe(prompt=prompt, latents=selection.latents, **pipe_kwargs)
    frames = output.frames if hasattr(output, "frames") else output[0]
    return AnseGenerationOutput(frames=frames, selection=selection)
