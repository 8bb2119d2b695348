"""Peak extra memory of the armed probe vs a plain forward, and vs the naive computation.

    python benchmarks/probe_memory.py

One first-step forward of a tiny CogVideoX at 4,212 video tokens (+8 text), batch 1 (the
conditional branch), each variant in a fresh process: the peak resident memory during the
call above the memory just before it. The probe's memory is its block buffers
(``block_bytes``) plus the mask cache (``anse_lib.bansa.MASK_CACHE``, which pays off when
the same masks serve several calls, e.g. several prompts). "naive" materialises one
layer's full attention tensor and its K masked copies, as a full-tensor implementation
would.
"""
from __future__ import annotations

import multiprocessing as mp

import torch

from anse_lib.costs import _peak_mib, _reset_peak

K = 10


def _run(variant: str, block_bytes: int, mask_cache_bytes: int) -> float:
    torch.set_num_threads(2)
    from anse_lib import tiny_pipelines as T
    from anse_lib.bansa import MASK_CACHE, bansa_bernoulli
    from anse_lib.probe import AttentionProbe

    MASK_CACHE.max_bytes = mask_cache_bytes

    pipe, kw = T.tiny_cogvideox_pipeline(num_layers=4, frames=49, height=288, width=288)
    model = pipe.transformer
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 13, 4, 36, 36, generator=g)
    emb = kw["prompt_embeds"]
    rope = pipe._prepare_rotary_positional_embeddings(288, 288, 13, "cpu")
    args = dict(hidden_states=x, encoder_hidden_states=emb, timestep=torch.tensor([999]), image_rotary_emb=rope)
    with torch.no_grad():
        model(**args)  # warm-up
        before = _reset_peak()
        if variant == "plain":
            model(**args)
        elif variant == "probe":
            with AttentionProbe(model, k=K, block_bytes=block_bytes):
                model(**args)
        elif variant == "naive":
            q = torch.randn(1, 2, 4220, 16, generator=g)
            probs = torch.softmax(q @ q.transpose(-1, -2) * 0.25, -1)
            bansa_bernoulli(probs, k=K, seed=0)
        return _peak_mib() - before


def measure(variant, block_bytes=256 << 20, mask_cache_bytes=256 << 20):
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_run, (variant, block_bytes, mask_cache_bytes))


def main():
    plain = measure("plain")
    print(f"plain forward: peak extra {plain:.0f} MiB")
    for cache in (256, 0):
        for mib in (16, 64, 256):
            probe = measure("probe", mib << 20, cache << 20)
            print(f"armed probe, block budget {mib:>3} MiB, mask cache {cache:>3} MiB: peak extra {probe:.0f} MiB "
                  f"= {probe / plain:.1f}x the plain forward")
    naive = measure("naive")
    print(f"naive full-tensor BANSA of one layer: peak extra {naive:.0f} MiB = {naive / plain:.1f}x the plain forward")


if __name__ == "__main__":
    main()
