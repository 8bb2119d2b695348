"""Selection overhead as a ratio to plain generation, next to its lower bound.

    python benchmarks/selection_overhead.py

Plain generation: one video, 50 steps with CFG (100 transformer passes over one video).
Selection: M = 10 candidates, K = 10 masks, layers 1..d scored at the first step, the
forward stopped after layer d. If scoring cost nothing beyond the forward pass, the
selection would cost M x (d/L) transformer passes, so the lower bound of the ratio is
M x (d/L) / (2 x steps). Everything is measured in this one run, on this machine.
"""
from __future__ import annotations

import time

import torch

from anse_lib import tiny_pipelines as T
from anse_lib.select import select_noise
from anse_lib.toyworld import load_toy_pipeline

M, K, STEPS = 10, 10, 50


def timed(fn, repeats=2):
    fn()  # warm-up (mask cache, allocator)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def report(name, pipe, prompt, kw, num_layers, depths):
    plain = timed(lambda: pipe(prompt=prompt, num_inference_steps=STEPS, output_type="latent",
                               generator=torch.Generator().manual_seed(0), **kw), repeats=1)
    print(f"\n{name}: plain generation ({STEPS} steps, CFG) {plain:.2f} s")
    print(f"{'d/L':>6} {'selection s':>12} {'ratio':>8} {'lower bound':>12} {'gap (points)':>13}")
    for d in depths:
        sel = timed(lambda: select_noise(pipe, prompt, seeds=list(range(M)), k=K, layers=d,
                                         num_inference_steps=STEPS, **kw))
        ratio, bound = sel / plain, M * (d / num_layers) / (2 * STEPS)
        print(f"{d}/{num_layers:<4} {sel:12.2f} {ratio:8.1%} {bound:12.1%} {100 * (ratio - bound):13.1f}")


def main():
    print(f"M={M} candidates, K={K}, {torch.get_num_threads()} threads")
    toy = load_toy_pipeline()
    layers = toy.transformer.config.num_layers
    report("toy model (532 tokens, 6 layers)", toy, "a big red circle moving left", {}, layers, [layers // 2, layers])
    pipe, kw = T.tiny_cogvideox_pipeline(num_layers=4, frames=49, height=288, width=288)
    kw = {k: v for k, v in kw.items() if k != "num_inference_steps"}
    tokens = 13 * 18 * 18
    report(f"tiny CogVideoX ({tokens} video tokens, 4 layers)", pipe, None, kw, 4, [2, 4])


if __name__ == "__main__":
    main()
