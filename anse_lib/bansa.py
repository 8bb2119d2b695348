r"""BANSA: Bayesian Active Noise Selection via Attention. The math, written once.

Notation (see ``shared/docs/METHOD.md``): an attention map ``A`` has shape
``(..., Nq, Nk)``; each row ``A[i]`` is a categorical distribution over keys. With K
stochastic samples ``A^(1..K)`` of the same map,

.. math::
    \mathrm{BANSA} = H\Big(\tfrac1K\sum_k A^{(k)}\Big) - \tfrac1K\sum_k H\big(A^{(k)}\big),
    \qquad H(A) = \operatorname{mean}_i\Big(-\sum_j A_{ij}\log A_{ij}\Big)

in nats. Per row it is the generalised Jensen-Shannon divergence of the K samples:
>= 0, and 0 exactly when the samples agree.

Samples here come from Bernoulli masks of one map: ``A^(k) = RowNormalise(A * m_k)``
with ``m_k`` i.i.d. ``Bernoulli(1 - drop_prob)`` (``drop_prob`` is the probability of
*dropping* an entry; our reading of the paper's p).

Random numbers. A mask entry is a fixed function of ``(seed, salt, head, row, key,
sample)`` (a counter-based hash, :func:`keep_masks`), not of the order in which entries
are drawn. So the same seed gives the same masks to every candidate noise (common random
numbers: ranking candidates does not depend on mask noise drawn differently per
candidate), and a chunked computation sees exactly the masks of the full one.

Empty rows (every nonzero entry of a row dropped) have no renormalisation. **Our
choice:** such a row keeps its unmasked probabilities for that sample (it adds nothing
to the divergence) and is counted in ``empty_rows``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from . import kernel

#: Rows whose masked mass is below this are "empty" (see module docstring).
EMPTY_ROW_MASS = 1e-12
#: Default probability-sum tolerance when checking that rows are distributions.
ROW_SUM_ATOL = 1e-3
#: Bits of the hash used per mask entry; ``drop_prob`` is quantised to 1 / 2**16.
_MASK_BITS = 16


# ------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------
def check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(
            f"k (number of stochastic samples) must be an integer >= 2, got {k!r}: "
            "with K = 1 BANSA is 0 for every input"
        )
    return k


def check_drop_prob(drop_prob) -> float:
    try:
        ok = 0.0 < float(drop_prob) < 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"drop_prob must be a number in the open interval (0, 1), got {drop_prob!r}")
    return float(drop_prob)


def check_probabilities(attn: torch.Tensor, atol: float = ROW_SUM_ATOL, name: str = "attention") -> torch.Tensor:
    """Return ``attn`` as float32 after checking it holds row distributions.

    Raises ``ValueError`` for non-finite entries, negative entries, or rows whose sum is
    not 1 within ``atol`` (naming the worst row sum found). For half-precision input the
    tolerance is widened to 4 ulps of its dtype (a bfloat16 softmax sums to 1 +- 4e-3).
    """
    if attn.is_floating_point():
        atol = max(atol, 4 * torch.finfo(attn.dtype).eps)
    a = attn.float()
    if a.dim() < 2:
        raise ValueError(f"{name} must have shape (..., Nq, Nk), got {tuple(attn.shape)}")
    if not torch.isfinite(a).all():
        bad = (~torch.isfinite(a)).sum().item()
        raise ValueError(f"{name} has {bad} non-finite entries (NaN or inf); all entries must be finite")
    if (a < 0).any():
        raise ValueError(f"{name} has negative entries (min {a.min().item():.3g}); probabilities must be >= 0")
    sums = a.sum(-1)
    err = (sums - 1).abs()
    if (err > atol).any():
        worst = sums.flatten()[err.flatten().argmax()].item()
        raise ValueError(f"{name} rows must sum to 1 within {atol}; found a row summing to {worst:.6g}")
    return a


def check_row_sample(row_sample) -> int:
    """``row_sample`` (how many query rows to score per layer) must be an int >= 1."""
    if isinstance(row_sample, bool) or not isinstance(row_sample, int) or row_sample < 1:
        raise ValueError(f"row_sample must be an int >= 1 (or None for all rows), got {row_sample!r}")
    return row_sample


def _check_finite(x: torch.Tensor, name: str) -> None:
    # a finite sum means every entry is finite (one pass, no bool tensor: ~15x faster);
    # only a NaN, an inf or an overflowing sum sends it to the entry-by-entry check
    if not torch.isfinite(x.sum(dtype=torch.float32)) and not torch.isfinite(x).all():
        raise ValueError(f"{name} has non-finite entries (NaN or inf); all entries must be finite")


# ------------------------------------------------------------------------------------------
# Entropy and the BALD form
# ------------------------------------------------------------------------------------------
def row_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of each row: ``(..., Nk) -> (...)``. ``0 log 0 = 0`` (no NaN, no log 0).

    Half-precision input is computed in float32; float64 stays float64.
    """
    p = probs if probs.dtype == torch.float64 else probs.float()
    return 0.0 - torch.special.xlogy(p, p).sum(-1)  # 0 - x, not -x: no "-0.0"


