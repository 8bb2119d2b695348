"""Procedural renderer: prompts -> videos whose ground truth we know.

Videos are tensors of shape ``(B, F, 3, H, W)`` (CogVideoX's latent layout: batch,
frames, channels, height, width) with values in [-1, 1], 32x32 by default. Geometry
constants are in pixels of a 16x16 frame and scaled with the resolution. Shapes have
anti-aliased (1 px soft) edges.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .world import BACKGROUNDS, COLOURS, DEFAULT_BACKGROUND, SHAPES, SIZES, PromptSpec

NUM_FRAMES = 8
#: Default frame size (pixels). Geometry below is given for a 16x16 frame (GEOMETRY_UNIT).
RESOLUTION = 32
GEOMETRY_UNIT = 16
#: Half-extent of an object in pixels of a 16x16 frame, by size.
HALF_EXTENT = {"small": 2.0, "big": 3.25}
#: Distance an object moves over the whole clip, in pixels of a 16x16 frame.
TRAVEL = 6.0
_DIRECTION = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0), "still": (0.0, 0.0)}


@dataclass
class RenderedBatch:
    """Rendered videos and the realised scene of each.

    video: (B, F, 3, H, W) in [-1, 1].
    centres: (B, 2, F, 2) object centre (x, y) in pixels per object slot and frame.
    sizes: list of per-object realised size names (prompt's size, or the one drawn).
    """

    video: torch.Tensor
    centres: np.ndarray
    sizes: list[list[str]]
    specs: list[PromptSpec]


def _sample_trajectory(rng, motion, half, res, frames):
    scale = res / GEOMETRY_UNIT
    travel = TRAVEL * scale
    dx, dy = _DIRECTION[motion]
    lo = np.array([half, half]) + 0.5
    hi = np.array([res - half, res - half]) - 0.5
    d = np.array([dx, dy])
    # choose the start so the whole path stays inside the frame
    start_lo = lo - np.minimum(d * travel, 0)
    start_hi = hi - np.maximum(d * travel, 0)
    start = start_lo + rng.random(2) * np.maximum(start_hi - start_lo, 0)
    t = np.linspace(0.0, 1.0, frames)[:, None]
    return start[None, :] + t * d[None, :] * travel  # (F, 2)


def _coverage(shape_id: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, half: torch.Tensor, res: int):
    """Soft coverage in [0, 1] of each pixel, shape (B, F, H, W).

    shape_id, half: (B,); cx, cy: (B, F). A signed distance (negative inside) per shape,
    mapped to coverage with a 1-pixel linear ramp.
    """
    grid = torch.arange(res, dtype=torch.float32) + 0.5
    px = grid.view(1, 1, 1, res) - cx[..., None, None]
    py = grid.view(1, 1, res, 1) - cy[..., None, None]
    h = half.view(-1, 1, 1, 1)
    d_circle = torch.sqrt(px**2 + py**2) - h
    d_square = torch.maximum(px.abs(), py.abs()) - h * 0.9
    # isosceles triangle pointing up, apex at (0, -h), base at y = +h of width 2h
    d_tri = torch.maximum(py - h, (px.abs() - (py + h) / 2) / np.sqrt(1.25))
    d = torch.where(
        shape_id.view(-1, 1, 1, 1) == 0, d_circle, torch.where(shape_id.view(-1, 1, 1, 1) == 1, d_square, d_tri)
    )
    return (0.5 - d).clamp(0.0, 1.0)


def render(
    specs: list[PromptSpec],
    rng: np.random.Generator,
    frames: int = NUM_FRAMES,
    resolution: int = RESOLUTION,
) -> RenderedBatch:
    """Render one video per prompt spec. Deterministic given ``rng``'s state.

    Sizes a prompt leaves open are drawn from ``rng``; positions are drawn so that the
    two objects of a prompt do not overlap (rejection sampling, 200 tries). Two objects
    moving at right angles sometimes have no such placement; they then get the widest
    closest-approach gap found, and may touch for a frame or two.
    """
    if resolution < 16 or resolution % 16:
        raise ValueError(f"resolution must be a multiple of 16, got {resolution}")
    if frames < 2:
        raise ValueError(f"frames must be >= 2, got {frames}")
    b = len(specs)
    scale = resolution / GEOMETRY_UNIT
    centres = np.zeros((b, 2, frames, 2))
    halves = np.zeros((b, 2))
    shape_ids = np.zeros((b, 2), dtype=np.int64)
    colours = np.zeros((b, 2, 3))
    present = np.zeros((b, 2))
    backgrounds = np.zeros((b, 3))
    sizes = []
    for i, spec in enumerate(specs):
        backgrounds[i] = BACKGROUNDS[spec.background or DEFAULT_BACKGROUND]
        obj_sizes = [o.size or SIZES[rng.integers(len(SIZES))] for o in spec.objects]
        sizes.append(obj_sizes)
        need = (HALF_EXTENT[obj_sizes[0]] + HALF_EXTENT[obj_sizes[-1]]) * scale + 1
        best, best_gap = None, -1.0
        for _ in range(200):
            paths = [
                _sample_trajectory(rng, o.motion, HALF_EXTENT[s] * scale, resolution, frames)
                for o, s in zip(spec.objects, obj_sizes)
            ]
            if len(paths) == 1:
                best = paths
                break
            gap = np.abs(paths[0] - paths[1]).max(axis=1).min()  # closest approach, Chebyshev
            if gap > best_gap:
                best, best_gap = paths, gap
            if gap >= need:
                break
        paths = best
        for k, (o, s, p) in enumerate(zip(spec.objects, obj_sizes, paths)):
            centres[i, k] = p
            halves[i, k] = HALF_EXTENT[s] * scale
            shape_ids[i, k] = SHAPES.index(o.shape)
            colours[i, k] = COLOURS[o.colour]
            present[i, k] = 1.0

    img = torch.as_tensor(backgrounds, dtype=torch.float32).view(b, 1, 3, 1, 1)
    img = img.expand(b, frames, 3, resolution, resolution)
    for k in range(2):
        cov = _coverage(
            torch.as_tensor(shape_ids[:, k]),
            torch.as_tensor(centres[:, k, :, 0], dtype=torch.float32),
            torch.as_tensor(centres[:, k, :, 1], dtype=torch.float32),
            torch.as_tensor(halves[:, k], dtype=torch.float32),
            resolution,
        ) * torch.as_tensor(present[:, k], dtype=torch.float32).view(b, 1, 1, 1)
        col = torch.as_tensor(colours[:, k], dtype=torch.float32).view(b, 1, 3, 1, 1)
        img = img * (1 - cov[:, :, None]) + col * cov[:, :, None]
    return RenderedBatch(video=img * 2 - 1, centres=centres, sizes=sizes, specs=list(specs))
