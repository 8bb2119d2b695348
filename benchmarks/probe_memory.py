"""Peak extra memory of the armed probe vs a plain forward, and vs the naive computation.

    python benchmarks/probe_memory.py      # ~5 min on 2 cores
    python benchmarks/probe_memory.py --device cuda   # on a GPU: peak GPU memory at CogVideoX-2B's size

``--device cuda`` measures peak GPU memory (``torch.cuda.max_memory_allocated``) of the
first-step forward of M = 10 candidates through a random-weight transformer of
CogVideoX-2B's size (30 layers, 30 heads x 64, 17,776 tokens, bf16), plain vs with the
probe armed on layers 1..14 (K = 10, all rows, the PyTorch scorer). Without a GPU it says
so and exits; ``--device cpu`` (the default) runs the CPU measurement below.

The forward that selection runs: the first step of M = 10 candidates (the conditional
branch, one batch) through a random-initialised CogVideoX at 4,220 tokens (4,212 video +
8 text), 2 layers, 2 heads x 64 (the head width of CogVideoX-2B; see
``selection_overhead.py`` for why this config and not the 2 x 16 one of the tests). Each
variant runs in a fresh process. Two views of memory, both reported:

- **footprint**: peak resident memory during the call above the process before the model
  was built = weights + inputs + activations. This is what decides whether a job fits,
  and the <= 10 % target is judged on it.
- **activations only**: peak during the call above the memory just before it. A plain
  CPU forward holds little here (SDPA never materialises attention), so this view
  magnifies any fixed cost of the probe.

The probe's own memory is its block buffers (``block_bytes``; default: the size of the
call's query tensor) plus, if enabled, the mask cache (``anse_lib.bansa.MASK_CACHE``; off
by default, 256 MiB here), which pays off when the same masks serve several batches or
prompts. "naive" is one layer's full attention tensor and its K masked samples, as a
full-tensor implementation holds them: computed, not measured (it does not fit in this machine).

The runs set ``MALLOC_MMAP_THRESHOLD_`` to 1 MiB (glibc; :func:`anse_lib.studies.costs.fixed_mmap_threshold`):
every allocation of a MiB or more is mapped on its own and returned when freed. With glibc's default,
the threshold moves
with what was freed before, freed blocks may stay resident, and the same run's peak moved
by 18-39 MiB between processes (the figure to judge, 10 %, is ~37 MiB) and the median of
7 runs by 5 points of "extra" between two runs of this script; with it, a run's 7
processes agree to 1-2 MiB. Set ``MALLOC_MMAP_THRESHOLD_`` yourself to measure another
allocator setting.
"""
from __future__ import annotations

import multiprocessing as mp

import torch

from anse_lib.studies.costs import _peak_mib, _reset_peak, fixed_mmap_threshold

M, K = 10, 10
REPEATS = 3  # with the fixed mmap threshold identical runs agree to ~2 MiB (glibc's default: tens of MiB)
HEADS, HEAD_DIM, LAYERS, FRAMES, SIZE = 2, 64, 2, 49, 288


def _run(variant: str, row_sample, mask_cache_bytes: int) -> tuple[float, float]:
    torch.set_num_threads(2)
    from anse_lib import tiny_pipelines as T
    from anse_lib.bansa import MASK_CACHE
    from anse_lib.probe import AttentionProbe

    MASK_CACHE.max_bytes = mask_cache_bytes
    base = _reset_peak()
    pipe, kw = T.tiny_cogvideox_pipeline(num_layers=LAYERS, frames=FRAMES, height=SIZE, width=SIZE, heads=HEADS,
                                         head_dim=HEAD_DIM)
    model = pipe.transformer
    g = torch.Generator().manual_seed(0)
    lat_frames, lat_size = (FRAMES - 1) // 4 + 1, SIZE // 8
    x = torch.randn(M, lat_frames, 4, lat_size, lat_size, generator=g)
    emb = kw["prompt_embeds"].repeat(M, 1, 1)
    rope = pipe._prepare_rotary_positional_embeddings(SIZE, SIZE, lat_frames, "cpu")
    args = dict(hidden_states=x, encoder_hidden_states=emb, timestep=torch.full((M,), 999), image_rotary_emb=rope)
    with torch.no_grad():
        model(**{k: v[:1] if k != "image_rotary_emb" else v for k, v in args.items()})  # warm-up, 1 candidate
        before = _reset_peak()
        if variant == "plain":
            model(**args)
        else:
            with AttentionProbe(model, k=K, row_sample=row_sample):
                model(**args)
        peak = _peak_mib()
    return peak - base, peak - before


