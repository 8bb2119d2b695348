"""What selection costs at real sizes, extrapolated from per-entry costs measured on this machine.

Two constants are measured here, in one run of ``benchmarks/selection_overhead.py --save``
(cached as ``data/sweeps/selection_overhead.csv``):

- ``forward_s_per_mac``: the denoiser's time per multiply-add, from plain generation of the
  toy model or the 4k-token CogVideoX (time / (passes x layers x MACs per layer));
- ``scorer_s_per_entry``: BANSA's time per attention entry (K = 10), from selection with all
  rows minus the same selection with the scorer switched off, over the entries scored.

A layer's forward work, per batch entry, is ``2 x H x Nq x Nk x D`` multiply-adds for the
attention (``QK^T`` and ``AV``), ``4 x width^2 x Nq`` for its q, k, v and output
projections, ``2 x width x ffn x Nq`` for the MLP, and, in models with a separate text
cross-attention (Wan, LTX-Video), ``2 x width^2 x (Nq + text) + 2 x H x Nq x text x D``;
the scorer's work is ``H x Nq x Nk`` entries. Norms, modulation and embeddings are left out.
Selection of M candidates at depth d of L then costs
``M x d x (forward + scorer)`` layer-units against ``passes x steps x L x forward`` for one
video: the idealised estimate of notebook 08 plus the scorer's share. On a GPU the two
constants differ (and so does their ratio); the model says how the overhead scales, the
measured constants say where this CPU sits. The forward share of the prediction is the
idealised FLOP ratio ``M x d / (passes x steps x L)`` whatever the constants: only the
scorer's share depends on them.

Study helper for: Notebook 07.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class ModelSize:
    """The sizes that set the cost of one scored attention layer.

    Args:
        name: a label.
        layers: L, the probed attention layers.
        heads, head_dim, width: H, D and the hidden size.
        query_rows: Nq, the attention's query tokens (per batch entry).
        keys: Nk, its key tokens.
        depth: d, the layers scored (the paper's d*).
        passes_per_step: batch-1 denoiser passes per step for one video (2 with CFG as a batch of 2).
        ffn: the MLP's hidden size (default ``4 x width``).
        cross_text: text tokens of a separate cross-attention in every block (0: none, joint attention).
    """
    name: str
    layers: int
    heads: int
    head_dim: int
    width: int
    query_rows: int
    keys: int
    depth: int
    passes_per_step: int = 2
    ffn: int | None = None
    cross_text: int = 0

    def forward_macs(self) -> float:
        """Multiply-adds of one layer's forward for one batch entry."""
        ffn = self.ffn if self.ffn is not None else 4 * self.width
        attention = 2 * self.heads * self.query_rows * self.keys * self.head_dim + 4 * self.width**2 * self.query_rows
        cross = 0
        if self.cross_text:
            cross = 2 * self.width**2 * (self.query_rows + self.cross_text) \
                + 2 * self.heads * self.query_rows * self.cross_text * self.head_dim
        return attention + 2 * self.width * ffn * self.query_rows + cross

    def entries(self) -> float:
        """Attention entries of one layer (H x Nq x Nk): what the scorer reads."""
        return self.heads * self.query_rows * self.keys


#: Transformer backbones at their diffusers pipelines' default resolution and frames (tokens
#: after the VAE and patching; joint attention: video + text tokens as rows and keys; Wan
#: and LTX-Video: their self-attention, with a text cross-attention in every block). These
#: are assumed sizes: the paper does not give the resolution, frames or Wan size it timed.
#: d: the paper's d* (LTX-Video is not in the paper: half its layers). HunyuanVideo runs one
#: pass per step (guidance embedded). AnimateDiff's scored attention is a cross-attention to
#: 77 text tokens, another cost structure, and is left out.
REAL_SIZES = [
    ModelSize("CogVideoX-2B (49 x 480 x 720)", 30, 30, 64, 1920, 17_776, 17_776, 14),
    ModelSize("CogVideoX-5B (49 x 480 x 720)", 42, 48, 64, 3072, 17_776, 17_776, 19),
    ModelSize("Wan 2.1 1.3B (81 x 480 x 832)", 30, 12, 128, 1536, 32_760, 32_760, 20, ffn=8960, cross_text=512),
    ModelSize("LTX-Video (161 x 512 x 704)", 28, 32, 64, 2048, 7_392, 7_392, 14, cross_text=128),
    ModelSize("HunyuanVideo (129 x 720 x 1280)", 60, 24, 128, 3072, 119_056, 119_056, 20, passes_per_step=1),
]


def measured_constants(overhead: pd.DataFrame, sizes: dict[str, ModelSize], steps: int = 50) -> pd.DataFrame:
    """``forward_s_per_mac`` and ``scorer_s_per_entry`` from the cached overhead table.

    Args:
        overhead: ``data/sweeps/selection_overhead.csv``.
        sizes: for each of its models (``model`` column), its :class:`ModelSize`.
        steps: steps of the table's plain generation (its CFG makes 2 passes per step).

    Returns:
        One row per model: both constants and their ratio ``scorer_s_per_entry /
        (forward_s_per_mac x D)``, the scorer's cost per entry in units of the forward's
        attention work per entry.
    """
    rows = []
    for model, g in overhead.groupby("model", sort=False):
        size = sizes[model]
        deepest = g[g.candidates == g.candidates.mode()[0]]
        d = deepest.depth.max()
        at = deepest[deepest.depth == d].set_index("rows")
        m = int(at.candidates.iloc[0])
        plain = float(at.plain_s.iloc[0])
        per_mac = plain / (2 * steps * size.layers * size.forward_macs())
        per_entry = (at.loc["all", "selection_s"] - at.loc["none", "selection_s"]) / (m * d * size.entries())
        rows.append({"model": model, "forward_s_per_mac": per_mac, "scorer_s_per_entry": per_entry,
                     "scorer_over_forward_per_entry": per_entry / (per_mac * size.head_dim)})
    return pd.DataFrame(rows).set_index("model")


def predicted_overhead(size: ModelSize, forward_s_per_mac: float, scorer_s_per_entry: float, m: int = 10,
                       steps: int = 50) -> dict:
    """Selection time over one video's generation, split into the forward passes and the scorer."""
    forward = size.forward_macs() * forward_s_per_mac
    scorer = size.entries() * scorer_s_per_entry
    video = size.passes_per_step * steps * size.layers * forward
    return {"model": size.name, "d/L": f"{size.depth}/{size.layers}",
            "forward share": m * size.depth * forward / video, "scorer share": m * size.depth * scorer / video,
            "predicted overhead": m * size.depth * (forward + scorer) / video}


def scorer_memory_gib(size: ModelSize, k: int = 10, candidates: int = 10) -> dict:
    """Peak extra memory of scoring one layer for ``candidates`` at once: naive maps vs the chunked scorer.

    Naive: the probabilities and K masked copies, ``(K + 1) x B x H x Nq x Nk`` float32.
    Chunked (``bansa_chunked``'s default budget): about one block of ``block_bytes`` = the
    call's query tensor in float32 (at least 16 MiB), ``B x H x Nq x D x 4`` bytes.
    """
    naive = (k + 1) * candidates * size.entries() * 4
    chunked = max(16 * 2**20, candidates * size.heads * size.query_rows * size.head_dim * 4)
    return {"model": size.name, "naive GiB": naive / 2**30, "chunked GiB": chunked / 2**30}
