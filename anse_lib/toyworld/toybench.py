"""ToyBench: ground-truth quality of a toy-world video, from its pixels and its prompt.

Named after VBench where the meaning matches. A video is ``(F, H, W, 3)`` in [0, 1] (a
pipeline's ``np`` output) or ``(F, 3, H, W)`` in [-1, 1] (renderer / latent layout).

Objects are found by colour: a pixel belongs to the prompted object of colour c when it
is nearer to c than to the background and to every other palette colour, within
:data:`COLOUR_RADIUS`. Everything is measured in pixels of a 16x16 frame (scaled with
the resolution).

Semantic checks (each 1 right / 0 wrong, per object where it applies):
  colour, shape, size (only where the prompt names it), count (the scene as a whole),
  motion direction. ``semantic`` is the mean of all checks that apply.
Quality scores (each in [0, 1], 1 best):
  subject_consistency (the object's shape persists: IoU of its centred masks in
  consecutive frames), background_consistency (background pixels stay their colour),
  temporal_flickering (1 minus the frame-to-frame jitter of mean brightness),
  motion_smoothness (1 minus the centroids' acceleration), imaging_quality (share of
  pixels that are a clean palette or background colour). ``quality`` is their mean.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from .render import GEOMETRY_UNIT
from .world import BACKGROUNDS, COLOURS, DEFAULT_BACKGROUND, PromptSpec, parse_prompt

#: A pixel farther than this (RGB distance, [0, 1] units) from every palette and
#: background colour is "impure" and belongs to no object.
COLOUR_RADIUS = 0.45
#: An object is present when its mean area per frame reaches this (pixels at 16x16).
MIN_AREA = 3.0
#: Mean area per frame separating small from big objects (pixels at 16x16); rendered
#: small objects cover 6-16 px, big ones 21-49 px.
SIZE_SPLIT_AREA = 18.0
#: Fill ratio (area / bounding box) above which a symmetric shape is a square.
SQUARE_FILL = 0.9
#: Vertical centroid offset (fraction of height, + = low) above which a shape is a triangle.
TRIANGLE_OFFSET = 0.06
#: Net travel (pixels at 16x16) below which an object is "still"; rendered movers travel 6.
STILL_TRAVEL = 2.0
#: Scales turning raw deviations into [0, 1] quality scores (see each metric).
FLICKER_SCALE = 0.05   # mean |brightness jump| per frame, [0, 1] units
ACCEL_SCALE = 1.0      # mean |centroid acceleration|, px / frame^2 at 16x16
BACKGROUND_SCALE = 0.2  # mean |background pixel - background colour|, [0, 1] units
PURITY_RADIUS = 0.15   # a pixel within this of a palette/background colour is clean

SEMANTIC_CHECKS = ("colour", "shape", "size", "count", "motion")
QUALITY_METRICS = ("subject_consistency", "background_consistency", "temporal_flickering",
                   "motion_smoothness", "imaging_quality")


@dataclass
class ToyBenchScores:
    colour: float
    shape: float
    size: float  # NaN when the prompt names no size
    count: float
    motion: float
    semantic: float
    subject_consistency: float
    background_consistency: float
    temporal_flickering: float
    motion_smoothness: float
    imaging_quality: float
    quality: float

    def as_dict(self) -> dict:
        return asdict(self)


def as_frames(video) -> np.ndarray:
    """Any supported video layout as float ``(F, H, W, 3)`` in [0, 1]."""
    v = video.detach().cpu().float().numpy() if isinstance(video, torch.Tensor) else np.asarray(video, dtype=np.float32)
    if v.ndim != 4:
        raise ValueError(f"a video must be 4-d, (F, H, W, 3) in [0, 1] or (F, 3, H, W) in [-1, 1]; got shape {v.shape}")
    if v.shape[-1] == 3:
        return v
    if v.shape[1] == 3:
        return (v.transpose(0, 2, 3, 1) + 1) / 2
    raise ValueError(f"cannot find the colour axis of a video of shape {v.shape}")


def _palette(spec: PromptSpec) -> tuple[np.ndarray, list[str], np.ndarray]:
    names = list(COLOURS)
    return np.array([COLOURS[n] for n in names]), names, np.array(BACKGROUNDS[spec.background or DEFAULT_BACKGROUND])


def colour_labels(frames: np.ndarray, spec: PromptSpec) -> np.ndarray:
    """Label every pixel ``(F, H, W)``: palette index, -1 background, -2 impure."""
    palette, _, bg = _palette(spec)
    refs = np.concatenate([palette, bg[None]])  # (P+1, 3)
    d = np.linalg.norm(frames[..., None, :] - refs, axis=-1)  # (F, H, W, P+1)
    nearest = d.argmin(-1)
    labels = np.where(nearest == len(palette), -1, nearest)
    return np.where(d.min(-1) > COLOUR_RADIUS, -2, labels)


def soft_coverage(frames: np.ndarray, colour: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] of each pixel by an object of ``colour`` on ``bg``: ``(F, H, W)``.

    The projection of the pixel onto the background -> colour line; exact for the
    renderer's linear anti-aliasing, and it locates a moving object to sub-pixel accuracy.
    """
    axis = colour - bg
    return np.clip(((frames - bg) @ axis) / (axis @ axis), 0.0, 1.0)


