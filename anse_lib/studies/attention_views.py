"""Pictures of a model's captured attention (notebook 04, and the explorer's building blocks).

Everything here reads an :class:`~anse_lib.capture.AttentionCapture`; nothing computes
BANSA anew (per-row scores and row statistics come from :mod:`anse_lib.rowstats` with the
probe's own masks). Attention weights are drawn as ``a x N``: 1 is the uniform row's
weight, 10 is ten times it, on one logarithmic colour scale per figure.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import LogNorm, Normalize

from ..bansa import _masked_sample, keep_masks
from ..rowstats import STATISTICS

WEIGHT_LABEL = "attention weight x N\n(1 = uniform over all N keys)"


def object_patch(capture, video, frame: int = 0) -> tuple[int, int]:
    """``(row, col)`` of the patch of ``frame`` most unlike the frame's background colour.

    video: ``(F, H, W, 3)`` in [0, 1], the video this capture's seed produces. The
    background is the frame's median colour; a patch's distance is its pixels' mean
    absolute difference from it.
    """
    f, h, w = capture.grid
    img = torch.as_tensor(np.asarray(video[frame]), dtype=torch.float32)  # (H, W, 3)
    ph, pw = img.shape[0] // h, img.shape[1] // w
    background = img.reshape(-1, 3).median(0).values
    dist = (img - background).abs().sum(-1).reshape(h, ph, w, pw).mean((1, 3))
    i = int(dist.argmax())
    return i // w, i % w


def _weights(capture, layer, head, query) -> torch.Tensor:
    """``(N,)`` one row's weights x N (head None: mean over heads)."""
    probs = capture.mean_probs(layer, [query]) if head is None else capture.probs(layer, head, [query])
    return probs[0] * capture.num_tokens


def _frames_row(axes, values, capture, norm, cmap="magma"):
    """Draw ``(N,)`` per-key values as F frame panels; returns the last image."""
    maps = capture.video_map(values).numpy()
    im = None
    for f, ax in enumerate(axes):
        im = ax.imshow(maps[f], norm=norm, cmap=cmap)
        ax.set_xticks([])
        ax.set_yticks([])
    return im


