"""Attention probes for diffusers video models: BANSA computed inside the attention processors.

How it works. :class:`AttentionProbe` replaces the processor of each chosen attention
module by a wrapper around the *original* processor. Unarmed, the wrapper just calls the
original. Armed, it calls the original while ``F.scaled_dot_product_attention`` is
replaced by a spy: the spy scores BANSA from the very query, key, mask and scale the
model passes (its own RoPE, norms and masks included), chunked over query rows so the
full attention tensor never exists, and then calls the real function with the same
arguments. Either way the model's output is bit-identical to the unprobed model.

The wrapper's ``__call__`` carries the original's signature (``functools.wraps``): the
old-style ``Attention.forward`` drops every keyword the processor's signature does not
name, so a ``**kwargs`` wrapper would silently lose e.g. CogVideoX's rotary embedding.

Results are kept per model call (a CFG pipeline may call the transformer once with
``[uncond, cond]`` or, like Wan, twice: cond then uncond) and per probed layer, as
per-candidate, per-head scalars: :class:`AttentionRecord`.
"""
from __future__ import annotations

import functools
import inspect
import re
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .bansa import bansa_chunked, check_drop_prob, check_k, check_row_sample


class StopForward(Exception):
    """Raised by an armed probe after its last needed layer, to end the forward pass early."""


@dataclass(frozen=True)
class ModelFamily:
    """Where a model family keeps the attention the probe can score.

    ``attention``: kind -> regular expression over module names (``named_modules``), in
    forward order; ``default``: the kind scored by default; ``text_position``: where the text
    tokens sit in the queries of joint text+video attention, so rows can be selected:
    ``"first"`` (``[text, video]``, CogVideoX's MMDiT), ``"last"`` (``[video, text]``,
    HunyuanVideo) or ``None`` (no joint attention).
    """

    attention: dict
    default: str
    text_position: str | None = None

    @property
    def joint(self) -> bool:
        return self.text_position is not None

    def __post_init__(self):
        if self.text_position not in (None, "first", "last"):
            raise ValueError(f"text_position must be 'first', 'last' or None, got {self.text_position!r}")


_UNET_SPATIAL = r"(?:down_blocks\.\d+|mid_block|up_blocks\.\d+)\.attentions\.\d+\.transformer_blocks\.\d+\.{}$"
FAMILIES: dict[str, ModelFamily] = {
    "CogVideoXTransformer3DModel": ModelFamily({"joint": r"transformer_blocks\.\d+\.attn1$"}, "joint",
                                               text_position="first"),
    "WanTransformer3DModel": ModelFamily({"self": r"blocks\.\d+\.attn1$", "cross": r"blocks\.\d+\.attn2$"}, "self"),
    "LTXVideoTransformer3DModel": ModelFamily(
        {"self": r"transformer_blocks\.\d+\.attn1$", "cross": r"transformer_blocks\.\d+\.attn2$"}, "self"),
    "UNetMotionModel": ModelFamily(
        {"cross": _UNET_SPATIAL.format("attn2"), "self": _UNET_SPATIAL.format("attn1")}, "cross"),
    "UNet3DConditionModel": ModelFamily(
        {"cross": _UNET_SPATIAL.format("attn2"), "self": _UNET_SPATIAL.format("attn1")}, "cross"),
    # dual-stream blocks, then single-stream blocks, both joint [video, text] attention; the
    # token refiner's attention over the prompt alone (context_embedder...) is not scored
    "HunyuanVideoTransformer3DModel": ModelFamily(
        {"joint": r"^(?:transformer_blocks|single_transformer_blocks)\.\d+\.attn$"}, "joint", text_position="last"),
}
ROW_CHOICES = ("all", "video", "text")