def _soft_centroids(cov: np.ndarray) -> np.ndarray:
    """Coverage-weighted centroids (x, y) per frame, NaN where a frame has no coverage: ``(F, 2)``."""
    f, h, w = cov.shape
    mass = cov.sum((1, 2))
    xs = (cov.sum(1) * (np.arange(w) + 0.5)).sum(1)
    ys = (cov.sum(2) * (np.arange(h) + 0.5)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass[:, None] > 0.5, np.stack([xs / mass, ys / mass], 1), np.nan)


def _object_track(mask: np.ndarray):
    """Per-frame area, centroid (x, y), fill ratio and vertical offset of a mask ``(F, H, W)``."""
    areas, cents, fills, offsets = [], [], [], []
    for m in mask:
        ys, xs = np.nonzero(m)
        areas.append(len(xs))
        if len(xs) == 0:
            cents.append((np.nan, np.nan))
            continue
        cents.append((xs.mean() + 0.5, ys.mean() + 0.5))
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        fills.append(len(xs) / (h * w))
        offsets.append((ys.mean() - (ys.min() + ys.max()) / 2) / h)
    return np.array(areas, float), np.array(cents, float), fills, offsets


def _centred_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks after moving b's centroid onto a's (integer shift)."""
    if a.sum() == 0 and b.sum() == 0:
        return 1.0
    if a.sum() == 0 or b.sum() == 0:
        return 0.0
    ya, xa = np.argwhere(a).mean(0)
    yb, xb = np.argwhere(b).mean(0)
    shifted = np.roll(b, (int(round(ya - yb)), int(round(xa - xb))), axis=(0, 1))
    return float((a & shifted).sum() / (a | shifted).sum())


def classify_shape(fill: float, offset: float) -> str:
    if offset > TRIANGLE_OFFSET:
        return "triangle"
    return "square" if fill > SQUARE_FILL else "circle"


def classify_motion(centroids: np.ndarray, scale: float) -> str:
    valid = centroids[~np.isnan(centroids).any(1)]
    if len(valid) < 2:
        return "unknown"
    t = np.nonzero(~np.isnan(centroids).any(1))[0]
    slope = np.polyfit(t, valid, 1)[0]  # px / frame, (x, y)
    travel = slope * (len(centroids) - 1) / scale
    if np.abs(travel).max() < STILL_TRAVEL:
        return "still"
    if abs(travel[0]) >= abs(travel[1]):
        return "right" if travel[0] > 0 else "left"
    return "down" if travel[1] > 0 else "up"


def toybench(video, prompt: str | PromptSpec) -> ToyBenchScores:
    """Score one video against its prompt (see the module docstring for each metric)."""
    return _score(video, prompt)[0]


def shape_calls(video, prompt: str | PromptSpec) -> list[tuple[str, str]]:
    """What the shape check saw: ``(prompted shape, classified shape)`` per prompted object.

    The classified shape is ``"absent"`` where the object's colour covers too few pixels
    to be found (the shape check then counts as wrong). Same code path as :func:`toybench`.
    """
    return _score(video, prompt)[1]


def _score(video, prompt) -> tuple[ToyBenchScores, list[tuple[str, str]]]:
    spec = parse_prompt(prompt) if isinstance(prompt, str) else prompt
    frames = as_frames(video)
    n_frames, res = frames.shape[0], frames.shape[1]
    scale = res / GEOMETRY_UNIT
    labels = colour_labels(frames, spec)
    _, names, bg = _palette(spec)
    min_area = MIN_AREA * scale**2

    present = [i for i in range(len(names)) if (labels == i).sum() / n_frames >= min_area]
    checks = {c: [] for c in SEMANTIC_CHECKS}
    checks["count"].append(float(len(present) == len(spec.objects)))
    subject, smooth, shapes = [], [], []
    for obj in spec.objects:
        idx = names.index(obj.colour)
        mask = labels == idx
        areas, _, fills, offsets = _object_track(mask)
        others = (labels >= 0) & ~mask
        cents = _soft_centroids(soft_coverage(frames, np.array(COLOURS[obj.colour]), bg) * ~others)
        here = areas.mean() >= min_area
        checks["colour"].append(float(here))
        shapes.append((obj.shape, classify_shape(np.median(fills), np.median(offsets)) if here else "absent"))
        if not here:
            for c in ("shape", "motion"):
                checks[c].append(0.0)
            if obj.size:
                checks["size"].append(0.0)
            subject.append(0.0)
            smooth.append(0.0)
            continue
        checks["shape"].append(float(shapes[-1][1] == obj.shape))
        if obj.size:
            size = "big" if areas.mean() / scale**2 >= SIZE_SPLIT_AREA else "small"
            checks["size"].append(float(size == obj.size))
        checks["motion"].append(float(classify_motion(cents, scale) == obj.motion))
        subject.append(float(np.mean([_centred_iou(mask[t], mask[t + 1]) for t in range(n_frames - 1)])))
        valid = cents[~np.isnan(cents).any(1)]
        accel = np.abs(np.diff(valid, 2, axis=0)).mean() / scale if len(valid) >= 3 else np.inf
        smooth.append(float(np.clip(1 - accel / ACCEL_SCALE, 0, 1)) if len(valid) == n_frames else 0.0)

    background = labels == -1
    bg_dev = np.abs(frames[background] - bg).mean() if background.any() else 1.0
    brightness = frames.mean(axis=(1, 2, 3))
    flicker = np.abs(np.diff(brightness)).mean()
    refs = np.concatenate([np.array([COLOURS[n] for n in names]), bg[None]])
    purity = (np.linalg.norm(frames[..., None, :] - refs, axis=-1).min(-1) <= PURITY_RADIUS).mean()

    scores = {c: float(np.mean(v)) if v else float("nan") for c, v in checks.items()}
    scores["semantic"] = float(np.mean([x for v in checks.values() for x in v]))
    quality = {
        "subject_consistency": float(np.mean(subject)),
        "background_consistency": float(np.clip(1 - bg_dev / BACKGROUND_SCALE, 0, 1)),
        "temporal_flickering": float(np.clip(1 - flicker / FLICKER_SCALE, 0, 1)),
        "motion_smoothness": float(np.mean(smooth)),
        "imaging_quality": float(purity),
    }
    quality["quality"] = float(np.mean(list(quality.values())))
    return ToyBenchScores(**scores, **quality), shapes


def toybench_table(videos, prompts) -> pd.DataFrame:
    """One row of ToyBench scores per video; ``prompts`` are strings or specs (one per video)."""
    rows = []
    for v, p in zip(videos, prompts):
        rows.append({"prompt": str(p), **toybench(v, p).as_dict()})
    return pd.DataFrame(rows)
