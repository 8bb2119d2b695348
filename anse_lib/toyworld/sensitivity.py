"""Does the model listen to each word? Prompt sensitivity of the denoiser's x0 prediction.

Take rendered videos of a prompt, noise them to timestep ``t``, and ask the model for its
prediction of the clean video, ``x0_hat``, once with the prompt and once with one attribute
word swapped ("red" -> "blue", "circle" -> "square", ...), on the *same* noisy input. The
root-mean-square difference of the two predictions, in pixel units of [-1, 1], says how
much that word steers the model at that noise level. A word the model ignores gives ~0
at every ``t``, and sampling then leaves that attribute to the noise.

At the noisiest steps (``t`` near the end of the schedule) the input says almost nothing,
so the best prediction is the mean video of the prompt: it differs between "moving left"
and "moving right" (the mean object drifts with the motion), but hardly between "circle"
and "square" (the mean over positions is a blur). So at large ``t`` a model that uses the
motion word must show a clear motion sensitivity; shape can only be steered at middle
``t``, where the input already fixes where the object is.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from .model import denoiser_output, rotary_embeddings
from .render import render
from .world import COLOURS, MOTIONS, SHAPES, SIZES, PromptSpec, parse_prompt

#: The attributes :func:`attribute_variants` swaps, in the order of the report.
ATTRIBUTES = ("colour", "size", "shape", "motion")


def attribute_variants(prompt: str | PromptSpec) -> dict[str, str]:
    """One-word variants of a one-object prompt: ``{attribute: prompt with that word swapped}``.

    Each attribute takes the next value in the world's list (``SIZES``, ``COLOURS``, ...);
    a size the prompt leaves open is not swapped (no ``"size"`` entry).
    """
    spec = parse_prompt(prompt) if isinstance(prompt, str) else prompt
    if len(spec.objects) != 1:
        raise ValueError(f"attribute_variants needs a one-object prompt, "
                         f"got {len(spec.objects)} objects: {spec.text!r}")
    obj = spec.objects[0]
    values = {"colour": tuple(COLOURS), "size": SIZES, "shape": SHAPES, "motion": MOTIONS}
    out = {}
    for attr in ATTRIBUTES:
        current = getattr(obj, attr)
        if current is None:
            continue
        choices = values[attr]
        swapped = choices[(choices.index(current) + 1) % len(choices)]
        out[attr] = replace(spec, objects=(replace(obj, **{attr: swapped}),)).text
    return out


@torch.no_grad()
def predicted_x0(pipe, noisy: torch.Tensor, t: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """The model's clean-video prediction ``(B, F, C, H, W)`` from ``noisy`` at timesteps ``t`` ``(B,)``.

    Converts the transformer's output to ``x0`` by the scheduler's prediction type
    (``v_prediction``, ``epsilon`` or ``sample``); no guidance.
    """
    out = denoiser_output(pipe.transformer, pipe.text_encoder, pipe.tokenizer, noisy, t, prompts,
                          rotary_embeddings(pipe.transformer, noisy.device))
    a = pipe.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1, 1).to(noisy.dtype)
    kind = pipe.scheduler.config.prediction_type
    if kind == "v_prediction":
        return a.sqrt() * noisy - (1 - a).sqrt() * out
    if kind == "epsilon":
        return (noisy - (1 - a).sqrt() * out) / a.sqrt().clamp_min(1e-4)
    if kind == "sample":
        return out
    raise ValueError(f"unsupported prediction_type {kind!r}; expected v_prediction, epsilon or sample")


def prompt_sensitivity(pipe, prompt: str, variants: dict[str, str] | None = None,
                       timesteps=(999, 900, 700, 500, 300), num_videos: int = 8, seed: int = 0) -> pd.DataFrame:
    """RMS change of ``x0_hat`` when one word of ``prompt`` is swapped, per timestep.

    ``variants``: ``{name: other prompt}`` (default :func:`attribute_variants`). For each
    timestep, ``num_videos`` renders of ``prompt`` are noised with the same noise, and
    ``x0_hat`` under ``prompt`` is compared with ``x0_hat`` under each variant. Returns a
    long DataFrame with columns ``timestep, attribute, variant, rms`` (pixel units in
    [-1, 1]). Deterministic given ``seed``.
    """
    variants = attribute_variants(prompt) if variants is None else dict(variants)
    spec = parse_prompt(prompt)
    frames, _, height, width = pipe.video_shape
    if height != width:
        raise ValueError(f"square frames only, the model makes {height}x{width}")
    clean = render([spec] * num_videos, np.random.default_rng(seed), frames=frames, resolution=height).video
    g = torch.Generator().manual_seed(seed)
    rows = []
    for t_value in timesteps:
        t = torch.full((num_videos,), int(t_value), dtype=torch.long)
        noisy = pipe.scheduler.add_noise(clean, torch.randn(clean.shape, generator=g), t)
        base = predicted_x0(pipe, noisy, t, [prompt] * num_videos)
        for name, other in variants.items():
            diff = predicted_x0(pipe, noisy, t, [other] * num_videos) - base
            rows.append({"timestep": int(t_value), "attribute": name, "variant": other,
                         "rms": diff.pow(2).mean().sqrt().item()})
    return pd.DataFrame(rows)


def mean_render(prompt: str, num_renders: int, seed: int, resolution: int, frames: int) -> torch.Tensor:
    """Mean of ``num_renders`` renders of ``prompt``, ``(F, 3, H, W)`` in [-1, 1]: the loss-optimal
    x0 prediction at pure noise (a Monte-Carlo estimate). Deterministic given ``seed``."""
    return render([parse_prompt(prompt)] * num_renders, np.random.default_rng(seed), frames=frames,
                  resolution=resolution).video.mean(0)


def ideal_sensitivity_at_pure_noise(prompt: str, variants: dict[str, str] | None = None, resolution: int = 32,
                                    frames: int = 8, num_videos: int = 512, seed: int = 0) -> dict[str, float]:
    """The same RMS change for the best possible model at pure noise: ``{name: rms}``.

    At zero SNR the input carries nothing, and the x0 prediction that minimises the
    training loss is the mean video of the prompt, ``E[x0 | prompt]``. This returns the RMS
    difference between the mean of ``num_videos`` renders of ``prompt`` and of each variant
    (a Monte-Carlo estimate; its noise adds in quadrature, at most about
    ``0.5 / sqrt(num_videos)``: 0.015-0.022 measured at 512 renders).
    Compare with :func:`prompt_sensitivity` at the last timestep of a zero-terminal-SNR
    schedule.
    """
    variants = attribute_variants(prompt) if variants is None else dict(variants)
    base = mean_render(prompt, num_videos, seed, resolution, frames)
    return {name: (mean_render(other, num_videos, seed + 1 + i, resolution, frames) - base).pow(2).mean().sqrt().item()
            for i, (name, other) in enumerate(variants.items())}


def frame_variation(video: torch.Tensor) -> torch.Tensor:
    """RMS deviation of each video's frames from that video's time-mean: ``(B,)`` for ``(B, F, C, H, W)``.

    0 for a still picture; a moving object raises it. Pixel units of [-1, 1].
    """
    return (video - video.mean(1, keepdim=True)).pow(2).mean((1, 2, 3, 4)).sqrt()


@torch.no_grad()
def frame_variation_at_pure_noise(pipe, prompt: str, num_videos: int = 8, num_renders: int = 512,
                                  seed: int = 0) -> dict[str, float]:
    """How much the model's x0 prediction at pure noise changes from frame to frame, and the ideal.

    ``model``: :func:`frame_variation` of the mean of ``x0_hat`` at the schedule's last
    timestep over ``num_videos`` pure-noise inputs; ``best``: that of the prompt's mean
    render over ``num_renders`` renders (the loss-optimal prediction there, which ignores
    the input). Averaging over inputs keeps what the prompt sets and shrinks what a given
    input adds (by ``sqrt(num_videos)``), so a model whose noisiest prediction does not move
    with the prompt's motion shows ``model`` far below ``best`` for moving prompts.
    """
    frames, channels, height, width = pipe.video_shape
    t_last = pipe.scheduler.config.num_train_timesteps - 1
    noise = torch.randn((num_videos, frames, channels, height, width), generator=torch.Generator().manual_seed(seed))
    t = torch.full((num_videos,), t_last, dtype=torch.long)
    x0_hat = predicted_x0(pipe, pipe.scheduler.add_noise(torch.zeros_like(noise), noise, t), t, [prompt] * num_videos)
    best = mean_render(prompt, num_renders, seed, height, frames)
    return {"model": frame_variation(x0_hat.mean(0, keepdim=True)).item(), "best": frame_variation(best[None]).item()}
