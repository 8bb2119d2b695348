"""Cheap per-candidate scores to set against BANSA: the baselines and the look-ahead control.

For one prompt and a list of candidate seeds, :func:`attention_scores` returns, per layer,
BANSA (all rows, video rows, text rows; the default K and p and one other setting) and the
row statistics it is made of or competes with: mean row entropy (the "entropy only"
baseline of the paper's ablation), collision probability and the kept-mass term
``E[-log Z]`` (:mod:`anse_lib.rowstats`). :func:`lookahead_x0` returns the model's own
prediction of the clean video after ``s`` denoising steps, the positive control: how much
of a seed's fate is visible that early, at ``s`` steps' cost. :func:`dropout_bansa` is the
paper's "BANSA (D)" ablation: K stochastic forward passes whose masked attention is fed
back into the model. :func:`inversion_stability` is the selector of Qi et al. 2024 ("Not
All Noises Are Created Equally"): how close DDIM inversion of a seed's own video returns
to the seed.

Study helper for: Notebook 05 and `benchmarks/score_quality_study.py`.
"""
from __future__ import annotations

import contextlib

import pandas as pd
import torch
import torch.nn.functional as F

from ..bansa import _masked_sample, bansa_from_samples
from ..capture import capture_attention
from ..config import AnseConfig, BansaConfig
from ..select import select_noise
from ..toyworld.model import rotary_embeddings


def attention_scores(pipe, prompt: str, seeds: list[int], step: int = 0, k: int = 10, drop_prob: float = 0.2,
                     other: tuple[int, float] = (20, 0.5), mask_seed: int = 0) -> pd.DataFrame:
    """Per-layer attention scores of each candidate at denoising step ``step`` (0: the first).

    Args:
        pipe: a pipeline with joint text+video attention (the toy pipeline, CogVideoX).
        prompt: the prompt.
        seeds: the candidates' seeds.
        step: the denoising step scored (0-based).
        k, drop_prob: the masks of the main score (the paper's K = 10, p = 0.2).
        other: ``(K, p)`` of a second BANSA setting, for the K/p variant.
        mask_seed: the masks' seed, shared by every candidate.

    Returns:
        One row per seed: ``seed`` and, per layer ``XX``, ``bansa_XX`` (all rows),
        ``bansa_video_XX``, ``bansa_text_XX``, ``bansa_other_XX`` (the ``other`` setting),
        ``entropy_XX`` (mean row entropy, nats), ``collision_XX`` (mean sum of squares),
        ``kept_mass_XX`` (mean ``E[-log Z]``); all means over heads and rows. ``bansa_XX``
        equals ``select_noise``'s ``layer_XX`` for the same settings.
    """
    rows = []
    for seed in seeds:
        cap = capture_attention(pipe, prompt, int(seed), step=step, k=k, drop_prob=drop_prob, mask_seed=mask_seed)
        row = {"seed": int(seed)}
        for layer in cap.layers:
            main = cap.row_statistics(layer)
            t = cap.text_len
            row.update({
                f"bansa_{layer:02d}": float(main["bansa"].mean()),
                f"bansa_video_{layer:02d}": float(main["bansa"][:, t:].mean()),
                f"bansa_text_{layer:02d}": float(main["bansa"][:, :t].mean()),
                f"entropy_{layer:02d}": float(main["entropy"].mean()),
                f"collision_{layer:02d}": float(main["collision"].mean()),
                f"kept_mass_{layer:02d}": float(main["kept_mass_term"].mean()),
            })
        rows.append(row)
    table = pd.DataFrame(rows)
    # the other K/p setting with the batched scorer (the same numbers as row_statistics, faster)
    config = AnseConfig(score_step=step, bansa=BansaConfig(num_masks=other[0], drop_prob=other[1], mask_seed=mask_seed))
    alt = select_noise(pipe, prompt, config, seeds=list(seeds))
    for j, layer in enumerate(alt.layers):
        table[f"bansa_other_{layer:02d}"] = alt.layer_scores()[:, j]
    return table


def later_step_bansa(pipe, prompt: str, seeds: list[int], steps=(1, 2, 4, 9), k: int = 10, drop_prob: float = 0.2,
                     mask_seed: int = 0) -> pd.DataFrame:
    """Per-layer BANSA (all rows) of each candidate at later steps (0-based), as ``select_noise`` with
    ``AnseConfig(score_step=s)``.

    Returns:
        One row per seed: ``seed`` and ``stepS_bansa_XX`` per step ``S`` and layer ``XX``.
    """
    table = pd.DataFrame({"seed": [int(s) for s in seeds]})
    for s in steps:
        config = AnseConfig(score_step=int(s), bansa=BansaConfig(num_masks=k, drop_prob=drop_prob, mask_seed=mask_seed))
        sel = select_noise(pipe, prompt, config, seeds=list(seeds))
        for j, layer in enumerate(sel.layers):
            table[f"step{s}_bansa_{layer:02d}"] = sel.layer_scores()[:, j]
    return table