def model_family(model: torch.nn.Module) -> ModelFamily:
    name = type(model).__name__
    if hasattr(model, "_orig_mod"):  # torch.compile's wrapper
        check_not_compiled(model)
    if name not in FAMILIES:
        raise ValueError(f"unsupported model {name}; supported: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def attention_layers(model: torch.nn.Module, attention: str | None = None) -> list[tuple[str, torch.nn.Module]]:
    """The attention modules the probe can score, in forward order: ``[(name, module), ...]``."""
    family = model_family(model)
    kind = attention or family.default
    if kind not in family.attention:
        raise ValueError(
            f"attention={kind!r} is not available for {type(model).__name__}; choose from {', '.join(family.attention)}"
        )
    pattern = re.compile(family.attention[kind])
    found = [(n, m) for n, m in model.named_modules() if pattern.search(n) and hasattr(m, "processor")]
    if not found:
        raise ValueError(f"no {kind} attention modules found in {type(model).__name__}")
    return sorted(found, key=lambda item: _forward_order(item[0]))


_STAGE = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2, "transformer_blocks": 0, "single_transformer_blocks": 1}


#: diffusers attention backends that compute through torch's scaled_dot_product_attention, which the probe reads
VISIBLE_BACKENDS = ("native", "_native_cudnn", "_native_efficient", "_native_flash", "_native_math")


def check_visible_attention(model: torch.nn.Module, modules: list[torch.nn.Module]) -> None:
    """Raise if the probe cannot see these attention modules' scores: a ``torch.compile``'d model, an
    attention backend other than PyTorch's scaled-dot-product attention (``set_attention_backend``,
    per processor or active globally), or xformers processors. Names what to switch back to."""
    check_not_compiled(model)
    fix = "call model.reset_attention_backend() (or set_attention_backend('native')) for scoring"
    try:
        from diffusers.models.attention_dispatch import _AttentionBackendRegistry

        active = str(getattr(_AttentionBackendRegistry.get_active_backend()[0], "value",
                             _AttentionBackendRegistry.get_active_backend()[0]))
    except Exception:  # noqa: BLE001 -- another diffusers version: no global backend to check
        active = "native"
    for module in modules:
        processor = module.processor
        if "xformers" in type(processor).__name__.lower():
            raise ValueError(f"{type(processor).__name__} computes attention in xformers, which the probe cannot "
                             "see; call pipe.disable_xformers_memory_efficient_attention() before scoring")
        if not _dispatches(type(processor)):
            continue  # calls torch's SDPA itself: no backend setting applies to it
        backend = getattr(processor, "_attention_backend", None)
        backend = active if backend is None else str(getattr(backend, "value", backend))
        if backend not in VISIBLE_BACKENDS:
            raise ValueError(f"attention backend {backend!r} does not go through torch's scaled_dot_product_attention, "
                             f"which the probe reads (visible: {', '.join(VISIBLE_BACKENDS)}); {fix}")


def check_not_compiled(model: torch.nn.Module) -> None:
    """Raise if ``model`` (or a block of it) is ``torch.compile``'d: the probe cannot see inside a compiled graph."""
    compiled = hasattr(model, "_orig_mod") or any(getattr(m, "_compiled_call_impl", None) is not None
                                                  for m in model.modules())
    if compiled:
        raise ValueError("the denoiser (or a block of it) is torch.compile'd; the probe cannot see inside a compiled "
                         "graph: score the uncompiled module (compile after selection)")


@functools.lru_cache(maxsize=None)
def _dispatches(processor_cls: type) -> bool:
    """Whether a processor computes attention through diffusers' backend dispatcher (which
    ``set_attention_backend`` can switch away from torch's SDPA) rather than calling SDPA itself."""
    try:
        return "dispatch_attention_fn" in inspect.getsource(processor_cls.__call__)
    except (OSError, TypeError):
        return True  # no source to read: assume the dispatcher, and check the backend


