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
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy.stats import pearsonr
from tqdm.auto import tqdm

from .bansa import check_drop_prob, check_k
from .probe import AttentionProbe, StopForward, attention_layers

BRANCHES = ("cond", "uncond")


def denoiser(pipe) -> torch.nn.Module:
    """The pipeline's denoising network (``transformer`` or ``unet``)."""
    model = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    if model is None:
        raise ValueError(f"{type(pipe).__name__} has neither a transformer nor a unet to probe")
    return model


@dataclass
class SelectionResult:
    """What :func:`select_noise` found.

    scores: one row per candidate: ``seed``, ``bansa`` (mean of the scored layers, nats),
    ``rank`` (1 = lowest), ``winner``, ``empty_rows`` and one ``layer_XX`` column per scored
    layer (mean over heads). latents: the winner's initial latents exactly as the
    pipeline draws them for ``winner_seed`` (its ``latents=`` argument reproduces them).
    """

    prompt: str | None
    winner_seed: int
    winner_index: int
    latents: torch.Tensor
    scores: pd.DataFrame
    layers: list[int]
    settings: dict
    seconds: float
    candidate_latents: torch.Tensor = field(repr=False, default=None)

    @property
    def seeds(self) -> list[int]:
        return self.scores["seed"].tolist()

    def layer_scores(self) -> np.ndarray:
        """``(M, L)`` per-layer scores of all candidates."""
        return self.scores[[f"layer_{i:02d}" for i in self.layers]].to_numpy()


def _check_branch(branch):
    if branch not in BRANCHES:
        raise ValueError(f"branch must be one of {', '.join(BRANCHES)}, got {branch!r}")


def _resolve_layers(model, layers, attention) -> list[int]:
    n = len(attention_layers(model, attention))
    if layers is None:
        return list(range(n))
    if isinstance(layers, (int, np.integer)) and not isinstance(layers, bool):
        if not 1 <= layers <= n:
            raise ValueError(f"layers={layers} (depth d: score layers 1..d) must be in 1..{n} for this model")
        return list(range(int(layers)))
    out = sorted(set(int(i) for i in layers))
    bad = [i for i in out if not 0 <= i < n]
    if bad or not out:
        raise ValueError(f"layer indices {bad or out} out of range: this model has {n} attention layers, 0..{n - 1}")
    return out


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
        default = inspect.signature(pipe.__call__).parameters.get(name)
        value = default.default if default is not None and default.default is not inspect._empty else 1.0
    active = float(value) > 1.0
    if embedded:
        active = active and any(call_kwargs.get(k) is not None for k in ("negative_prompt", "negative_prompt_embeds"))
    return name, active


def _draw_seeds(num_candidates, generator) -> list[int]:
    return torch.randint(0, 2**31 - 1, (num_candidates,), generator=generator).tolist()


