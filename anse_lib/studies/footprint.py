"""What the first denoising step can know of the seed: the schedule's numbers, the first update's
algebra, and the seed's footprint in the predicted clean video step by step.

Study helper for: Notebook 06 and ``benchmarks/schedule_twin.py``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..toyworld import toybench
from .selectors import initial_noise, lookahead_x0


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
def first_update(pipe, prompt: str, seed: int, **pipe_kwargs) -> dict:
    """The first DDIM update of one video, split into what the model predicted and what is the noise.

    Runs the pipeline's first step (its guidance) and reads the scheduler's
    ``pred_original_sample`` ``x0_hat``. With ``a`` = alpha_bar of the first timestep and ``a'``
    of the next, DDIM (eta = 0) gives ``x_next = sqrt(a') x0_hat + sqrt(1 - a') eps_hat`` with
    ``eps_hat = (x_T - sqrt(a) x0_hat) / sqrt(1 - a)``. Returns the largest
    ``|eps_hat - x_T|`` (0 when ``a`` = 0: the update keeps the starting noise itself, whatever the
    model predicted) and the largest ``|x_next - (sqrt(a') x0_hat + sqrt(1 - a') x_T)|``.
    """
    sched = pipe.scheduler
    steps = pipe_kwargs.pop("num_inference_steps", 25)
    x_t = initial_noise(pipe, [seed])
    x0 = lookahead_x0(pipe, prompt, [seed], steps=(1,), num_inference_steps=steps, **pipe_kwargs)[1].double()
    sched.set_timesteps(steps)
    t, t_next = int(sched.timesteps[0]), int(sched.timesteps[1])
    a, a_next = float(sched.alphas_cumprod[t]), float(sched.alphas_cumprod[t_next])
    x_t = x_t.double()
    eps_hat = (x_t - a ** 0.5 * x0) / (1 - a) ** 0.5
    x_next = a_next ** 0.5 * x0 + (1 - a_next) ** 0.5 * eps_hat
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


def seed_share(footprint: pd.DataFrame) -> pd.DataFrame:
    """Per model and step: the share of ``x0_hat``'s sum of squares that lies between the seeds of a
    prompt (raw, and clamped to [-1, 1]), and the share of prompts whose seeds' ``x0_hat`` differ
    in ToyBench semantic score."""
    g = footprint.groupby(["model", "step"])
    out = pd.DataFrame({f"share between seeds{kind.replace('_', ', ')}":
                        g[f"ss_between_seeds{kind}"].sum() / (g[f"ss_between_seeds{kind}"].sum()
                                                              + g[f"ss_between_prompts{kind}"].sum())
                        for kind in ("", "_clamped")})
    if "semantic_range" in footprint:
        out["prompts whose seeds differ in semantic"] = g.semantic_range.apply(lambda r: (r > 0).mean())
    return out