def _forward_order(name: str) -> tuple:
    """Sort key putting stages in forward order (UNet: down, mid, up; HunyuanVideo: dual-stream
    ``transformer_blocks`` before ``single_transformer_blocks``), indices numerically.

    ``named_modules`` follows registration order, and e.g. ``UNetMotionModel`` registers
    ``up_blocks`` before ``mid_block``.
    """
    parts = name.split(".")
    return (_STAGE.get(parts[0], 0), *[(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts])


@dataclass
class AttentionRecord:
    """BANSA of one attention call, per batch entry and head.

    call: index of the model's forward call since the probe was entered (0-based).
    layer: index of the attention module among the probed kind (0-based, forward order).
    name: the module's name in ``model.named_modules()``.
    sub: index of the attention computation within that processor call (usually 0).
    scores: ``(B, H)`` float32, mean BANSA over the scored query rows, nats (B: the
        probe's ``batch_slice`` of the call's batch, if one was set).
    empty_rows: ``(B, H)`` int64, (row, sample) pairs that lost all mass.
    rows: ``(B, H, Nr)`` per-row BANSA when ``keep_rows=True``, else None.
    num_queries, num_keys: sizes of the attention map (before row selection).
    inputs: when ``keep_inputs=True``, what the scorer saw: ``query`` ``(B, H, Nq, D)``,
        ``key`` ``(B, H, Nk, D)``, ``attn_mask`` (or None) and ``scale`` (or None: 1/sqrt(D));
        any head's probabilities can be rebuilt from them, one row at a time if need be.
    """

    call: int
    layer: int
    name: str
    sub: int
    scores: torch.Tensor
    empty_rows: torch.Tensor
    rows: torch.Tensor | None
    num_queries: int
    num_keys: int
    inputs: dict | None = None


class _ProbedProcessor:
    """Base of the per-class wrappers made by :func:`_wrapper_class`."""

    def __init__(self, original, probe: "AttentionProbe", layer: int, name: str):
        self.original = original
        self.probe = probe
        self.layer = layer
        self.name = name


@functools.lru_cache(maxsize=None)
def _wrapper_class(original_cls: type) -> type:
    original_call = original_cls.__call__

    @functools.wraps(original_call)  # keeps the signature diffusers inspects
    def __call__(self, attn, *args, **kwargs):
        return self.probe._processor_call(self, attn, args, kwargs)

    return type(f"Probed{original_cls.__name__}", (_ProbedProcessor,), {"__call__": __call__})


class AttentionProbe:
    """Install on chosen attention layers of a model; score BANSA while armed.

    Each probed layer's processor is wrapped: the layer's output stays bit-identical, and
    its attention probabilities are scored with :func:`~anse_lib.bansa.bansa_chunked` from
    the same queries and keys. Use as a context manager: the original processors are
    restored on exit, also when an exception (including :class:`StopForward`) is raised.

    Args:
        model: a supported transformer or UNet (see :data:`FAMILIES`).
        layers: indices into :func:`attention_layers` (``None``: all).
        attention: which attention kind to probe (``None``: the family's default).
        rows: for joint text+video attention, which query rows are scored (``"all"``,
            ``"video"``, ``"text"``).
        k: K, Bernoulli masks per row (>= 2).
        drop_prob: probability of dropping an entry, in (0, 1).
        mask_seed: seed of the masks; layer i uses salt i, so every candidate and every
            call gets the same masks.
        row_sample: score a fixed random subset of this many query rows per layer
            (``None``: all, as in the paper; see :func:`~anse_lib.bansa.bansa_chunked`).
        block_rows: rows per block of the scorer (default: from ``block_bytes``).
        block_bytes: the scorer's memory budget per block (``None``: about one query
            tensor of the probed call).
        batch_slice: score only these entries of each call's batch (e.g. the conditional
            half of a batched CFG call; ``None``: all). May be changed between calls.
        keep_rows: also keep per-row scores (for pictures of where uncertainty sits).
        keep_inputs: also keep the scored query and key tensors (see :class:`AttentionRecord`;
            memory ``2 x B x H x N x D`` values per layer: for one candidate of CogVideoX-2B,
            17,776 tokens, 137 MB per layer in bf16, 4.1 GB for all 30; keep few layers there).
        stop_at: ``(call, layer)`` after which the forward is ended with :class:`StopForward`.
        accumulate_dtype: the scorer's arithmetic (float32 by default: ~1e-8 nats on a
            layer's score, far below the differences between candidates; float64 for checks).

    Examples:
        >>> import torch
        >>> from anse_lib.probe import AttentionProbe
        >>> from anse_lib.toyworld import load_toy_pipeline
        >>> pipe = load_toy_pipeline()
        >>> plain = pipe("a big red circle moving left", num_inference_steps=2,
        ...              generator=torch.Generator().manual_seed(0)).frames
        >>> with AttentionProbe(pipe.transformer, layers=[0, 1]) as probe:
        ...     probed = pipe("a big red circle moving left", num_inference_steps=2,
        ...                   generator=torch.Generator().manual_seed(0)).frames
        >>> bool((plain == probed).all())  # outputs are unchanged
        True
        >>> sorted(probe.scores(call=0))  # layer -> per-batch-entry scores (B, H)
        [0, 1]
    """


    def __init__(self, model: torch.nn.Module, layers=None, attention: str | None = None, rows: str = "all",
                 k: int = 10, drop_prob: float = 0.2, mask_seed: int = 0, row_sample: int | None = None,
                 block_rows: int | None = None, block_bytes: int | None = None, batch_slice: slice | None = None,
                 keep_rows: bool = False, keep_inputs: bool = False, stop_at: tuple[int, int] | None = None,
                 accumulate_dtype: torch.dtype = torch.float32):
        check_k(k)
        check_drop_prob(drop_prob)
        if row_sample is not None:
            check_row_sample(row_sample)
        check_not_compiled(model)
        self.model = model
        self.family = model_family(model)
        all_layers = attention_layers(model, attention)
        self.num_layers = len(all_layers)
        if layers is None:
            layers = list(range(self.num_layers))
        if isinstance(layers, (int, str)) or not hasattr(layers, "__iter__"):
            raise ValueError(f"layers takes 0-based layer indices (a list), got {layers!r}; for the depth d, "
                             f"layers 1..d, give range(d) (this model has {self.num_layers} layers)")
        layers = sorted(set(int(i) for i in layers))
        bad = [i for i in layers if not 0 <= i < self.num_layers]
        if bad or not layers:
            raise ValueError(f"layer indices {bad or layers} out of range: this model has {self.num_layers} "
                             f"probe-able attention layers, indices 0..{self.num_layers - 1}")
        if rows not in ROW_CHOICES:
            raise ValueError(f"rows must be one of {', '.join(ROW_CHOICES)}, got {rows!r}")
        if rows != "all" and not self.family.joint:
            raise ValueError(f"rows={rows!r} needs joint text+video attention; {type(model).__name__} has none")
        self.layers = layers
        self.modules = [(i, *all_layers[i]) for i in layers]
        self.rows = rows
        self.k, self.drop_prob, self.mask_seed = k, drop_prob, mask_seed
        self.row_sample, self.block_rows, self.block_bytes = row_sample, block_rows, block_bytes
        self.batch_slice = batch_slice
        self.keep_rows, self.keep_inputs, self.accumulate_dtype = keep_rows, keep_inputs, accumulate_dtype
        self.stop_at = stop_at
        self.on_model_call: Callable[[int, int], None] | None = None
        self.armed = True
        self.records: list[AttentionRecord] = []
        self.call_batch_sizes: list[int] = []
        self._call = -1
        self._saved: list = []
        self._hook = None

    # --- install / restore -------------------------------------------------------------
    def __enter__(self) -> "AttentionProbe":
        check_visible_attention(self.model, [module for _, _, module in self.modules])
        self._call = -1
        self.records, self.call_batch_sizes = [], []
        try:
            for layer, name, module in self.modules:
                original = module.processor
                wrapper = _wrapper_class(type(original))(original, self, layer, name)
                self._saved.append((module, original))
                module.set_processor(wrapper)
            self._hook = self.model.register_forward_pre_hook(self._count_call, with_kwargs=True)
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc) -> bool:
        self._restore()
        return False

    def _restore(self):
        for module, original in reversed(self._saved):
            module.set_processor(original)
        self._saved = []
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _count_call(self, module, args, kwargs):
        self._call += 1
        x = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))
        self.call_batch_sizes.append(int(x.shape[0]))
        if self.on_model_call is not None:
            self.on_model_call(self._call, self.call_batch_sizes[-1])

    # --- the armed path ----------------------------------------------------------------------
    def _processor_call(self, wrapper: _ProbedProcessor, attn, args, kwargs):
        if not self.armed:
            return wrapper.original(attn, *args, **kwargs)
        text_len = None
        if self.rows != "all":
            bound = inspect.signature(wrapper.original.__call__).bind(attn, *args, **kwargs)
            text_len = bound.arguments["encoder_hidden_states"].shape[1]
        sub = 0
        real_sdpa = F.scaled_dot_product_attention

        def spy(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
            nonlocal sub
            query_rows = None
            if text_len is not None:
                n = query.shape[-2]
                first = self.family.text_position == "first"
                text = slice(0, text_len) if first else slice(n - text_len, n)
                video = slice(text_len, n) if first else slice(0, n - text_len)
                query_rows = text if self.rows == "text" else video
            self._score(wrapper, sub, query, key, attn_mask, is_causal, scale, enable_gqa, query_rows)
            sub += 1
            return real_sdpa(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                             scale=scale, enable_gqa=enable_gqa)

        F.scaled_dot_product_attention = spy
        try:
            out = wrapper.original(attn, *args, **kwargs)
        finally:
            F.scaled_dot_product_attention = real_sdpa
        if sub == 0:
            raise ValueError(
                f"the probe saw no scaled_dot_product_attention call in {wrapper.name} "
                f"({type(wrapper.original).__name__}); only processors that use PyTorch SDPA "
                "(diffusers' default 'native' attention backend) can be probed: call "
                "model.reset_attention_backend() (or set_attention_backend('native')) for scoring"
            )
        if self.stop_at is not None and (self._call, wrapper.layer) == tuple(self.stop_at):
            raise StopForward(f"stopped after call {self._call}, layer {wrapper.layer}")
        return out

    def _score(self, wrapper, sub, query, key, attn_mask, is_causal, scale, enable_gqa, query_rows):
        if query.dim() == 3:  # (B, N, D) without a head axis
            query, key = query.unsqueeze(1), key.unsqueeze(1)
            attn_mask = attn_mask.unsqueeze(1) if attn_mask is not None and attn_mask.dim() == 3 else attn_mask
        if enable_gqa and key.shape[1] != query.shape[1]:
            key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
        if self.batch_slice is not None:
            b = query.shape[0]
            query, key = query[self.batch_slice], key[self.batch_slice]
            if attn_mask is not None and attn_mask.dim() == 4 and attn_mask.shape[0] == b:
                attn_mask = attn_mask[self.batch_slice]
        if is_causal:
            nq, nk = query.shape[2], key.shape[2]
            attn_mask = torch.ones(nq, nk, dtype=torch.bool, device=query.device).tril(diagonal=nk - nq)
        with torch.no_grad():
            res = bansa_chunked(query.detach(), key.detach(), scale=scale,  # on the model's device
                                attn_mask=None if attn_mask is None else attn_mask.detach(),
                                k=self.k, drop_prob=self.drop_prob, seed=self.mask_seed, salt=wrapper.layer,
                                query_rows=query_rows, row_sample=self.row_sample,
                                block_rows=self.block_rows, block_bytes=self.block_bytes,
                                accumulate_dtype=self.accumulate_dtype)
        self.records.append(AttentionRecord(
            call=self._call, layer=wrapper.layer, name=wrapper.name, sub=sub, scores=res.score,
            empty_rows=res.empty_rows, rows=res.rows if self.keep_rows else None,
            num_queries=query.shape[2], num_keys=key.shape[2],
            inputs=dict(query=query.detach(), key=key.detach(), scale=scale,
                        attn_mask=None if attn_mask is None else attn_mask.detach()) if self.keep_inputs else None,
        ))

    # --- results ---------------------------------------------------------------------------------
    def scores(self, call: int, sub: int | None = None) -> dict[int, torch.Tensor]:
        """``{layer: (B, H) scores}`` of one model call (the mean over ``sub`` computations if several)."""
        out: dict[int, list] = {}
        for r in self.records:
            if r.call == call and (sub is None or r.sub == sub):
                out.setdefault(r.layer, []).append(r.scores)
        return {layer: torch.stack(v).mean(0) for layer, v in sorted(out.items())}