@torch.no_grad()
def lookahead_x0(pipe, prompt: str, seeds: list[int], steps=(1, 2, 3, 5, 10), **pipe_kwargs) -> dict[int, torch.Tensor]:
    """The model's predicted clean video ``x0_hat`` after ``s`` denoising steps, for each ``s`` in ``steps``.

    Runs the pipeline's own sampler (its guidance and defaults) for ``max(steps)`` steps on
    the candidates as one batch, reading the scheduler's ``pred_original_sample`` at step
    ``s - 1`` (the prediction made by the ``s``-th model call). Costs ``max(steps)`` steps
    of sampling per candidate.

    Returns:
        ``{s: (M, ...) tensor}``, in the pipeline's latent layout (the toy model's latents are
        its pixels, in [-1, 1]).
    """
    steps = sorted({int(s) for s in steps})
    total = pipe_kwargs.get("num_inference_steps")
    if steps[0] < 1 or (total is not None and steps[-1] > total):
        raise ValueError(f"steps {steps} must be in 1..num_inference_steps")
    with recorded_steps(pipe.scheduler, stop_after=steps[-1]) as seen:
        pipe(prompt, num_videos_per_prompt=len(seeds), generator=[torch.Generator().manual_seed(int(s)) for s in seeds],
             output_type="latent", **pipe_kwargs)
    return {s: seen[s - 1][0] for s in steps}


@contextlib.contextmanager
def recorded_steps(scheduler, stop_after: int | None = None):
    """Record what the scheduler returns at each denoising step of the pipeline call made inside.

    Yields a list that fills with ``(pred_original_sample, prev_sample)`` per step (copies, in the
    scheduler's dtype); with ``stop_after``, the call ends after that many steps (the pipeline's
    remaining work is skipped). The scheduler's own ``step`` is back on exit.
    """
    original = scheduler.step
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def step(*args, **kwargs):
        kwargs["return_dict"] = True
        out = original(*args, **kwargs)
        seen.append((out.pred_original_sample.detach().clone(), out.prev_sample.detach().clone()))
        if stop_after is not None and len(seen) >= stop_after:
            raise _Enough
        return (out.prev_sample,)

    scheduler.step = step
    try:
        yield seen
    except _Enough:
        pass
    finally:
        del scheduler.step  # back to the class method


def initial_noise(pipe, seeds: list[int]) -> torch.Tensor:
    """The candidates' initial noise ``(M, ...)``, as the pipeline draws it for ``Generator().manual_seed(s)``."""
    return torch.cat([pipe.prepare_latents(1, pipe.transformer.dtype, "cpu", torch.Generator().manual_seed(int(s)))
                      for s in seeds]) / pipe.scheduler.init_noise_sigma


class _Stop(Exception):
    """Ends a pipeline call after the transformer's first forward."""