def attention_entropy(attn: torch.Tensor) -> torch.Tensor:
    """``H(A)``: mean row entropy of attention maps, ``(..., Nq, Nk) -> (...)``, nats."""
    return row_entropy(attn).mean(-1)


def bansa_rows_from_samples(samples: torch.Tensor) -> torch.Tensor:
    """Per-row BANSA of K explicit samples: ``(K, ..., Nq, Nk) -> (..., Nq)``, nats.

    ``H(mean_k A^(k)) - mean_k H(A^(k))`` per row: the generalised Jensen-Shannon
    divergence. Computed in float64 (this is the reference form), returned as float32;
    clamped at 0 against float rounding (it is >= 0 mathematically).
    """
    if samples.dim() < 3:
        raise ValueError(f"samples must have shape (K, ..., Nq, Nk), got {tuple(samples.shape)}")
    check_k(samples.shape[0])
    s = samples.double()
    return (row_entropy(s.mean(0)) - row_entropy(s).mean(0)).clamp_min(0.0).float()


def bansa_from_samples(samples: torch.Tensor) -> torch.Tensor:
    """BANSA of K explicit samples ``(K, ..., Nq, Nk) -> (...)``: the exact BALD form, nats."""
    return bansa_rows_from_samples(samples).mean(-1)


def bansa_mc_dropout(sample_attention: Callable[[int], torch.Tensor], k: int = 10) -> torch.Tensor:
    """Reference BANSA from K separate stochastic forward computations (MC dropout).

    ``sample_attention(i)`` runs the i-th stochastic computation (e.g. a forward pass with
    dropout active) and returns its attention map ``(..., Nq, Nk)``. Returns ``(...)``.
    """
    check_k(k)
    return bansa_from_samples(torch.stack([check_probabilities(sample_attention(i)) for i in range(k)]))


# ------------------------------------------------------------------------------------------
# Counter-based Bernoulli masks
# ------------------------------------------------------------------------------------------
_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as int64
_M1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_M2 = -7723592293110705685  # 0x94D049BB133111EB


def _wrap64(x: int) -> int:
    """A Python int reduced to the signed int64 range (two's complement wrap)."""
    return ((x + 2**63) % 2**64) - 2**63