def select_noise(
    pipe,
    prompt: str | None = None,
    num_candidates: int | None = None,
    seeds: list[int] | None = None,
    k: int = 10,
    drop_prob: float = 0.2,
    layers=None,
    branch: str = "cond",
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    score_step: int = 0,
    attention: str | None = None,
    rows: str = "all",
    mask_seed: int = 0,
    keep_rows: bool = False,
    row_sample: int | None = None,
    block_rows: int | None = None,
    progress: bool = False,
    **pipe_kwargs,
) -> SelectionResult:
    """Score candidate initial noises by BANSA at the first denoising step; the lowest wins.

    Args:
        pipe: a diffusers video pipeline whose ``transformer`` or ``unet`` the probe
            supports (the toy pipeline, CogVideoX, Wan, LTX-Video, AnimateDiff, UNet3D,
            HunyuanVideo).
        prompt: the prompt, as the pipeline takes it (``None`` with ``prompt_embeds``).
        num_candidates: M, how many noises to score (default 10, or ``len(seeds)``).
        seeds: the candidate seeds (default: M seeds drawn from ``generator``). Candidate
            i's noise is exactly what the pipeline draws for ``torch.Generator().manual_seed(seeds[i])``.
        k: K, Bernoulli masks per attention row (>= 2; the paper's 10).
        drop_prob: probability of dropping an attention entry, in (0, 1) (the paper's 0.2).
        layers: ``None`` (all layers), an int d (layers 1..d, the paper's depth), or a list
            of layer indices.
        branch: which CFG branch is scored, ``"cond"`` (default) or ``"uncond"``.
        batch_size: candidates per forward pass (default: all at once).
        generator: draws the candidate seeds when ``seeds`` is not given.
        num_inference_steps: the pipeline's steps (sets the first timestep).
        guidance_scale: the pipeline's guidance; ``"cond"`` at the first step is scored
            without the unconditional half (its first-step input does not depend on guidance).
            For a model with embedded guidance (HunyuanVideo) it is a model input and is
            passed unchanged; its CFG is ``true_cfg_scale`` (in ``pipe_kwargs``).
        score_step: which denoising step's transformer call is scored, 0-based (0: the first,
            the paper's setting). Steps before it run in full with the pipeline's guidance,
            so scoring at step ``s`` costs about ``s`` denoising steps per candidate.
        attention: which attention kind to probe (``None``: the family's default; see
            :class:`~anse_lib.probe.AttentionProbe`).
        rows: ``"all"``, ``"video"`` or ``"text"`` query rows of joint attention.
        mask_seed: seed of the masks, shared by every candidate (common random numbers).
        keep_rows: keep per-row scores in the probe's records.
        row_sample: score a fixed random subset of this many query rows per layer, the same
            for every candidate (``None``: all rows, as in the paper).
        block_rows: rows per block of the chunked scorer (default: from its memory budget).
        progress: show a progress bar over the batches.
        **pipe_kwargs: other pipeline arguments (``prompt_embeds``, ``height``,
            ``num_frames``, ...).

    Returns:
        :class:`SelectionResult`: the winner's seed and latents, and one row per candidate
        (``seed``, ``bansa`` in nats, ``rank``, ``winner``, ``layer_XX``).

    Examples:
        >>> import torch
        >>> from anse_lib.select import select_noise
        >>> from anse_lib.toyworld import load_toy_pipeline
        >>> pipe = load_toy_pipeline()
        >>> sel = select_noise(pipe, "a big red circle moving left", num_candidates=4,
        ...                    generator=torch.Generator().manual_seed(0))
        >>> len(sel.scores), bool(sel.winner_seed == sel.scores.seed[sel.scores.bansa.idxmin()])
        (4, True)
        >>> video = pipe("a big red circle moving left", latents=sel.latents).frames[0]  # (F, H, W, 3)
    """
    t0 = time.perf_counter()
    check_k(k)
    check_drop_prob(drop_prob)
    _check_branch(branch)
    if seeds is not None:
        seeds = [int(s) for s in seeds]
        if num_candidates is not None and num_candidates != len(seeds):
            raise ValueError(f"num_candidates={num_candidates} but {len(seeds)} seeds were given")
        num_candidates = len(seeds)
    elif num_candidates is None:
        num_candidates = 10
    if isinstance(num_candidates, bool) or not isinstance(num_candidates, (int, np.integer)) or num_candidates < 1:
        raise ValueError(f"num_candidates (M) must be an integer >= 1, got {num_candidates!r}")
    if seeds is None:
        seeds = _draw_seeds(num_candidates, generator)
    batch_size = num_candidates if batch_size is None else batch_size
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    model = denoiser(pipe)
    layer_ids = _resolve_layers(model, layers, attention)
    score_step = _check_score_step(pipe, score_step, num_inference_steps)
    call_kwargs, score_kwargs, cfg, score_cfg = _scoring_call(pipe, model, branch, score_step, num_inference_steps,
                                                             guidance_scale, pipe_kwargs)

    per_layer, empty, latents = [], [], []
    bar = tqdm(total=num_candidates, desc="scoring candidates", unit="seed", disable=not progress)
    for start in range(0, num_candidates, batch_size):
        batch_seeds = seeds[start : start + batch_size]
        s, e, lat = _score_batch(pipe, model, prompt, batch_seeds, layer_ids, branch, score_cfg, score_step,
                                 score_kwargs,
                                 dict(attention=attention, rows=rows, k=k, drop_prob=drop_prob, mask_seed=mask_seed,
                                      keep_rows=keep_rows, row_sample=row_sample, block_rows=block_rows))
        per_layer.append(s)
        empty.append(e)
        latents.append(lat)
        bar.update(len(batch_seeds))
    bar.close()
    per_layer = torch.cat(per_layer)  # (M, L)
    bansa = per_layer.mean(1)
    order = torch.argsort(bansa, stable=True)
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(1, num_candidates + 1)
    winner = int(order[0])
    table = pd.DataFrame({"seed": seeds, "bansa": bansa.numpy(), "rank": ranks.numpy(),
                          "winner": np.arange(num_candidates) == winner, "empty_rows": torch.cat(empty).numpy()})
    for j, layer in enumerate(layer_ids):
        table[f"layer_{layer:02d}"] = per_layer[:, j].numpy()
    table.index.name = "candidate"
    candidate_latents = torch.cat(latents)
    settings = dict(k=k, drop_prob=drop_prob, layers=layer_ids, branch=branch, score_step=score_step,
                    attention=attention, rows=rows,
                    mask_seed=mask_seed, row_sample=row_sample, batch_size=batch_size, guidance=cfg,
                    **{key: call_kwargs[key] for key in ("num_inference_steps", "guidance_scale")
                       if key in call_kwargs})
    return SelectionResult(prompt=prompt, winner_seed=seeds[winner], winner_index=winner,
                           latents=candidate_latents[winner : winner + 1].clone(), scores=table, layers=layer_ids,
                           settings=settings, seconds=time.perf_counter() - t0, candidate_latents=candidate_latents)


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
    device = getattr(pipe, "_execution_device", "cpu")
    generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
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
                pipe(prompt=prompt, num_videos_per_prompt=1 if given else b, generator=generators, **call_kwargs)
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


