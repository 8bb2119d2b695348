"""Pictures for the workbook: attention rows, videos as film strips and inline GIFs.

Every figure a notebook shows is also written to ``figures/`` with :func:`save_figure`
(GIFs with :func:`save_gif`). ``ANSE_FIGURES_DIR`` in the environment names another folder:
``make test`` sets it, so that running the notebooks under nbval leaves ``figures/`` as committed.
"""
from __future__ import annotations

import base64
import io
import os
import tempfile
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

from .provenance import _umask

FIGURES_DIR = Path(os.environ.get("ANSE_FIGURES_DIR") or Path(__file__).resolve().parents[1] / "figures")


def save_figure(fig: matplotlib.figure.Figure, name: str, folder: str | os.PathLike = FIGURES_DIR,
                dpi: int = 110) -> Path:
    """Write ``fig`` to ``folder/name.png`` atomically (no timestamp metadata) and return the path."""
    if not name or "/" in name or name.endswith(".png"):
        raise ValueError(f"figure name must be a bare name without '/' or '.png', got {name!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".png")
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def plot_rows(rows: torch.Tensor, titles: list[str] | None = None, axes=None, color="C0"):
    """Bar chart of each attention row ``(R, Nk)`` as a distribution over keys."""
    rows = torch.as_tensor(rows).float()
    if axes is None:
        _, axes = plt.subplots(1, rows.shape[0], figsize=(3.2 * rows.shape[0], 2.4), sharey=True, squeeze=False)
        axes = axes[0]
    for i, (ax, row) in enumerate(zip(axes, rows)):
        ax.bar(np.arange(row.numel()), row.numpy(), color=color, width=0.85)
        ax.set_xlabel("key j")
        if titles:
            ax.set_title(titles[i], fontsize=10)
    axes[0].set_ylabel("A[i, j]")
    return axes


def to_uint8_frames(video) -> np.ndarray:
    """A video as uint8 frames ``(F, H, W, 3)``.

    Accepts ``(F, H, W, 3)`` floats in [0, 1] (a pipeline's ``np`` output), a tensor
    ``(F, 3, H, W)`` in [-1, 1] (rendered / latent layout), or uint8 frames: a list of PIL
    images (a diffusers pipeline's default ``pil`` output, e.g. CogVideoX's) or a uint8 array
    ``(F, H, W, 3)``, taken as they are.
    """
    if not isinstance(video, torch.Tensor):
        as_array = np.stack([np.asarray(f) for f in video]) if isinstance(video, (list, tuple)) else np.asarray(video)
        if as_array.dtype == np.uint8:
            if as_array.ndim != 4 or as_array.shape[-1] != 3:
                raise ValueError(f"uint8 frames must be (F, H, W, 3), got shape {as_array.shape}")
            return as_array
        video = as_array
    v = video.detach().cpu().float().numpy() if isinstance(video, torch.Tensor) else np.asarray(video, dtype=np.float32)
    if v.ndim != 4:
        raise ValueError(f"a video must be 4-d (F, H, W, 3) or (F, 3, H, W), got shape {v.shape}")
    if v.shape[-1] != 3 and v.shape[1] == 3:
        v = (v.transpose(0, 2, 3, 1) + 1) / 2
    return (np.clip(v, 0, 1) * 255 + 0.5).astype(np.uint8)


def gif_bytes(video, scale: int = 8, fps: int = 4) -> bytes:
    """An animated, looping GIF of a video, each pixel blown up to ``scale x scale``."""
    from PIL import Image

    frames = to_uint8_frames(video).repeat(scale, axis=1).repeat(scale, axis=2)
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return buf.getvalue()


def save_gif(video, name: str, folder: str | os.PathLike = FIGURES_DIR, **kw) -> Path:
    from .provenance import atomic_write_bytes

    path = Path(folder) / f"{name}.gif"
    atomic_write_bytes(path, gif_bytes(video, **kw))
    return path


def videos_html(videos, captions: list[str] | None = None, scale: int = 6, fps: int = 4, per_row: int = 8):
    """Inline animated GIFs with captions, for a notebook (an ``IPython.display.HTML``)."""
    from IPython.display import HTML

    cells = []
    for i, v in enumerate(videos):
        b64 = base64.b64encode(gif_bytes(v, scale=scale, fps=fps)).decode()
        cap = captions[i] if captions else ""
        cells.append(
            f'<div style="display:inline-block;margin:4px;text-align:center;vertical-align:top;'
            f'font-size:11px;width:{16 * scale + 8}px"><img src="data:image/gif;base64,{b64}"/><br>{cap}</div>'
        )
    rows = ["".join(cells[i : i + per_row]) for i in range(0, len(cells), per_row)]
    return HTML("<div>" + "<br>".join(rows) + "</div>")


def log_ticks(ax, values, axis: str = "x"):
    """Put ticks of a log axis at ``values``, written as plain numbers (2, 5, 10, not 10^0)."""
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(list(values)))
    target.set_major_formatter(ScalarFormatter())
    target.set_minor_locator(NullLocator())
    return ax