@torch.no_grad()
def dropout_bansa(pipe, prompt: str, seeds: list[int], k: int = 10, drop_prob: float = 0.2, mask_seed: int = 0,
                  per_call: int = 2) -> pd.DataFrame:
    """BANSA from ``k`` stochastic first-step forward passes with dropout on the attention ("BANSA (D)").

    In pass ``j`` every attention layer's probabilities ``A`` are multiplied by a Bernoulli
    mask ``m_j`` (each entry dropped with probability ``drop_prob``), renormalised per row,
    and the result ``A^(j)`` is what the layer uses: unlike the Bernoulli shortcut, the
    masked maps are fed back, so a layer's ``A`` differs between passes through the dropout
    of the layers before it. Per layer, BANSA is the mean over heads and query rows of
    ``H(mean_j A^(j)) - mean_j H(A^(j))``; layer 0 sees no earlier dropout and is the
    Bernoulli score with these masks. The masks are shared by every candidate. The scored
    input is the conditional branch of the first step (no CFG), as ``select_noise``'s.
    Costs ``k`` forward passes per candidate, ``per_call`` candidates per batch.

    Returns:
        One row per seed: ``seed`` and ``bansa_d_XX`` per layer ``XX``.
    """
    noise = initial_noise(pipe, seeds)
    real_sdpa = F.scaled_dot_product_attention
    layer_scores: list[torch.Tensor] = []
    masks: dict[int, torch.Tensor] = {}

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        layer = len(layer_scores)
        b, h, n, d = query.shape
        logits = query @ key.transpose(-1, -2) * (scale if scale is not None else d ** -0.5)
        if attn_mask is not None:
            logits = logits + attn_mask if attn_mask.dtype != torch.bool else logits.masked_fill(~attn_mask, -torch.inf)
        probs = logits.softmax(-1)
        if layer not in masks:
            g = torch.Generator().manual_seed(mask_seed * 1000 + layer)
            masks[layer] = torch.rand((k, h, n, key.shape[-2]), generator=g) >= drop_prob
        sample, _ = _masked_sample(probs.view(b // k, k, h, n, -1), masks[layer])  # (candidates, K, H, N, Nk)
        layer_scores.append(bansa_from_samples(sample.transpose(0, 1)).mean(-1))  # (candidates, H) -> candidates
        return sample.reshape(b, h, n, -1) @ value

    def stop(module, args, output):
        raise _Stop

    rows = []
    for start in range(0, len(seeds), per_call):
        chunk = noise[start:start + per_call]
        layer_scores.clear()
        hook = pipe.transformer.register_forward_hook(stop)
        F.scaled_dot_product_attention = sdpa
        try:
            pipe(prompt, latents=chunk.repeat_interleave(k, 0), num_videos_per_prompt=len(chunk) * k,
                 guidance_scale=1.0, output_type="latent")
        except _Stop:
            pass
        finally:
            F.scaled_dot_product_attention = real_sdpa
            hook.remove()
        for i, seed in enumerate(seeds[start:start + per_call]):
            rows.append({"seed": int(seed), **{f"bansa_d_{layer:02d}": float(sc[i]) for layer, sc in
                                               enumerate(layer_scores)}})
    return pd.DataFrame(rows)


@torch.no_grad()
def ddim_invert(pipe, prompt: str, videos: torch.Tensor, num_inference_steps: int) -> torch.Tensor:
    """Deterministic DDIM inversion of clean samples ``(M, ...)`` back to the first step's noise level.

    Walks the sampler's timesteps in reverse with the conditional model (no guidance, as
    inversion is usually run): at each timestep the model's output at the current point
    gives ``x0_hat`` and ``eps_hat`` at the current noise level, which are re-mixed at the
    next level. For a v-prediction model, ``x0 = sqrt(a) x - sqrt(1-a) v`` and
    ``eps = sqrt(1-a) x + sqrt(a) v``. Costs ``num_inference_steps`` passes per sample.
    """
    sched, model = pipe.scheduler, pipe.transformer
    if sched.config.prediction_type != "v_prediction":
        raise ValueError(f"ddim_invert handles v_prediction schedulers, got {sched.config.prediction_type!r}")
    sched.set_timesteps(num_inference_steps)
    embeds, _ = pipe.encode_prompt(prompt, None, False, videos.shape[0], None, None)
    rope = rotary_embeddings(model)
    x, a_cur = videos.float(), sched.final_alpha_cumprod
    for t in sched.timesteps.flip(0):
        v = model(hidden_states=sched.scale_model_input(x, t).to(model.dtype),
                  encoder_hidden_states=embeds.to(model.dtype), timestep=t.expand(x.shape[0]),
                  image_rotary_emb=rope, return_dict=False)[0].float()
        x0, eps = a_cur.sqrt() * x - (1 - a_cur).sqrt() * v, (1 - a_cur).sqrt() * x + a_cur.sqrt() * v
        a_cur = sched.alphas_cumprod[t]
        x = a_cur.sqrt() * x0 + (1 - a_cur).sqrt() * eps
    return x


@torch.no_grad()
def inversion_stability(pipe, prompt: str, seeds: list[int], num_inference_steps: int = 25,
                        **pipe_kwargs) -> tuple[pd.DataFrame, torch.Tensor]:
    """Qi et al. 2024's selector: cosine between each seed's noise and the DDIM inversion of its own video.

    Generates the candidates with the pipeline's defaults (``pipe_kwargs`` passed on), then
    inverts them with :func:`ddim_invert`; a higher cosine is a more "stable" noise, the
    one that selector picks. Costs a generation plus ``num_inference_steps`` conditional
    passes per candidate.

    Returns:
        ``(table, videos)``: one row per seed with ``seed`` and ``inversion_cosine``, and the
        generated final videos ``(M, ...)`` in the pipeline's latent layout.
    """
    noise = initial_noise(pipe, seeds)
    videos = pipe(prompt, latents=noise, num_videos_per_prompt=len(seeds), num_inference_steps=num_inference_steps,
                  output_type="latent", **pipe_kwargs).frames
    back = ddim_invert(pipe, prompt, videos, num_inference_steps)
    cos = F.cosine_similarity(back.flatten(1), noise.flatten(1).float(), dim=1)
    return pd.DataFrame({"seed": [int(s) for s in seeds], "inversion_cosine": cos.numpy()}), videos


class _Enough(Exception):
    """Ends sampling once the last needed prediction is made."""