def _scoring_call(pipe, model, branch, score_step, num_inference_steps, guidance_scale, pipe_kwargs):
    """The pipeline arguments of a scoring pass: ``(call_kwargs, score_kwargs, cfg, score_cfg)``.

    ``call_kwargs``: the user's call (latent output, their steps and guidance); ``cfg``:
    whether that call runs an unconditional branch; ``score_kwargs``: what the scoring pass
    passes, and ``score_cfg``: whether it runs with CFG.
    """
    call_kwargs = dict(pipe_kwargs, output_type="latent")
    if num_inference_steps is not None:
        call_kwargs["num_inference_steps"] = num_inference_steps
    if guidance_scale is not None:
        call_kwargs["guidance_scale"] = guidance_scale
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


def generate_with_anse(pipe, prompt: str | None = None, selection: dict | None = None, **generation_kwargs):
    """Select the noise, then generate from it with the pipeline's normal call.

    Args:
        pipe: a supported diffusers video pipeline (see :func:`select_noise`).
        prompt: the prompt.
        selection: keyword arguments of :func:`select_noise` (``num_candidates``, ``k``,
            ``drop_prob``, ``layers``, ``generator``, ...). Selection also receives every
            generation argument that shapes the first denoising step (embeddings and their
            masks, sizes, steps, guidance).
        **generation_kwargs: the pipeline's own arguments for the generation; not
            ``latents=`` or ``generator=`` (the selected noise is the latents).

    Returns:
        ``(pipeline output, SelectionResult)``; the output is exactly
        ``pipe(prompt, latents=result.latents, **generation_kwargs)``.

    Examples:
        >>> import torch
        >>> from anse_lib.select import generate_with_anse
        >>> from anse_lib.toyworld import load_toy_pipeline
        >>> pipe = load_toy_pipeline()
        >>> out, sel = generate_with_anse(pipe, "a small blue square moving up",
        ...                               selection=dict(num_candidates=3, generator=torch.Generator().manual_seed(0)))
        >>> out.frames[0].shape  # (frames, height, width, RGB)
        (8, 16, 16, 3)
    """

    for key in ("latents", "generator"):
        if key in generation_kwargs:
            raise ValueError(f"{key}= cannot be given to generate_with_anse: the selected noise is the latents")
    shared = {key: value for key, value in generation_kwargs.items() if key not in _OUTPUT_ONLY}
    result = select_noise(pipe, prompt, **{**shared, **(selection or {})})
    output = pipe(prompt=prompt, latents=result.latents, **generation_kwargs)
    return output, result