def measure(variant, row_sample=None, mask_cache_bytes=0):
    """Median (footprint, activations) in MiB over REPEATS fresh processes, and their spread."""
    runs = []
    for _ in range(REPEATS):
        with fixed_mmap_threshold(), mp.get_context("spawn").Pool(1) as pool:
            runs.append(pool.apply(_run, (variant, row_sample, mask_cache_bytes)))
    foot, act = (sorted(r[i] for r in runs) for i in (0, 1))
    return foot[REPEATS // 2], act[REPEATS // 2], foot[-1] - foot[0]


def gpu_peaks() -> None:
    """Peak GPU memory of the 2B-sized first step, plain vs armed (layers 1..14), in MiB."""
    from selection_overhead import gpu_cogvideox_2b

    from anse_lib.probe import AttentionProbe, StopForward

    pipe, kw = gpu_cogvideox_2b()
    model = pipe.transformer
    lat = torch.randn(M, 13, 4, 60, 90, device="cuda", dtype=torch.bfloat16)
    rope = pipe._prepare_rotary_positional_embeddings(480, 720, 13, "cuda")
    args = dict(hidden_states=lat, encoder_hidden_states=kw["prompt_embeds"].repeat(M, 1, 1),
                timestep=torch.full((M,), 999, device="cuda"), image_rotary_emb=rope)
    peaks = {}
    with torch.no_grad():
        for variant in ("plain", "armed"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            if variant == "plain":
                model(**args)
            else:
                with AttentionProbe(model, layers=range(14), k=K, stop_at=(0, 13)) as probe:
                    try:
                        model(**args)
                    except StopForward:
                        pass
                assert len(probe.records) == 14
            torch.cuda.synchronize()
            peaks[variant] = torch.cuda.max_memory_allocated() / 2**20
    print(f"GPU {torch.cuda.get_device_name()}: CogVideoX-2B size, M={M}, bf16; peak allocated")
    print(f"plain first step (all 30 layers): {peaks['plain']:,.0f} MiB")
    extra = peaks["armed"] / peaks["plain"] - 1
    print(f"armed, layers 1..14, K={K}, all rows: {peaks['armed']:,.0f} MiB ({extra:+.1%})")


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = ap.parse_args(argv)
    from selection_overhead import check_device

    check_device(args.device, ap)
    if args.device == "cuda":
        gpu_peaks()
        return
    tokens = ((FRAMES - 1) // 4 + 1) * (SIZE // 16) ** 2 + 8
    print(f"CogVideoX, random weights: {tokens} tokens, {LAYERS} layers, {HEADS} heads x {HEAD_DIM}; "
          f"batch of M={M} candidates; K={K}")
    foot, act, spread = measure("plain")
    print(f"medians of {REPEATS} runs each (spread: max - min footprint over the runs)")
    print(f"plain forward: footprint {foot:.0f} MiB (spread {spread:.0f}), activations {act:.0f} MiB")
    print(f"{'armed probe':<44} {'footprint':>10} {'extra':>8} {'activations':>12} {'extra':>8} {'spread':>8}")
    for rows in (None, 256):
        for cache in (0, 256):
            f, a, sp = measure("probe", rows, cache << 20)
            label = f"rows {rows or 'all'}, mask cache {cache or 'off (default)'}{' MiB' if cache else ''}"
            print(f"{label:<44} {f:6.0f} MiB {f / foot - 1:8.1%} {a:8.0f} MiB {a / act - 1:8.1%} {sp:4.0f} MiB",
                  flush=True)
    naive_mib = (K + 2) * M * HEADS * tokens**2 * 4 / 2**20
    print(f"naive, one layer's attention of the batch and its {K} samples, float32 (computed): {naive_mib:,.0f} MiB "
          f"= {naive_mib / foot:.0f}x the plain footprint")


if __name__ == "__main__":
    main()
