"""Capture a model's attention at one denoising step, mapped back to the video's geometry.

:func:`capture_attention` runs the pipeline for one prompt and seed to the chosen step (the
first by default, where ANSE scores) with an armed :class:`~anse_lib.probe.AttentionProbe`
that keeps, per probed layer, the per-row BANSA it scored and the query and key tensors it
scored them from (conditional branch only). Everything else is computed from those on
demand, one head at a time: a head's probabilities ``softmax(q k^T * scale)`` and its row
statistics (:mod:`anse_lib.rowstats`).

Memory. The capture holds ``2 x H x N x D`` values per layer (the toy model: 4 layers x 4
heads x 532 tokens x 32, 2.2 MB in all in float32). One head's full map is ``N^2`` values: 1.1 MB at
532 tokens, but 1.3 GB in float32 at CogVideoX-2B's 17,776 tokens, so at 4k+ tokens ask for
rows (:meth:`AttentionCapture.probs` with ``rows=``) rather than whole maps, and capture few
layers (``layers=``).

Geometry. Joint text+video attention (CogVideoX and the toy model) puts the text tokens
first, then the video patches in (frame, row, column) order; :meth:`AttentionCapture.video_map`
turns per-token values into ``(F, h, w)`` pictures.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .bansa import check_drop_prob, check_k
from .probe import model_family
from .rowstats import row_statistics
from .select import _check_score_step, _resolve_layers, _scoring_call, denoiser, run_probe


@dataclass
class AttentionCapture:
    """The attention of one prompt and seed at one denoising step.

    queries, keys: ``{layer: (H, N, D)}`` float32, the conditional branch's scored tensors.
    bansa_rows: ``{layer: (H, N)}`` per-row BANSA as the probe scored it (nats).
    scale: the softmax scale (None: ``1/sqrt(D)``). text_len: text tokens first in the
    sequence. grid: ``(F, h, w)`` video patches. words: the prompt's words (the first
    ``len(words)`` text tokens; the rest are padding). step, timestep: the denoising step
    (0-based) and its timestep. k, drop_prob, mask_seed: the probe's masks.
    """

    prompt: str
    seed: int
    step: int
    timestep: float
    layers: list[int]
    queries: dict
    keys: dict
    bansa_rows: dict
    scale: float | None
    text_len: int
    grid: tuple[int, int, int]
    words: list[str]
    k: int
    drop_prob: float
    mask_seed: int
    latents: torch.Tensor = field(repr=False, default=None)
    _stats: dict = field(repr=False, default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return self.queries[self.layers[0]].shape[1]

    @property
    def num_heads(self) -> int:
        return self.queries[self.layers[0]].shape[0]

    def _check(self, layer: int, head: int | None = None):
        if layer not in self.queries:
            raise ValueError(f"layer {layer} was not captured; captured layers: {self.layers}")
        if head is not None and not 0 <= head < self.num_heads:
            raise ValueError(f"head {head} out of range 0..{self.num_heads - 1}")

    def logits(self, layer: int, head: int, rows=None) -> torch.Tensor:
        """``(R, N)`` attention logits of one head (all rows, or the query indices ``rows``)."""
        self._check(layer, head)
        q = self.queries[layer][head]
        q = q if rows is None else q[torch.as_tensor(rows).reshape(-1)]
        scale = self.scale if self.scale is not None else 1.0 / math.sqrt(q.shape[-1])
        return (q @ self.keys[layer][head].T) * scale

    def probs(self, layer: int, head: int, rows=None) -> torch.Tensor:
        """``(R, N)`` attention probabilities of one head: each row sums to 1 over all N keys."""
        return torch.softmax(self.logits(layer, head, rows).float(), dim=-1)

    def mean_probs(self, layer: int, rows=None) -> torch.Tensor:
        """``(R, N)`` probabilities averaged over heads (still rows summing to 1)."""
        return torch.stack([self.probs(layer, h, rows) for h in range(self.num_heads)]).mean(0)

    def row_statistics(self, layer: int, k: int | None = None, drop_prob: float | None = None,
                       mask_seed: int | None = None) -> dict[str, torch.Tensor]:
        """``{statistic: (H, N)}`` of every row of one layer (see :func:`~anse_lib.rowstats.row_statistics`).

        Uses the probe's masks (salt = layer index) unless ``k``/``drop_prob``/``mask_seed``
        are given; cached per setting.
        """
        self._check(layer)
        k = self.k if k is None else check_k(k)
        drop_prob = self.drop_prob if drop_prob is None else check_drop_prob(drop_prob)
        mask_seed = self.mask_seed if mask_seed is None else int(mask_seed)
        key = (layer, k, drop_prob, mask_seed)
        if key not in self._stats:
            probs = torch.stack([self.probs(layer, h) for h in range(self.num_heads)])
            self._stats[key] = row_statistics(probs, k=k, drop_prob=drop_prob, seed=mask_seed, salt=layer)
        return self._stats[key]

    # --- geometry ---------------------------------------------------------------------------
    def video_map(self, values: torch.Tensor) -> torch.Tensor:
        """Per-token values ``(..., N)`` -> the video tokens' values as ``(..., F, h, w)``."""
        return values[..., self.text_len:].reshape(*values.shape[:-1], *self.grid)

    def text_values(self, values: torch.Tensor) -> torch.Tensor:
        """Per-token values ``(..., N)`` -> the prompt's words' values ``(..., len(words))``."""
        return values[..., : len(self.words)]

    def video_token(self, frame: int, row: int, col: int) -> int:
        """Sequence index of the video patch at (frame, row, column)."""
        f, h, w = self.grid
        if not (0 <= frame < f and 0 <= row < h and 0 <= col < w):
            raise ValueError(f"patch ({frame}, {row}, {col}) outside the video's grid {self.grid}")
        return self.text_len + (frame * h + row) * w + col

    def text_token(self, word: str) -> int:
        """Sequence index of the first text token holding ``word``."""
        if word not in self.words:
            raise ValueError(f"{word!r} is not a word of the prompt; its words: {' '.join(self.words)}")
        return self.words.index(word)

    def token_label(self, index: int) -> str:
        """Human-readable name of a token: ``"text 'red'"`` or ``"video f2 r3 c4"``."""
        if not 0 <= index < self.num_tokens:
            raise ValueError(f"token {index} out of range 0..{self.num_tokens - 1}")
        if index < self.text_len:
            return f"text {self.words[index]!r}" if index < len(self.words) else f"text pad {index}"
        f, h, w = self.grid
        i = index - self.text_len
        return f"video frame {i // (h * w)} row {(i // w) % h} col {i % w}"