@dataclass
class DepthCalibration:
    """The paper's d*: the smallest depth d whose cumulative score (mean of layers 1..d)
    has Pearson r >= tau with the all-layer score.

    curve: one row per depth: ``r_pooled`` (over all prompt x seed pairs, the paper's
    reading) and ``r_within_prompt`` (mean over prompts of the correlation across that
    prompt's seeds: what matters for picking a seed).
    scores: one row per (prompt, seed) with all per-layer scores.
    """

    d_star: int | None
    tau: float
    curve: pd.DataFrame
    scores: pd.DataFrame


def calibrate_depth(pipe, prompts: list, seeds: list[int], tau: float = 0.7, **select_kwargs) -> DepthCalibration:
    """The paper's depth rule: the smallest d whose layers 1..d score like all layers.

    Every layer is scored once per prompt and seed; for each depth d the mean score of
    layers 1..d is correlated (Pearson) with the all-layer score.

    Args:
        pipe: a supported diffusers video pipeline.
        prompts: held-out prompts (strings, or anything the pipeline takes).
        seeds: candidate seeds scored for every prompt (at least 3).
        tau: the correlation d* must reach, in (0, 1] (the paper's 0.7).
        **select_kwargs: settings of :func:`select_noise` (``k``, ``drop_prob``, ...).

    Returns:
        :class:`DepthCalibration` with ``d_star`` (``None`` if no depth reaches ``tau``)
        and the curve of r against d, pooled and within prompt.

    Examples:
        >>> from anse_lib.select import calibrate_depth
        >>> from anse_lib.toyworld import load_toy_pipeline
        >>> cal = calibrate_depth(load_toy_pipeline(), ["a big red circle moving left"], seeds=[0, 1, 2, 3])
        >>> list(cal.curve.depth), round(float(cal.curve.r_pooled.iloc[-1]), 6)  # all layers: r = 1
        ([1, 2, 3, 4], 1.0)
    """
    if not 0 < tau <= 1:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    if len(seeds) < 3:
        raise ValueError(f"need at least 3 seeds per prompt to correlate, got {len(seeds)}")
    frames = []
    for i, prompt in enumerate(prompts):
        res = select_noise(pipe, prompt, seeds=seeds, layers=None, **select_kwargs)
        frames.append(res.scores.assign(prompt=prompt if isinstance(prompt, str) else i))
    return calibration_from_scores(pd.concat(frames, ignore_index=True), tau)


def calibration_from_scores(scores: pd.DataFrame, tau: float = 0.7) -> DepthCalibration:
    """The depth rule of :func:`calibrate_depth` on scores already computed.

    Args:
        scores: one row per (prompt, seed) with a ``prompt`` column and one ``layer_XX``
            column per layer, all layers scored (e.g. a cached sweep of ``select_noise``'s
            tables).
        tau: the correlation d* must reach, in (0, 1].

    Returns:
        :class:`DepthCalibration`.
    """
    if not 0 < tau <= 1:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    layer_cols = sorted(c for c in scores.columns if c.startswith("layer_"))
    if not layer_cols or "prompt" not in scores.columns:
        raise ValueError("scores need a 'prompt' column and 'layer_XX' columns")
    per_layer = scores[layer_cols].to_numpy()
    cumulative = np.cumsum(per_layer, 1) / np.arange(1, per_layer.shape[1] + 1)
    full = cumulative[:, -1]
    groups = scores["prompt"].to_numpy()
    rows = []
    for d in range(1, per_layer.shape[1] + 1):
        r_pooled = _pearson(cumulative[:, d - 1], full)
        within = [_pearson(cumulative[groups == g, d - 1], full[groups == g]) for g in pd.unique(groups)]
        rows.append({"depth": d, "r_pooled": r_pooled, "r_within_prompt": float(np.nanmean(within))})
    curve = pd.DataFrame(rows)
    hits = curve[curve.r_pooled >= tau]
    d_star = int(hits.depth.iloc[0]) if len(hits) else None
    return DepthCalibration(d_star=d_star, tau=tau, curve=curve, scores=scores)


def _pearson(a, b) -> float:
    if np.std(a) == 0 or np.std(b) == 0:
        return float("nan") if np.std(a) != np.std(b) else 1.0
    return float(pearsonr(a, b)[0])
