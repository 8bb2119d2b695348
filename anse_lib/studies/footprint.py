"""What the first denoising step can know of the seed: the schedule's numbers, the first update's
algebra, and the seed's footprint in the predicted clean video step by step.

Study helper for: Notebook 06 and ``benchmarks/schedule_twin.py``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..toyworld import toybench
from .selectors import initial_noise, lookahead_x0, recorded_steps


def schedule_numbers(scheduler, num_inference_steps: int = 25) -> dict:
    """How much of the clean video a sampler's first input carries.

    Returns:
        ``alpha_bar(999)`` (the last training timestep), the first sampling timestep for
        ``num_inference_steps`` (the scheduler's own spacing), ``alpha_bar`` there, the signal's
        amplitude ``sqrt(alpha_bar)`` in ``x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps``,
        and the signal-to-noise ratio ``alpha_bar / (1 - alpha_bar)``.
    """
    scheduler.set_timesteps(num_inference_steps)
    first = int(scheduler.timesteps[0])
    a = float(scheduler.alphas_cumprod[first])
    c = scheduler.config
    return {"prediction": c.prediction_type, "zero-SNR rescale": bool(c.rescale_betas_zero_snr),
            "spacing": c.timestep_spacing, "alpha_bar(999)": float(scheduler.alphas_cumprod[-1]),
            "first sampling t": first, "alpha_bar(first t)": a, "signal amplitude sqrt(alpha_bar)": a ** 0.5,
            "SNR at first t": a / (1 - a)}


@torch.no_grad()
def first_update(pipe, prompt: str, seed: int, num_inference_steps: int = 25, **pipe_kwargs) -> dict:
    """The pipeline's own first denoising step of one video, against the derived update.

    Runs the pipeline (its guidance) and records what its scheduler returns at the first step:
    the clean-video estimate ``x0_hat`` (``pred_original_sample``) and the next latent ``x_next``
    (``prev_sample``). With ``a`` = alpha_bar of the first timestep and ``a'`` of the next, DDIM
    (eta = 0) should give ``x_next = sqrt(a') x0_hat + sqrt(1 - a') eps_hat``. Returns the
    measured ``eps_hat = (x_next - sqrt(a') x0_hat) / sqrt(1 - a')``'s largest distance from the
    starting noise ``x_T`` (0 when ``a`` = 0: the scheduler then carries the starting noise
    forward, scaled by ``sqrt(1 - a')``), and the largest ``|x_next - (sqrt(a') x0_hat +
    sqrt(1 - a') x_T)|``.
    """
    sched = pipe.scheduler
    with recorded_steps(sched, stop_after=1) as seen:
        pipe(prompt, num_inference_steps=num_inference_steps, generator=torch.Generator().manual_seed(int(seed)),
             output_type="latent", **pipe_kwargs)
    x0, x_next = (t.double() for t in seen[0])
    x_t = initial_noise(pipe, [seed]).double()
    t, t_next = int(sched.timesteps[0]), int(sched.timesteps[1])
    a, a_next = float(sched.alphas_cumprod[t]), float(sched.alphas_cumprod[t_next])
    eps_hat = (x_next - a_next ** 0.5 * x0) / (1 - a_next) ** 0.5
    return {"first t": t, "alpha_bar": a, "max |eps_hat - x_T|": float((eps_hat - x_t).abs().max()),
            "max |x_next - (sqrt(a') x0_hat + sqrt(1-a') x_T)|":
                float((x_next - (a_next ** 0.5 * x0 + (1 - a_next) ** 0.5 * x_t)).abs().max())}


def footprint_rows(pipe, name: str, prompts: list[str], seeds, steps=(1, 2, 3, 5, 10),
                   num_inference_steps: int = 25) -> list[dict]:
    """Per (step, prompt): how the predicted clean video ``x0_hat`` splits between seeds and prompts.

    Step ``s`` is the prediction of the ``s``-th denoising step (1: the first, where ANSE scores);
    step 0 is the starting noise itself. For each prompt: ``ss_between_seeds`` =
    ``sum_s ||x_ps - m_p||^2`` and ``ss_between_prompts`` = ``S ||m_p - g||^2`` (``m_p`` the
    prompt's mean over its ``S`` seeds, ``g`` the mean over all), raw and with ``x0_hat`` clamped to
    the video's range [-1, 1]; and, for ``s >= 1``, the spread of ``x0_hat``'s ToyBench over the seeds.
    Every prompt uses the same seeds, so at step 0 all of the sum lies between seeds.
    """
    preds = {0: []} | {s: [] for s in steps}
    for prompt in prompts:
        x0 = lookahead_x0(pipe, prompt, seeds, steps=steps, num_inference_steps=num_inference_steps)
        preds[0].append(initial_noise(pipe, seeds))
        for s in steps:
            preds[s].append(x0[s].float())
    rows = []
    for step, per_prompt in preds.items():
        raw = torch.stack(per_prompt).flatten(2).double()  # (P, S, D)
        ss = {}
        for kind, x in (("", raw), ("_clamped", raw.clamp(-1, 1))):
            prompt_mean, grand = x.mean(1), x.mean((0, 1))
            ss[f"ss_between_seeds{kind}"] = ((x - prompt_mean[:, None]) ** 2).sum((1, 2))
            ss[f"ss_between_prompts{kind}"] = len(seeds) * ((prompt_mean - grand) ** 2).sum(1)
        for p, prompt in enumerate(prompts):
            row = {"model": name, "step": step, "prompt_index": p, "prompt": prompt,
                   **{k: float(v[p]) for k, v in ss.items()}}
            if step > 0:
                video = (per_prompt[p].clamp(-1, 1) + 1) / 2  # (S, F, 3, H, W) in [0, 1]
                scores = [toybench.toybench(video[i], prompt) for i in range(len(seeds))]
                semantic = [sc.semantic for sc in scores]
                row.update(semantic_sd=float(np.std(semantic, ddof=1)), semantic_range=float(np.ptp(semantic)),
                           quality_sd=float(np.std([sc.quality for sc in scores], ddof=1)))
            rows.append(row)
    return rows


def seed_share(footprint: pd.DataFrame, values_per_video: int | None = None, seeds: int | None = None
               ) -> pd.DataFrame:
    """Per model and step: the share of ``x0_hat``'s sum of squares that lies between the seeds of a
    prompt (raw, and clamped to [-1, 1]), and the share of prompts whose seeds' ``x0_hat`` differ
    in ToyBench semantic score (NaN at step 0, where no ToyBench is computed).

    The share depends on how far apart the prompts are too, so with ``values_per_video`` (pixels x
    channels x frames) and ``seeds`` it also gives the absolute spread between seeds: the SD of a
    clamped value around its prompt's mean, ``sqrt(ss_between_seeds / (P (S - 1) D))``.
    """
    g = footprint.groupby(["model", "step"])
    out = pd.DataFrame({f"share between seeds{kind.replace('_', ', ')}":
                        g[f"ss_between_seeds{kind}"].sum() / (g[f"ss_between_seeds{kind}"].sum()
                                                              + g[f"ss_between_prompts{kind}"].sum())
                        for kind in ("", "_clamped")})
    if values_per_video is not None and seeds is not None:
        prompts = g.prompt_index.nunique()
        out["seed SD per value, clamped"] = (g.ss_between_seeds_clamped.sum()
                                             / (prompts * (seeds - 1) * values_per_video)) ** 0.5
    if "semantic_range" in footprint:
        out["prompts whose seeds differ in semantic"] = g.semantic_range.apply(
            lambda r: (r > 0).mean() if r.notna().any() else np.nan)
    return out