def film_strips(videos, labels: list[str] | None = None, title: str | None = None, frame_step: int = 1):
    """A static figure: one row per video, its frames left to right, ``labels`` beside each row."""
    frames = [to_uint8_frames(v)[::frame_step] for v in videos]
    n, f = len(frames), frames[0].shape[0]
    fig, axes = plt.subplots(n, f, figsize=(f * 0.9, n * 0.95 + (0.3 if title else 0)), squeeze=False)
    for r in range(n):
        for c in range(f):
            ax = axes[r, c]
            ax.imshow(frames[r][c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {c * frame_step}", fontsize=8)
        if labels:
            axes[r, 0].set_ylabel(labels[r], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_training_curve(curve, ax=None):
    """Training loss (v-prediction MSE) against step, log scale, from a training-curve table."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3))
    ax.plot(curve["step"], curve["loss"], lw=1)
    ax.set(yscale="log", xlabel="training step", ylabel="v-prediction MSE (50-step mean)", title="toy model training")
    return ax


def plot_guidance_sweep(table, targets=("semantic", "quality"), axes=None):
    """Mean ToyBench targets against guidance scale, one line per ``guidance_rescale``.

    ``table``: one row per video with ``guidance``, ``guidance_rescale`` and the targets
    (the cached ``heldout_quality_guidance`` sweep). Guidance 1 (no CFG) is drawn on every line.
    """
    if axes is None:
        _, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3), squeeze=False)
        axes = axes[0]
    has_unguided = bool((table.guidance == 1.0).any())
    unguided = table[table.guidance == 1.0][list(targets)].mean()
    for rescale in sorted(table.guidance_rescale.unique()):
        guided = table[(table.guidance_rescale == rescale) & (table.guidance != 1.0)]
        line = guided.groupby("guidance")[list(targets)].mean()
        if has_unguided:
            line.loc[1.0] = unguided
        line = line.sort_index()
        for ax, t in zip(axes, targets):
            ax.plot(line.index, line[t], marker="o", label=f"guidance_rescale {rescale:g}")
    for ax, t in zip(axes, targets):
        ax.set(xlabel="guidance scale (1 = no CFG)", ylabel=f"mean {t}", title=t)
    axes[0].legend(fontsize=8)
    return axes


def plot_prompt_sensitivity(table, ideal: dict | None = None, ax=None):
    """How much swapping one word moves the model's x0 prediction, against timestep (log y).

    ``table``: the long DataFrame of :func:`anse_lib.toyworld.sensitivity.prompt_sensitivity`
    (``timestep, attribute, rms``; several prompts are averaged). ``ideal``:
    ``{attribute: rms}`` of the best possible model at pure noise, drawn as crosses in the
    attribute's colour just right of the largest timestep (beside the model's point, not on it).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6.2, 3.2))
    mean = table.groupby(["attribute", "timestep"], sort=False).rms.mean()
    first, last = int(table.timestep.min()), int(table.timestep.max())
    beside = last + 0.08 * max(last - first, 1)
    for i, attr in enumerate(dict.fromkeys(table.attribute)):
        line = mean.loc[attr].sort_index()
        ax.plot(line.index, line.values, marker="o", color=f"C{i}", label=attr)
        if ideal is not None and attr in ideal:
            ax.plot([beside], [ideal[attr]], marker="x", markersize=9, mew=2, color=f"C{i}", ls="none", zorder=3)
    ax.set(yscale="log", xlabel="timestep (999 = pure noise)", ylabel="RMS change of predicted x0 (pixels, [-1, 1])",
           title="which words move the prediction"
           + (f"\n(x, right of t = {last}: best possible model)" if ideal else ""))
    ax.legend(title="swapped word", fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
    return ax


def plot_candidate_scores(selection, ax=None, title: str | None = None, errors=None):
    """Every candidate's BANSA as a point (the winner highlighted), on a zoomed y axis.

    ``selection``: an :class:`~anse_lib.select.AnseSelectionOutput` (its ``scores`` table).

    Points, not bars: the axis spans only the candidates' range, where bars from a cut-off
    baseline would make small differences look large. ``errors``: optional ``(M,)``
    Monte-Carlo standard deviations (e.g. of each candidate's score over several mask
    seeds), drawn as error bars.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 2.6))
    s = selection.scores
    ax.errorbar(range(len(s)), s.bansa, yerr=errors, fmt="none", ecolor="0.3", capsize=3 if errors is not None else 0)
    ax.scatter(range(len(s)), s.bansa, c=["C2" if w else "C0" for w in s.winner], zorder=3)
    spread = 0 if errors is None else float(max(errors))
    lo, hi = s.bansa.min() - spread, s.bansa.max() + spread
    pad = (hi - lo) * 0.3 + 1e-6
    ax.set(ylim=(lo - pad, hi + pad), xlabel="candidate seed (green: the winner)", ylabel="BANSA, nats (zoomed)",
           xticks=range(len(s)))
    ax.set_xticklabels(s.seed, rotation=90, fontsize=6)
    if title:
        ax.set_title(title if len(title) < 40 else title[:37] + "...", fontsize=8)
    return ax
