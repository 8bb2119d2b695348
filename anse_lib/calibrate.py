"""The paper's depth rule (d*), and the settings a model folder carries with it.

``calibrate_depth`` scores every layer for some prompts x seeds and finds d*, the smallest
depth whose layers 1..d correlate at r >= 0.7 with all layers (pooled, the paper's reading;
the mean within-prompt r is reported beside it). ``AnseConfig(depth=d).save_pretrained(folder)``
keeps the result with the model; :func:`saved_config` and :func:`calibrated_depth` read it
back, so ``make demo`` and ``python -m anse_lib select`` score the calibrated depth of a
model folder that has one, and every layer otherwise.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import pearsonr

from .config import CONFIG_NAME, AnseConfig
from .probe import attention_layers
from .provenance import MANIFEST_NAME, model_hash
from .select import denoiser, select_noise


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


def calibrate_depth(pipe, prompts: list, seeds: list[int], tau: float = 0.7, config: AnseConfig | None = None,
                    **pipe_kwargs) -> DepthCalibration:
    """The paper's depth rule: the smallest d whose layers 1..d score like all layers.

    Every layer is scored once per prompt and seed; for each depth d the mean score of
    layers 1..d is correlated (Pearson) with the all-layer score.

    Args:
        pipe: a supported diffusers video pipeline.
        prompts: held-out prompts (strings, or anything the pipeline takes).
        seeds: candidate seeds scored for every prompt (at least 3).
        tau: the correlation d* must reach, in (0, 1] (the paper's 0.7).
        config: the other settings of the score (K, p, attention, ...); its depth and layers are
            ignored (every layer is scored).
        **pipe_kwargs: the pipeline's arguments, as in :func:`select_noise`.

    Returns:
        :class:`DepthCalibration` with ``d_star`` (``None`` if no depth reaches ``tau``)
        and the curve of r against d, pooled and within prompt. ``AnseConfig(depth=cal.d_star)
        .save_pretrained(model_folder)`` keeps the depth with the model.

    Examples:
        >>> from anse_lib import calibrate_depth
        >>> from anse_lib.toyworld import load_toy_pipeline
        >>> cal = calibrate_depth(load_toy_pipeline(), ["a big red circle moving left"], seeds=[0, 1, 2, 3])
        >>> list(cal.curve.depth), round(float(cal.curve.r_pooled.iloc[-1]), 6)  # all layers: r = 1
        ([1, 2, 3, 4], 1.0)
    """
    if not 0 < tau <= 1:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    if len(seeds) < 3:
        raise ValueError(f"need at least 3 seeds per prompt to correlate, got {len(seeds)}")
    config = (config or AnseConfig()).replace(depth=None, layers=None)
    frames = []
    for i, prompt in enumerate(prompts):
        res = select_noise(pipe, prompt, config, seeds=seeds, **pipe_kwargs)
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


def _folder(pipe_or_folder) -> Path | None:
    if isinstance(pipe_or_folder, (str, Path)):
        return Path(pipe_or_folder)
    folder = getattr(pipe_or_folder, "name_or_path", None)
    return Path(folder) if folder else None


def saved_config(pipe_or_folder) -> AnseConfig | None:
    """The :class:`~anse_lib.config.AnseConfig` saved in a model folder (``anse_config.json``),
    or ``None`` if the folder (a pipeline's ``name_or_path``) has none."""
    folder = _folder(pipe_or_folder)
    if folder is None or not (folder / CONFIG_NAME).is_file():
        return None
    return AnseConfig.from_pretrained(folder)


def calibrated_depth(pipe) -> tuple[int | None, str]:
    """The depth to score by default, and where it comes from.

    ``(d, description)`` when the pipeline's folder has an ``anse_config.json`` with a depth
    (for the shipped toy model: ``benchmarks/toy_depth_calibration.py``, the paper's rule on
    the held-out sweep); ``(None, reason)`` (all layers) otherwise.

    Examples:
        >>> from anse_lib.calibrate import calibrated_depth
        >>> from anse_lib.toyworld import load_toy_pipeline
        >>> calibrated_depth(load_toy_pipeline())[0]
        3
    """
    folder = _folder(pipe)
    path = None if folder is None else folder / CONFIG_NAME
    saved = json.loads(path.read_text()) if path is not None and path.is_file() else {}
    config = AnseConfig.from_dict(saved) if saved else None
    if config is None or config.depth is None:
        return None, "all layers (no calibrated depth for this model; see calibrate_depth)"
    saved_for = saved.get("_model_hash")
    if saved_for is not None and (folder / MANIFEST_NAME).is_file():
        current = model_hash(folder)
        if saved_for != current:
            return None, (f"all layers (the depth in {path} was calibrated for model {saved_for[:12]}, "
                          f"not this folder's {current[:12]}: re-run the calibration)")
    n = len(attention_layers(denoiser(pipe), config.attention))
    source = saved.get("_source") or f"{CONFIG_NAME} in the model folder"
    return config.depth, f"layers 1..{config.depth} of {n}, {source}"