def _mark_query(axes, capture, query: int):
    """A cyan square on the query's own patch, when the query is a video token."""
    if query >= capture.text_len:
        i = query - capture.text_len
        _, h, w = capture.grid
        axes[i // (h * w)].plot([i % w], [(i // w) % h], marker="s", ms=7, mfc="none", mec="cyan", mew=1.5)


def _text_panel(ax, values, capture, norm, cmap="magma"):
    words = capture.text_values(values).numpy()
    ax.imshow(words[:, None], norm=norm, cmap=cmap, aspect="auto")
    ax.set_yticks(range(len(capture.words)), capture.words, fontsize=7)
    ax.set_xticks([])
    ax.yaxis.tick_right()


def weight_norm(values: list[torch.Tensor]) -> LogNorm:
    """One logarithmic colour scale for weights x N, from the 1st to the 99.9th percentile."""
    v = torch.cat([x.reshape(-1) for x in values]).clamp_min(1e-6).numpy()
    lo, hi = np.percentile(v, [1, 99.9])
    return LogNorm(vmin=max(lo, 1e-3), vmax=max(hi, lo * 1.01))


def query_rows_figure(capture, layer: int, queries: dict, head: int | None = None, title: str | None = None):
    """Each query row's attention over the video keys (one panel per frame) and the prompt's words.

    queries: ``{label: token index}``. head None: mean over heads.
    """
    rows = {label: _weights(capture, layer, head, q) for label, q in queries.items()}
    norm = weight_norm(list(rows.values()))
    nf = capture.grid[0]
    fig, axes = plt.subplots(len(rows), nf + 1, figsize=(1.25 * nf + 1.6, 1.45 * len(rows) + 0.8),
                             gridspec_kw=dict(width_ratios=[1] * nf + [0.35]), squeeze=False)
    for r, (label, values) in enumerate(rows.items()):
        im = _frames_row(axes[r, :nf], values, capture, norm)
        _text_panel(axes[r, nf], values, capture, norm)
        axes[r, 0].set_ylabel(label, fontsize=8)
        _mark_query(axes[r, :nf], capture, queries[label])
    for f in range(nf):
        axes[0, f].set_title(f"frame {f}", fontsize=8)
    axes[0, nf].set_title("words", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.8, label=WEIGHT_LABEL, pad=0.12)
    fig.text(0.01, 0.01, "cyan square: the query's own patch", fontsize=8)
    head_txt = "mean over heads" if head is None else f"head {head}"
    fig.suptitle(title or f"Where each query row looks: layer {layer}, {head_txt}, step {capture.step} "
                 f"(t = {capture.timestep:.0f})", fontsize=10)
    return fig


def masked_samples(capture, layer: int, head: int, query: int, k: int | None = None,
                   drop_prob: float | None = None, mask_seed: int | None = None) -> torch.Tensor:
    """``(K, N)`` the row's K Bernoulli samples ``m_k a / Z_k`` with the probe's masks for this head and row."""
    k = capture.k if k is None else k
    drop_prob = capture.drop_prob if drop_prob is None else drop_prob
    mask_seed = capture.mask_seed if mask_seed is None else mask_seed
    a = capture.probs(layer, head, [query])[0]
    m = keep_masks(k, torch.tensor([head]), torch.tensor([query]), a.numel(), drop_prob, mask_seed, layer)[:, 0, 0]
    return _masked_sample(a, m)[0]  # the scorer's own renormalised samples


def masked_samples_figure(capture, layer: int, head: int, query: int, label: str, n: int = 3):
    """The row, ``n`` of its K masked samples and their mean, as frame panels on one scale."""
    samples = masked_samples(capture, layer, head, query)
    a = capture.probs(layer, head, [query])[0]
    rows = {"the row": a, **{f"mask {i + 1} of {len(samples)}": samples[i] for i in range(n)},
            f"mean of\n{len(samples)} samples": samples.mean(0)}
    rows = {key: v * capture.num_tokens for key, v in rows.items()}
    norm = weight_norm(list(rows.values()))
    nf = capture.grid[0]
    fig, axes = plt.subplots(len(rows), nf, figsize=(1.25 * nf + 1.2, 1.3 * len(rows) + 0.6), squeeze=False)
    for r, (name, values) in enumerate(rows.items()):
        im = _frames_row(axes[r], values, capture, norm)
        axes[r, 0].set_ylabel(name, fontsize=8)
        _mark_query(axes[r], capture, query)
    for f in range(nf):
        axes[0, f].set_title(f"frame {f}", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.8, label=WEIGHT_LABEL)
    fig.suptitle(f"{label}: the row and its masked samples, white: dropped keys\n(layer {layer}, head {head}, "
                 f"K = {capture.k}, p = {capture.drop_prob})", fontsize=10)
    return fig


def per_token_maps_figure(maps: dict, capture, title: str, norm=None,
                          label: str = "BANSA of the video token's row (nats)", cmap: str = "viridis"):
    """Per-token values ``{row label: (N,)}`` drawn over the frames, one shared scale and colourbar.

    The scale spans the video tokens' values unless ``norm`` is given.
    """
    if norm is None:
        v = torch.cat([m[capture.text_len:] for m in maps.values()]).numpy()
        norm = Normalize(vmin=float(v.min()), vmax=float(v.max()))
    nf = capture.grid[0]
    fig, axes = plt.subplots(len(maps), nf, figsize=(1.25 * nf + 1.2, 1.3 * len(maps) + 0.6), squeeze=False)
    for r, (name, values) in enumerate(maps.items()):
        im = _frames_row(axes[r], values, capture, norm, cmap=cmap)
        axes[r, 0].set_ylabel(name, fontsize=8)
    for f in range(nf):
        axes[0, f].set_title(f"frame {f}", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.8, label=label)
    fig.suptitle(title, fontsize=10)
    return fig


def bansa_maps_figure(capture, by: str = "layer", layer: int | None = None, norm=None, title: str | None = None):
    """Per-token BANSA over the frames: one row of panels per layer (mean over heads) or per head of ``layer``."""
    if by == "layer":
        maps = {f"layer {i}": capture.row_statistics(i)["bansa"].mean(0) for i in capture.layers}
    elif by == "head":
        if layer is None:
            raise ValueError("by='head' needs layer=")
        maps = {f"head {h}": v for h, v in enumerate(capture.row_statistics(layer)["bansa"])}
    else:
        raise ValueError(f"by must be 'layer' or 'head', got {by!r}")
    where = "mean over heads" if by == "layer" else f"layer {layer}"
    return per_token_maps_figure(maps, capture, title or f"Where the uncertainty sits: per-token BANSA, {where}, "
                                 f"step {capture.step}", norm=norm)


def candidate_map(capture, mask_seed: int | None = None) -> torch.Tensor:
    """``(N,)`` per-token BANSA averaged over heads and layers: its mean is the candidate's score.

    ``mask_seed``: score with other masks than the probe's (same K and p).
    """
    return torch.stack([capture.row_statistics(i, mask_seed=mask_seed)["bansa"].mean(0)
                        for i in capture.layers]).mean(0)


def top_words(capture, layer: int, query: int, n: int = 3, head: int | None = None) -> list[tuple[str, float]]:
    """The ``n`` prompt words a row weighs most: ``[(word, weight x N), ...]`` (head None: mean over heads)."""
    w = capture.text_values(_weights(capture, layer, head, query))
    order = torch.argsort(w, descending=True)[:n]
    return [(capture.words[int(i)], float(w[i])) for i in order]


def key_mass(capture, layer: int, head: int | None, query: int) -> dict[str, float]:
    """Share of a row's weight on the prompt's words, the text padding and the video patches."""
    probs = capture.mean_probs(layer, [query])[0] if head is None else capture.probs(layer, head, [query])[0]
    return {group: float(probs[idx].sum()) for group, idx in token_groups(capture).items()}


def token_groups(capture) -> dict[str, torch.Tensor]:
    """Token indices of the prompt's words, the text padding and the video patches."""
    n_words, n = len(capture.words), capture.num_tokens
    return {"prompt words": torch.arange(n_words), "text padding": torch.arange(n_words, capture.text_len),
            "video patches": torch.arange(capture.text_len, n)}


def row_summary(capture) -> pd.DataFrame:
    """Mean of each row statistic per layer and token group (rows averaged over heads)."""
    out = []
    for layer in capture.layers:
        stats = capture.row_statistics(layer)
        for group, idx in token_groups(capture).items():
            if idx.numel():
                out.append({"layer": layer, "rows": group,
                            **{s: float(stats[s][:, idx].mean()) for s in STATISTICS}})
    return pd.DataFrame(out).set_index(["layer", "rows"])


def entropy_histograms(captures: dict, bins: int = 40):
    """Row entropies per layer (all heads and rows), one colour per capture, with log N marked."""
    first = next(iter(captures.values()))
    n = first.num_tokens
    fig, axes = plt.subplots(1, len(first.layers), figsize=(3.1 * len(first.layers), 2.8), sharey=True, squeeze=False)
    edges = np.linspace(0, np.log(n) * 1.01, bins + 1)
    for ax, layer in zip(axes[0], first.layers):
        for i, (label, cap) in enumerate(captures.items()):
            h = cap.row_statistics(layer)["entropy"].reshape(-1).numpy()
            ax.hist(h, bins=edges, histtype="step", lw=1.4, color=f"C{i}", label=label)
        ax.axvline(np.log(n), color="k", ls="--", lw=1, label=f"log N = {np.log(n):.2f}")
        ax.set_title(f"layer {layer}", fontsize=10)
        ax.set_xlabel("row entropy (nats)")
    axes[0, 0].set_ylabel("rows (all heads)")
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle("How close to uniform each row is: row entropy against log N", fontsize=10, y=1.04)
    return fig
