"""Deliberate corruptions of rendered videos, to validate each ToyBench metric.

Each takes and returns frames ``(F, H, W, 3)`` in [0, 1] (see ``toybench.as_frames``) and
breaks one thing a metric is meant to see.
"""
from __future__ import annotations

import numpy as np

from .toybench import soft_coverage
from .world import BACKGROUNDS, COLOURS, DEFAULT_BACKGROUND, PromptSpec


def _first_object(frames, spec: PromptSpec):
    bg = np.array(BACKGROUNDS[spec.background or DEFAULT_BACKGROUND])
    col = np.array(COLOURS[spec.objects[0].colour])
    return soft_coverage(frames, col, bg)[..., None], col, bg


def wrong_colour(frames: np.ndarray, spec: PromptSpec) -> np.ndarray:
    """Repaint the first object in a colour no object of the prompt has."""
    cov, col, _ = _first_object(frames, spec)
    used = {o.colour for o in spec.objects}
    new = np.array(COLOURS[next(c for c in COLOURS if c not in used)])
    return np.clip(frames + cov * (new - col), 0, 1)


def reversed_motion(frames: np.ndarray, spec: PromptSpec | None = None) -> np.ndarray:
    """Play the clip backwards: every mover goes the other way."""
    return frames[::-1].copy()


def flicker(frames: np.ndarray, spec: PromptSpec | None = None, amount: float = 0.25, seed: int = 0) -> np.ndarray:
    """Add a random brightness offset in [-amount, amount] to each whole frame."""
    rng = np.random.default_rng(seed)
    return np.clip(frames + rng.uniform(-amount, amount, (frames.shape[0], 1, 1, 1)), 0, 1)


def noise(frames: np.ndarray, spec: PromptSpec | None = None, sigma: float = 0.25, seed: int = 0) -> np.ndarray:
    """Add i.i.d. Gaussian pixel noise of standard deviation ``sigma``."""
    rng = np.random.default_rng(seed)
    return np.clip(frames + rng.normal(0, sigma, frames.shape), 0, 1)


def vanishing(frames: np.ndarray, spec: PromptSpec, every: int = 2) -> np.ndarray:
    """Erase the first object in every ``every``-th frame (it blinks out of existence)."""
    cov, col, bg = _first_object(frames, spec)
    out = frames.copy()
    out[::every] = out[::every] - cov[::every] * (col - bg)
    return np.clip(out, 0, 1)


#: corruption name -> (function, the ToyBench metric it must lower)
CORRUPTIONS = {
    "wrong colour": (wrong_colour, "colour"),
    "reversed motion": (reversed_motion, "motion"),
    "flicker": (flicker, "temporal_flickering"),
    "noise": (noise, "imaging_quality"),
    "vanishing object": (vanishing, "subject_consistency"),
}


def validation_table(specs: list[PromptSpec], videos):
    """Mean ToyBench of rendered ground-truth videos and of each corruption of them.

    One row per version (ground truth, then each corruption), one column per metric.
    """
    import pandas as pd

    from .toybench import as_frames, toybench_table

    frames = [as_frames(v) for v in videos]
    rows = {"ground truth": toybench_table(frames, specs).drop(columns="prompt").mean()}
    for name, (fn, _) in CORRUPTIONS.items():
        rows[name] = toybench_table([fn(f, s) for f, s in zip(frames, specs)], specs).drop(columns="prompt").mean()
    return pd.DataFrame(rows).T