def _lsr(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def _mix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser on int64 tensors (wrapping arithmetic); ``x`` is left unchanged."""
    return _mix64_(x.clone())


def _mix64_(x: torch.Tensor) -> torch.Tensor:
    """:func:`_mix64` in place on ``x`` (~1.4x faster on large tensors: no temporaries per step)."""
    tmp = torch.empty_like(x)
    for shift, mult in ((30, _M1), (27, _M2), (31, None)):
        torch.bitwise_right_shift(x, shift, out=tmp)
        tmp &= (1 << (64 - shift)) - 1
        x ^= tmp
        if mult is not None:
            x *= mult
    return x


def seed_from_generator(generator: torch.Generator | None) -> int:
    """Draw one 62-bit mask seed from ``generator`` (torch's global RNG if None)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())


def mask_row_keys(heads: torch.Tensor, rows: torch.Tensor, seed: int, salt: int = 0) -> torch.Tensor:
    """The hash key ``(G, R)`` int64 of each (head, query row): :func:`keep_masks` hashes it with
    the key and sample index (and so does the compiled scorer, :mod:`anse_lib.kernel`)."""
    base = int(_mix64(torch.tensor([_wrap64(seed * 0x2545F491 + salt)], dtype=torch.int64)).item())
    return _mix64(base + heads.to(torch.int64)[:, None] * _GOLDEN + rows.to(torch.int64)[None, :])


def _keep_threshold(drop_prob: float) -> int:
    """A mask entry is kept when its 16 hash bits are >= this."""
    return int(round(check_drop_prob(drop_prob) * (1 << _MASK_BITS)))


def keep_masks(
    k: int, heads: torch.Tensor, rows: torch.Tensor, num_keys: int, drop_prob: float, seed: int, salt: int = 0
) -> torch.Tensor:
    """Bernoulli keep-masks ``(K, G, R, Nk)`` (bool, True = keep) for heads ``(G,)`` and rows ``(R,)``.

    Entry ``[s, g, r, j]`` is a fixed function of ``(seed, salt, heads[g], rows[r], j, s)``;
    it is kept with probability ``1 - drop_prob`` (quantised to 1/65536). The masks are
    hashed on ``rows``' device (integer arithmetic: the same bits on any device).
    """
    check_k(k)
    threshold = _keep_threshold(drop_prob)
    device = rows.device
    row_key = mask_row_keys(heads.to(device), rows, seed, salt)  # (G, R)
    cols = torch.arange(num_keys, dtype=torch.int64, device=device) * _M1
    per_hash = 64 // _MASK_BITS
    out = torch.empty((k, heads.numel(), rows.numel(), num_keys), dtype=torch.bool, device=device)
    for c in range((k + per_hash - 1) // per_hash):
        # SplitMix64: one finaliser over a distinct counter per (row, key, word)
        bits = _mix64_(row_key[:, :, None] + (cols + _wrap64(c * _GOLDEN)))
        for b in range(per_hash):
            s = c * per_hash + b
            if s >= k:
                break
            out[s] = (_lsr(bits, b * _MASK_BITS) & ((1 << _MASK_BITS) - 1)) >= threshold
    return out


def _masked_sample(probs: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One Bernoulli sample ``RowNormalise(A * m)`` with the empty-row guard. Returns (sample, empty)."""
    masked = probs * keep
    mass = masked.sum(-1, keepdim=True)
    empty = mass <= EMPTY_ROW_MASS
    sample = torch.where(empty, probs, masked / mass.clamp_min(EMPTY_ROW_MASS))
    return sample, empty.squeeze(-1)


def _bansa_rows_block(probs: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """BANSA rows of one block without forming the K samples.

    probs: ``(B, G, R, Nk)`` attention rows; masks: ``(K, G, R, Nk)`` keep-masks (0/1, same
    dtype) shared by the B batch entries. Returns rows ``(B, G, R)`` and empty-row counts
    ``(B, G)``.

    With ``Z_k = sum_j m_kj a_j``, the k-th sample is ``q_k = m_k a / Z_k`` and the mean
    sample is ``qbar = a w`` with ``w_j = (1/K) sum_k m_kj / Z_k``. The generalised
    Jensen-Shannon divergence is ``mean_k KL(q_k || qbar)``, and on the support of ``q_k``
    ``q_k / qbar = 1 / (Z_k w)``, so per row

        BANSA = - sum_j a_j w_j log w_j - (1/K) sum_k log Z_k.

    This equals ``H(qbar) - mean_k H(q_k)`` exactly (the ``a log a`` terms of the two
    entropies cancel), but needs one logarithm per entry instead of two, and its terms are
    of the size of BANSA itself (``w`` is near 1, so ``log w`` is small) rather than two
    entropies of ~``log Nk`` nats whose difference loses float precision. The K-sums are
    batched matrix products over (G, R) on strided views (no copy of masks or
    probabilities). An empty sample (``Z_k = 0``) is the unmasked row: mask all ones,
    ``Z_k = 1``.
    """
    k = masks.shape[0]
    m = masks.permute(1, 2, 0, 3)  # (G, R, K, Nk) view
    a = probs.permute(1, 2, 0, 3)  # (G, R, B, Nk) view
    z = torch.matmul(m, a.transpose(-1, -2))  # (G, R, K, B)
    is_empty = z <= EMPTY_ROW_MASS
    z_safe = torch.where(is_empty, torch.ones_like(z), z)
    inv_z = torch.where(is_empty, torch.zeros_like(z), 1.0 / z_safe)
    w = torch.matmul(inv_z.transpose(-1, -2), m)  # (G, R, B, Nk)
    w += is_empty.sum(2).unsqueeze(-1)
    w /= k
    # w log w with 0 log 0 = 0: w is 0 only where every mask dropped the key, and there
    # any finite value of log w times w = 0 gives 0
    w_log_w = w * torch.log(w.clamp_min(torch.finfo(w.dtype).tiny))
    rows = (0.0 - (a * w_log_w).sum(-1) - torch.log(z_safe).mean(2)).clamp_min(0.0)  # (G, R, B)
    return rows.permute(2, 0, 1), is_empty.sum((1, 2)).transpose(0, 1)


def sample_query_rows(rows: torch.Tensor, n: int, seed: int, salt: int = 0) -> torch.Tensor:
    """A fixed random subset of ``n`` of ``rows`` (1-d int64), sorted; all of them if ``n >= len``.

    Drawn without replacement from a generator seeded by ``(seed, salt)`` only, so every
    candidate, head and chunk of one layer scores the same rows, and the mean over the
    subset is an unbiased estimate of the mean over all ``rows``.
    """
    n = check_row_sample(n)
    if n >= rows.numel():
        return rows
    key = _mix64(torch.tensor([_wrap64(seed * 0x51ED27 + salt + 0xA5E)]))
    g = torch.Generator().manual_seed(int(key.item()) & (2**62 - 1))
    pick = torch.randperm(rows.numel(), generator=g)[:n].sort().values
    return rows[pick]


class _MaskCache:
    """Byte-bounded cache of boolean keep-mask blocks (they depend only on their arguments).

    ``max_bytes=0`` caches nothing.
    """

    def __init__(self, max_bytes: int = 0):
        self.max_bytes = max_bytes
        self._store: dict = {}
        self._bytes = 0

    def get(self, k, heads: range, rows: torch.Tensor, num_keys, drop_prob, seed, salt) -> torch.Tensor:
        """Masks for ``heads`` and ``rows``, hashed on ``rows``' device (cached blocks stay there)."""
        if self.max_bytes <= 0:
            return keep_masks(k, torch.arange(heads.start, heads.stop, device=rows.device), rows, num_keys,
                              drop_prob, seed, salt)
        key = (k, heads.start, heads.stop, str(rows.device), rows.cpu().numpy().tobytes(), num_keys, drop_prob,
               seed, salt)
        hit = self._store.get(key)
        if hit is not None:
            return hit
        masks = keep_masks(k, torch.arange(heads.start, heads.stop, device=rows.device), rows, num_keys, drop_prob,
                           seed, salt)
        size = masks.numel() * masks.element_size()
        if size <= self.max_bytes:
            while self._bytes + size > self.max_bytes and self._store:
                old = self._store.pop(next(iter(self._store)))
                self._bytes -= old.numel() * old.element_size()
            self._store[key] = masks
            self._bytes += size
        return masks

    def clear(self):
        self._store.clear()
        self._bytes = 0


#: Off by default: measured on 2 CPU cores, reusing masks saved 1-5 % of selection time
#: (22 % on the toy model with all rows), while a 256 MiB cache added 65-87 % (two runs) to the
#: footprint of a 4k-token first step (``benchmarks/probe_memory.py``). To reuse masks
#: across batches and prompts: ``MASK_CACHE.max_bytes = 256 << 20``.
MASK_CACHE = _MaskCache()


# ------------------------------------------------------------------------------------------
# Scores of whole maps
# ------------------------------------------------------------------------------------------
@dataclass
class BansaRows:
    """Per-row BANSA of a batch of attention maps.

    rows: ``(*lead, Nq)`` float32, nats, per query row scored.
    empty_rows: ``(*lead,)`` int64, how many (row, sample) pairs lost all their mass.
    """

    rows: torch.Tensor
    empty_rows: torch.Tensor

    @property
    def score(self) -> torch.Tensor:
        """Mean over rows: ``(*lead,)``."""
        return self.rows.mean(-1)


def bernoulli_samples(
    attn: torch.Tensor, k: int = 10, drop_prob: float = 0.2, generator: torch.Generator | None = None,
    seed: int | None = None, salt: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """K Bernoulli-masked, renormalised samples of attention maps ``(..., Nq, Nk)``.

    Returns ``(samples (K, ..., Nq, Nk), empty_rows (...))``. The mask seed is ``seed`` or,
    if None, drawn from ``generator``. Masks depend on (head, row, key) only, the head
    being the index along dimension -3 (0 for a single map): every earlier (batch)
    dimension shares them, as in :func:`bansa_chunked`.
    """
    probs = check_probabilities(attn)
    check_k(k)
    check_drop_prob(drop_prob)
    seed = seed_from_generator(generator) if seed is None else int(seed)
    nq, nk = probs.shape[-2:]
    heads = probs.shape[-3] if probs.dim() >= 3 else 1
    masks = keep_masks(k, torch.arange(heads), torch.arange(nq), nk, drop_prob, seed, salt)  # (K, H, Nq, Nk)
    if probs.dim() == 2:
        masks = masks[:, 0]
    else:
        masks = masks.view(k, *([1] * (probs.dim() - 3)), heads, nq, nk)
    samples, empty = _masked_sample(probs.unsqueeze(0), masks)
    return samples, empty.sum((0, -1))


def bansa_bernoulli(
    attn: torch.Tensor, k: int = 10, drop_prob: float = 0.2, generator: torch.Generator | None = None,
    seed: int | None = None, salt: int = 0,
) -> BansaRows:
    """Naive Bernoulli BANSA of full attention maps ``(..., Nq, Nk)`` (all K samples in memory)."""
    samples, empty = bernoulli_samples(attn, k, drop_prob, generator, seed, salt)
    return BansaRows(rows=bansa_rows_from_samples(samples), empty_rows=empty)


def bansa_chunked(
    query: torch.Tensor | None = None,
    key: torch.Tensor | None = None,
    *,
    logits: torch.Tensor | None = None,
    probs: torch.Tensor | None = None,
    scale: float | None = None,
    attn_mask: torch.Tensor | None = None,
    k: int = 10,
    drop_prob: float = 0.2,
    seed: int = 0,
    salt: int = 0,
    query_rows: slice | torch.Tensor | None = None,
    row_sample: int | None = None,
    block_rows: int | None = None,
    block_bytes: int | None = None,
    accumulate_dtype: torch.dtype = torch.float32,
    backend: str | None = None,
) -> BansaRows:
    """Bernoulli BANSA of one attention call, never holding more than one block of rows.

    Rows are processed ``block_rows`` at a time (batch entries x heads x query rows), so
    peak memory is O(K x block_rows x Nk) for the masks plus a few (block_rows x Nk) float
    buffers (the compiled backend: the block's logits and a few Nk-long arrays per
    thread), whatever Nq. Masks are indexed by (head, row, key) only, not by batch index:
    every batch entry (candidate) gets the same masks, and the result equals
    :func:`bansa_bernoulli` with the same ``seed`` and ``salt`` (to float rounding),
    whatever ``block_rows``. The computation runs on the inputs' device: with
    ``backend="torch"`` (the one used on a GPU) masks are hashed there and results stay
    there until the end, so the block loop makes no host copy.

    Args:
        query: ``(B, H, Nq, D)`` queries; with ``key``, the probabilities are
            ``softmax(q k^T * scale + attn_mask)``. Give these, or ``logits``, or ``probs``.
        key: ``(B, H, Nk, D)`` keys.
        logits: ``(B, H, Nq, Nk)`` attention logits (instead of ``query`` and ``key``).
        probs: ``(B, H, Nq, Nk)`` attention probabilities (rows summing to 1).
        scale: logit scale; default ``D ** -0.5`` as in ``F.scaled_dot_product_attention``.
        attn_mask: additive float mask, or bool mask marking allowed keys, broadcastable
            to ``(B, H, Nq, Nk)``.
        k: K, the number of Bernoulli masks (>= 2).
        drop_prob: probability of dropping an entry, in (0, 1); the paper's p = 0.2.
        seed: mask seed; the same seed gives the same masks (common random numbers).
        salt: a second key of the masks (the probe passes the layer index).
        query_rows: which query rows are scored (a slice or index tensor; e.g. video
            tokens only). Default: all.
        row_sample: score only this many of the selected rows, a fixed random subset
            (:func:`sample_query_rows`, seeded by ``seed`` and ``salt``, the same for every
            batch entry and head): an unbiased estimate of the all-rows mean at
            ``row_sample / Nq`` of the cost. ``None`` (default) scores every row, as the
            paper does.
        block_rows: rows per block. Default: as many as fit in ``block_bytes`` (see
            :func:`block_bytes_per_row`).
        block_bytes: memory budget of one block's temporaries, bytes. Default: the size of
            the call's query tensor in float32 (at least 16 MiB), about one activation of
            the layer; 256 MiB with ``logits`` or ``probs``. Cached mask blocks
            (:data:`MASK_CACHE`, off by default) are not counted.
        accumulate_dtype: dtype of the block's sums and logarithms. float32 (default)
            keeps a row to ~3e-7 nats and a layer score to ~1e-8 (measured on random
            532-token maps against float64), because the block computes BANSA directly,
            not as a difference of two entropies of ~log Nk nats (see
            :func:`_bansa_rows_block`); float64 is about 1.8x slower on CPU.
        backend: ``"torch"`` (tensor operations), ``"compiled"`` (the same arithmetic and
            masks in C, :mod:`anse_lib.kernel`; float32 on the CPU, K <= 32), ``"auto"``
            (compiled where it applies and builds, else torch) or ``None``
            (:data:`BACKEND`, ``"auto"`` by default).

    Returns:
        :class:`BansaRows` with per-row scores ``rows`` ``(B, H, Nq_scored)`` in nats (on
        the CPU), their mean ``score`` ``(B, H)``, and ``empty_rows`` ``(B, H)``.

    Examples:
        >>> import torch
        >>> from anse_lib.bansa import bansa_chunked, bansa_bernoulli
        >>> g = torch.Generator().manual_seed(0)
        >>> q, kk = torch.randn(2, 4, 64, 32, generator=g), torch.randn(2, 4, 64, 32, generator=g)
        >>> out = bansa_chunked(q, kk, k=10, drop_prob=0.2, seed=0)
        >>> out.rows.shape, out.score.shape
        (torch.Size([2, 4, 64]), torch.Size([2, 4]))
        >>> probs = torch.softmax(q @ kk.transpose(-1, -2) * 32 ** -0.5, -1)
        >>> naive = bansa_bernoulli(probs, k=10, drop_prob=0.2, seed=0)  # all K samples, float64
        >>> bool((out.rows - naive.rows).abs().max() < 1e-5)
        True
    """
    check_k(k)
    if block_bytes is not None and (isinstance(block_bytes, bool) or not isinstance(block_bytes, int)
                                    or block_bytes < 1):
        raise ValueError(f"block_bytes must be an int >= 1 (or None for the default), got {block_bytes!r}")
    check_drop_prob(drop_prob)
    if block_rows is not None and block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    given = [x is not None for x in ((query, key), logits, probs)]
    given[0] = query is not None or key is not None
    if sum(given) != 1 or (given[0] and (query is None or key is None)):
        raise ValueError("give exactly one of: query and key, logits, probs")
    src = probs if probs is not None else logits if logits is not None else query
    if src.dim() != 4:
        raise ValueError(f"expected 4-d (B, H, Nq, ...) tensors, got shape {tuple(src.shape)}")
    backend = _resolve_backend(BACKEND if backend is None else backend, accumulate_dtype, src, k)
    b, h, nq = src.shape[:3]
    nk = key.shape[2] if query is not None else src.shape[3]
    if query is not None:
        _check_finite(query, "query")
        _check_finite(key, "key")
        scale = query.shape[-1] ** -0.5 if scale is None else scale
    elif logits is not None:
        _check_finite(logits, "logits")
    else:
        check_probabilities(probs, name="probs")

    if attn_mask is not None:
        try:
            attn_mask = attn_mask.expand(b, h, nq, nk)  # a view: nothing is allocated
        except RuntimeError:
            raise ValueError(
                f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to (B, H, Nq, Nk) = {(b, h, nq, nk)}"
            ) from None

    if query_rows is None:
        rows_idx = torch.arange(nq)
    elif isinstance(query_rows, slice):
        rows_idx = torch.arange(nq)[query_rows]
    else:
        rows_idx = torch.as_tensor(query_rows, dtype=torch.int64)
    if rows_idx.numel() == 0:
        raise ValueError("query_rows selects no rows")
    if row_sample is not None:
        rows_idx = sample_query_rows(rows_idx, row_sample, seed, salt)  # validates row_sample
    nr = rows_idx.numel()
    if backend != "compiled":
        rows_idx = rows_idx.to(src.device)  # indices, masks and results stay on the scorer's device
    if block_rows is None:
        if block_bytes is None:
            block_bytes = max(16 << 20, query.numel() * 4) if query is not None else 256 << 20
        shared, per_entry = block_bytes_per_row(k, nk, accumulate_dtype, backend)
        slots = block_bytes // (shared + b * per_entry)  # head-rows with the whole batch
        if slots >= 1:
            block_rows = b * slots
        else:  # one head-row, the batch split
            block_rows = max(1, (block_bytes - shared) // per_entry)

    # a block is batch_per_block x heads_per_block x rows_per_block attention rows, the
    # batch filled first so that one mask block serves as many candidates as possible
    batch_per_block = min(b, block_rows)
    rows_per_block = min(nr, max(1, block_rows // batch_per_block))
    heads_per_block = max(1, min(h, block_rows // (batch_per_block * rows_per_block)))
    # results stay on the scorer's device until the end: no host copy (and no sync) per block
    out = torch.empty(b, h, nr, dtype=torch.float32, device=src.device)
    empty = torch.zeros(b, h, dtype=torch.int64, device=src.device)
    threshold = _keep_threshold(drop_prob)
    # one logits buffer for every block: a fresh block-sized tensor per block costs more
    # (page faults on new memory) than the matrix product that fills it
    buffer = None
    if query is not None:
        buffer = torch.empty(batch_per_block * heads_per_block * rows_per_block * nk, dtype=torch.float32,
                             device=src.device)
    masked_logit = kernel.MASKED_LOGIT if backend == "compiled" else float("-inf")
    # the C code may not see -inf: logits of finite queries and keys, with a boolean mask
    # filling masked_logit, hold none, so their blocks need no pass to replace it
    logits_finite = query is not None and (attn_mask is None or attn_mask.dtype == torch.bool)
    # the C code makes each row's masks from its hash key: all (head, row) keys at once
    row_keys = mask_row_keys(torch.arange(h), rows_idx, seed, salt) if backend == "compiled" else None
    for h0 in range(0, h, heads_per_block):
        heads = range(h0, min(h, h0 + heads_per_block))
        hs = slice(heads.start, heads.stop)
        key_t = key[:, hs].float().transpose(-1, -2) if query is not None else None  # (B, G, D, Nk) view if float32
        for r0 in range(0, nr, rows_per_block):
            rsel = rows_idx[r0 : r0 + rows_per_block]
            if backend == "compiled":
                keys = row_keys[hs, r0 : r0 + rows_per_block].reshape(-1)
            else:
                masks = MASK_CACHE.get(k, heads, rsel, nk, drop_prob, seed, salt).to(dtype=accumulate_dtype)
            for b0 in range(0, b, batch_per_block):
                bs = slice(b0, min(b, b0 + batch_per_block))
                x = _block_logits(bs, hs, rsel, query, key_t, logits, probs, scale, attn_mask, buffer, masked_logit)
                if backend == "compiled":
                    rows, e = _compiled_rows_block(x, keys, k, threshold, is_probs=probs is not None,
                                                   finite=logits_finite)
                else:
                    rows, e = _bansa_rows_block((x if probs is not None else torch.softmax(x, -1)).to(accumulate_dtype),
                                                masks)
                out[bs, hs, r0 : r0 + rows_per_block] = rows
                empty[bs, hs] += e
    return BansaRows(rows=out.cpu(), empty_rows=empty.cpu())


def block_bytes_per_row(k: int, num_keys: int, accumulate_dtype: torch.dtype = torch.float32,
                        backend: str = "torch") -> tuple[int, int]:
    """Bytes of temporaries per attention row in :func:`bansa_chunked`: ``(shared, per_entry)``.

    ``backend="torch"``: ``shared`` is per (head, query row) and serves the whole batch: K
    boolean masks, the same K in ``accumulate_dtype``, and ~4 int64 hash temporaries per
    key when the masks are not cached. ``per_entry`` is per batch entry: ~3 float32 arrays
    for the logits and softmax plus ~6 ``accumulate_dtype`` arrays (probabilities, weights,
    w log w, ...). ``backend="compiled"``: only the block's float32 logits, and the
    compiled scorer's copy of a row's probabilities (its other scratch is per thread, a few
    ``num_keys``-long arrays). Each array is ``num_keys`` long.
    """
    if backend == "compiled":
        return 0, num_keys * 2 * 4
    e = torch.empty((), dtype=accumulate_dtype).element_size()
    return num_keys * (k * (1 + e) + 32), num_keys * (3 * 4 + 6 * e)


def _compiled_rows_block(x: torch.Tensor, keys: torch.Tensor, k: int, threshold: int,
                         is_probs: bool, finite: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_bansa_rows_block` by the compiled scorer: ``x`` ``(B, G, R, Nk)`` logits (or
    probabilities), ``keys`` ``(G * R,)`` the rows' mask keys; returns rows ``(B, G, R)``
    and empty-sample counts ``(B, G)``. ``finite``: the logits are known to hold no -inf
    (no pass to replace them)."""
    if not is_probs and not finite:
        x = x.clamp_(min=kernel.MASKED_LOGIT)  # -inf -> finite (the C code is -ffast-math)
    nb, g, r, nk = x.shape
    rows, empty = kernel.bansa_rows(x.reshape(nb, g * r, nk), keys, k, _MASK_BITS, threshold, is_probs,
                                    EMPTY_ROW_MASS)
    return rows.view(nb, g, r), empty.view(nb, g, r).sum(-1)


def _block_logits(bs, hs, rsel, query, key_t, logits, probs, scale, attn_mask, buffer=None,
                  masked_logit=float("-inf")) -> torch.Tensor:
    """Masked attention logits ``(b, G, R, Nk)`` of a block, float32 (its probabilities if ``probs`` is given).

    ``key_t``: the heads' keys transposed, ``(B, G, D, Nk)``; the product is written into
    ``buffer`` (flat float32, at least the block's size) when given. Keys a bool
    ``attn_mask`` forbids get ``masked_logit``.
    """
    if probs is not None:
        return probs[bs, hs][:, :, rsel].float()
    if logits is not None:
        z = logits[bs, hs][:, :, rsel].float()
    else:
        q = query[bs, hs][:, :, rsel].float() * scale  # (b, G, R, D): scaling it is cheaper than the product
        kt = key_t[bs]
        shape = (*q.shape[:3], kt.shape[-1])
        out = buffer[: math.prod(shape)].view(shape) if buffer is not None else None
        z = torch.matmul(q, kt, out=out) if out is not None else torch.matmul(q, kt)
    if attn_mask is not None:
        m = attn_mask[bs, hs][:, :, rsel]
        z = z.masked_fill_(~m, masked_logit) if m.dtype == torch.bool else z.add_(m.float())
    return z


#: The default ``backend`` of :func:`bansa_chunked` (and so of the probe): see there.
BACKEND = "auto"
BACKENDS = ("auto", "torch", "compiled")


def _resolve_backend(backend, accumulate_dtype, src, k) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    applies = accumulate_dtype == torch.float32 and src.device.type == "cpu" and k <= kernel.MAX_K
    if backend == "compiled":
        if not applies:
            raise ValueError(f"backend='compiled' needs accumulate_dtype=torch.float32, CPU tensors and "
                             f"k <= {kernel.MAX_K}, got {accumulate_dtype}, {src.device.type}, k={k}")
        if not kernel.available():
            raise RuntimeError(f"backend='compiled': {kernel.build_error()}")
        return backend
    if backend == "auto":
        return "compiled" if applies and kernel.available() else "torch"
    return backend