def capture_attention(pipe, prompt: str, seed: int, step: int = 0, layers=None, k: int = 10,
                      drop_prob: float = 0.2, mask_seed: int = 0, num_inference_steps: int | None = None,
                      guidance_scale: float | None = None, words: list[str] | None = None,
                      **pipe_kwargs) -> AttentionCapture:
    """The conditional branch's attention for one prompt and seed at denoising step ``step``.

    Args:
        pipe: a pipeline with joint text+video attention (the toy pipeline, CogVideoX).
        prompt: the prompt.
        seed: the candidate's seed (its noise is what the pipeline draws for
            ``torch.Generator("cpu").manual_seed(seed)``).
        step: the denoising step, 0-based (0: the first, where ANSE scores). Earlier steps
            run in full with the pipeline's guidance, as in ``select_noise(score_step=)``.
        layers: which attention layers to keep: a depth d (layers 1..d), a list of indices, or
            ``None`` (all).
        k, drop_prob, mask_seed: the probe's masks (the paper's K = 10, p = 0.2).
        num_inference_steps, guidance_scale: the pipeline's, as in ``select_noise``.
        words: names of the text tokens (default: the prompt split on spaces, right for the
            toy world's word tokenizer; for a subword tokenizer, pass its tokens).
        **pipe_kwargs: other pipeline arguments.

    Returns:
        :class:`AttentionCapture`.

    Examples:
        >>> from anse_lib.capture import capture_attention
        >>> from anse_lib.toyworld import load_toy_pipeline
        >>> cap = capture_attention(load_toy_pipeline(), "a big red circle moving left", seed=0)
        >>> cap.grid, cap.text_len, cap.num_tokens
        ((8, 8, 8), 20, 532)
        >>> cap.probs(layer=0, head=0, rows=[cap.text_token("red")]).shape
        torch.Size([1, 532])
    """
    check_k(k)
    check_drop_prob(drop_prob)
    model = denoiser(pipe)
    if model_family(model).text_position != "first":
        raise ValueError(f"capture_attention maps joint text+video attention (CogVideoX-style); "
                         f"{type(model).__name__} has none")
    depth = int(layers) if isinstance(layers, (int, np.integer)) and not isinstance(layers, bool) else None
    layer_ids = _resolve_layers(model, depth, None if depth is not None else layers, None)
    step = _check_score_step(pipe, step, num_inference_steps)
    pipe_kwargs = dict(pipe_kwargs, **{name: value for name, value in (("num_inference_steps", num_inference_steps),
                                                                      ("guidance_scale", guidance_scale))
                                       if value is not None})
    _, score_kwargs, _, score_cfg = _scoring_call(pipe, model, "cond", step, pipe_kwargs)
    probe, call, latents = run_probe(pipe, model, prompt, [int(seed)], layer_ids, "cond", score_cfg, step, score_kwargs,
                                     dict(k=k, drop_prob=drop_prob, mask_seed=mask_seed, keep_rows=True,
                                          keep_inputs=True))
    records = [r for r in probe.records if r.call == call and r.sub == 0]
    queries = {r.layer: r.inputs["query"][0].float() for r in records}
    keys = {r.layer: r.inputs["key"][0].float() for r in records}
    first = records[0]
    if first.inputs["attn_mask"] is not None:
        raise ValueError("capture_attention does not handle attention masks yet")
    text_len = int(model.config.max_text_seq_length)
    p = int(model.config.patch_size)
    frames, _, height, width = latents.shape[1:]
    grid = (int(frames), int(height) // p, int(width) // p)
    if text_len + math.prod(grid) != first.num_queries:
        raise ValueError(f"{first.num_queries} tokens do not split into {text_len} text + {grid} video patches")
    timestep = float(pipe.scheduler.timesteps[step])
    return AttentionCapture(
        prompt=prompt, seed=int(seed), step=step, timestep=timestep, layers=layer_ids, queries=queries, keys=keys,
        bansa_rows={r.layer: r.rows[0] for r in records}, scale=first.inputs["scale"], text_len=text_len, grid=grid,
        words=list(words) if words is not None else prompt.lower().replace(",", " ").split(), k=k,
        drop_prob=drop_prob, mask_seed=mask_seed, latents=latents,
    )
