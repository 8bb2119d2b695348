"""Cheap per-candidate scores to set against BANSA: the baselines and the look-ahead control.

For one prompt and a list of candidate seeds, :func:`attention_scores` returns, per layer,
BANSA (all rows, video rows, text rows; the default K and p and one other setting) and the
row statistics it is made of or competes with: mean row entropy (the "entropy only"
baseline of the paper's ablation), collision probability and the kept-mass term
``E[-log Z]`` (:mod:`anse_lib.rowstats`). :func:`lookahead_x0` returns the model's own
prediction of the clean video after ``s`` denoising steps, the positive control: how much
of a seed's fate is visible that early, at ``s`` steps' cost.

Study helper for: the score-versus-quality study (issue 18; its notebook is not written yet).
"""
from __future__ import annotations

import pandas as pd
import torch

from ..capture import capture_attention


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
            alt = cap.row_statistics(layer, k=other[0], drop_prob=other[1])
            t = cap.text_len
            row.update({
                f"bansa_{layer:02d}": float(main["bansa"].mean()),
                f"bansa_video_{layer:02d}": float(main["bansa"][:, t:].mean()),
                f"bansa_text_{layer:02d}": float(main["bansa"][:, :t].mean()),
                f"bansa_other_{layer:02d}": float(alt["bansa"].mean()),
                f"entropy_{layer:02d}": float(main["entropy"].mean()),
                f"collision_{layer:02d}": float(main["collision"].mean()),
                f"kept_mass_{layer:02d}": float(main["kept_mass_term"].mean()),
            })
        rows.append(row)
    return pd.DataFrame(rows)


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
    scheduler = pipe.scheduler
    original = scheduler.step
    predictions: list[torch.Tensor] = []

    def step(*args, **kwargs):
        kwargs["return_dict"] = True
        out = original(*args, **kwargs)
        predictions.append(out.pred_original_sample.detach().clone())
        if len(predictions) >= steps[-1]:
            raise _Enough
        return (out.prev_sample,)

    scheduler.step = step
    try:
        pipe(prompt, num_videos_per_prompt=len(seeds), generator=[torch.Generator().manual_seed(int(s)) for s in seeds],
             output_type="latent", **pipe_kwargs)
    except _Enough:
        pass
    finally:
        del scheduler.step  # back to the class method
    return {s: predictions[s - 1] for s in steps}


class _Enough(Exception):
    """Ends sampling once the last needed prediction is made."""
