"""Selection overhead as a ratio to plain generation, next to its FLOP-proportional estimate.

    python benchmarks/selection_overhead.py            # both models (2-10 min on 2 cores)
    python benchmarks/selection_overhead.py --only toy
    python benchmarks/selection_overhead.py --device cuda   # on a GPU: a CogVideoX-2B-sized model

``--device cuda`` measures, on a GPU, a random-weight transformer of CogVideoX-2B's size
(30 layers, 30 heads x 64, 17,776 tokens = 13 x 30 x 45 video + 226 text, bf16) at the
paper's setting: M = 10, d = 14, K = 10, the conditional branch, all rows, next to the estimate
M x (d/L) / (2 x steps). The scorer there is the PyTorch one (``backend="torch"``, the
default off the CPU). Without a GPU it says so and exits; ``--device cpu`` (the default)
runs the CPU sizes below.

Plain generation: one video, 50 steps with CFG (100 transformer passes over one video).
Selection: M = 10 candidates, K = 10 masks, layers 1..d scored at the first step (the
conditional branch only, in one batch), the forward stopped after layer d. If scoring
cost nothing beyond the forward pass, selection would cost M x (d/L) transformer passes,
so the FLOP-proportional estimate of the ratio is M x (d/L) / (2 x steps) (column ``bound`` of
the saved table). It is not a strict bound: on the toy model selection with the scorer off
runs below it (presumably because 10 candidates in one batch cost less per video than a
generation's batches of 2; not measured).

Two ways of scoring are reported:
- all query rows, as in the paper;
- ``row_sample`` rows per layer (a fixed random subset, the same for every candidate):
  an unbiased estimate of the same mean. "rank agreement" is the Spearman correlation,
  over the M candidates, of its scores with the all-rows scores: how much of the ranking
  the shortcut keeps. "spread / error" says why: the standard deviation of the all-rows
  scores across candidates over that of the sampling error (sampled minus all-rows
  score). Below about 1 the candidates differ by less than the sampling noise and no
  ranking can survive; on random weights candidates barely differ.

Models:
- the shipped toy model (its size is printed);
- a random-initialised CogVideoX at 4,220 tokens (4,212 video + 8 text), 4 layers,
  2 heads x 64. What sets the cost of scoring relative to the forward is the forward's
  work per attention entry: ~4 x head_dim + 12 x width x head_dim / tokens multiply-adds,
  here 4 x 64 + 12 x 128 x 64 / 4220 = 279, for CogVideoX-2B 4 x 64 + 12 x 1920 x 64 /
  17776 = 339. The 2 x 16 config of the tests (~65) would overstate the overhead about
  5x. More heads would leave the per-entry figure about the same; a first attempt at
  8 heads x 64 (a batch of 10 at 4k tokens) did not finish two forward passes in 12
  CPU-minutes here, which we did not investigate. Plain time is measured as
  ``t(1 step) + 49 x (t(3 steps) - t(1 step)) / 2`` (every step costs the same; from 1
  and 2 steps, a single difference times 49, it moved by a third between two runs).

Rows "all" and "256" use the default scorer: its per-row arithmetic compiled
(``anse_lib/kernel.py``) when gcc is there; rows "all/pt" score all rows with the same
arithmetic as PyTorch tensor operations, with the largest difference from "all" in the
candidates' scores.

Rows "none" run the same selection with the scorer switched off (every score replaced by
zeros): the forward passes, the probe's plumbing and the pipeline's set-up alone. The
distance from them to the "all" rows is what computing BANSA costs; the distance from
them to the estimate is what the rest costs.

Rows "logits" score all rows but skip BANSA's arithmetic: only the attention logits are
recomputed, block by block, as the scorer does (a product of the layer's queries and
keys, ~head_dim multiply-adds per entry; the processor cannot take them from the
forward's fused attention and keep its output bit-identical). That is a floor for any
exact all-rows scorer here: if it is already above the target, no faster arithmetic
reaches the target with all rows.

Every time is the shortest of several runs (3 for the toy, 2 for CogVideoX): a run moves
by tens of percent with whatever else the machine does.
Everything is measured in this one run, on this machine; compare ratios.

``--save`` also writes every printed row to ``data/sweeps/selection_overhead.csv`` with
``selection_overhead.json`` beside it (the command, the toy model's hash, the machine's
threads and CPU, the time): notebook 07 reads it. Run it on a quiet machine.
For the toy model it also measures every depth d = 1..L and, at the calibrated depth, M = 5
and 20 candidates.
"""
from __future__ import annotations

import argparse
import contextlib
import time
from unittest import mock

import torch
from scipy.stats import spearmanr

from anse_lib import AnseConfig, BansaConfig, bansa, kernel, probe, select_noise
from anse_lib import tiny_pipelines as T
from anse_lib.calibrate import calibrated_depth
from anse_lib.toyworld import load_toy_pipeline

M, K, STEPS = 10, 10, 50
ROW_SAMPLE = 256


def seconds(fn, repeats: int = 1) -> float:
    """Shortest wall time of ``repeats`` calls (the least disturbed by the rest of the machine)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def plain_seconds(pipe, prompt, kw, extrapolate: bool, repeats: int = 1) -> float:
    def run(steps):
        return seconds(lambda: pipe(prompt=prompt, num_inference_steps=steps, output_type="latent",
                                    generator=torch.Generator().manual_seed(0), **kw), repeats)
    if not extrapolate:
        run(2)  # warm-up
        return run(STEPS)
    run(1)  # warm-up
    one, three = run(1), run(3)
    return one + (STEPS - 1) * (three - one) / 2


def _no_score(query, key, *args, row_sample=None, **kwargs):
    """Stands in for the probe's bansa_chunked: zeros of the shape it would return."""
    b, h, nq = query.shape[:3]
    n = nq if row_sample is None else min(nq, row_sample)
    return bansa.BansaRows(rows=torch.zeros(b, h, n), empty_rows=torch.zeros(b, h, dtype=torch.int64))


def _no_arithmetic(x, keys, *args, **kwargs):
    """Stands in for the compiled scorer of one block of logits: zeros of its output shape."""
    nb, g, r, _ = x.shape
    return torch.zeros(nb, g, r), torch.zeros(nb, g, dtype=torch.int64)


def scorer_off():
    """Selection with every score computation replaced by zeros: what the forward passes,
    the probe's plumbing and the pipeline's set-up cost without BANSA itself."""
    return mock.patch.object(probe, "bansa_chunked", _no_score)


def logits_only():
    """Selection that recomputes every block's logits but replaces BANSA's arithmetic by zeros."""
    return mock.patch.multiple(bansa, BACKEND="compiled", _compiled_rows_block=_no_arithmetic)


def torch_backend():
    """Selection with the scorer's arithmetic in PyTorch instead of the compiled kernel."""
    return mock.patch.object(bansa, "BACKEND", "torch")


ROWS: list[dict] = []  # every printed row, for --save


def report(name, pipe, prompt, kw, num_layers, depths, extrapolate=False, repeats=1,
           variants=("off", "logits", None, "torch", ROW_SAMPLE), ms=(M,), entries=None):
    """Print (and keep in ``ROWS``) selection time over plain generation for each depth, M and scorer variant.

    ``entries(d)``: attention entries one candidate's scoring covers at depth ``d`` (heads x
    rows x keys x layers), kept in the table for per-entry costs.
    """
    plain = plain_seconds(pipe, prompt, kw, extrapolate, repeats)
    how = "extrapolated from 1 and 3 steps" if extrapolate else "measured"
    print(f"\n{name}\nplain generation ({STEPS} steps, CFG): {plain:.2f} s ({how})")
    print(f"{'d/L':>6} {'rows':>6} {'selection s':>12} {'ratio':>8} {'estimate':>12} {'gap (points)':>13} "
          f"{'rank agreement':>15} {'spread / error':>15}")
    select = lambda d, rs, m: select_noise(  # noqa: E731
        pipe, prompt, AnseConfig(depth=d, bansa=BansaConfig(num_masks=K, row_sample=rs)), seeds=list(range(m)),
        num_inference_steps=STEPS, **kw)
    select(1, ROW_SAMPLE, M)  # warm-up
    for d, m in [(d, M) for d in depths] + [(depths[0], m) for m in ms if m != M]:
        bound = m * (d / num_layers) / (2 * STEPS)
        for rs in (variants if m == M else ("off", None)):  # all rows before sampled ones: compared with them
            ctx = {"off": scorer_off, "logits": logits_only, "torch": torch_backend}.get(rs, contextlib.nullcontext)()
            with ctx:
                out = []
                sel = seconds(lambda: out.append(select(d, rs if isinstance(rs, int) else None, m)), repeats)
                res = out[-1]
            ratio = sel / plain
            if rs == "off":
                agree, spread = "(scorer off)", ""
            elif rs == "logits":
                agree, spread = "(logits only)", ""
            elif rs is None:
                full, agree, spread = res, "", ""
            elif rs == "torch":
                same = (res.scores.bansa - full.scores.bansa).abs().max()
                agree, spread = f"(max diff {same:.0e})", ""
            else:
                exact, sampled = full.scores.bansa.to_numpy(), res.scores.bansa.to_numpy()
                agree = f"{spearmanr(sampled, exact)[0]:.2f}"
                spread = f"{exact.std() / (sampled - exact).std():.2f}"
            label = {"off": "none", None: "all", "torch": "all/pt"}.get(rs, rs)
            print(f"{d}/{num_layers:<4} {label:>6} {sel:12.2f} {ratio:8.1%} {bound:12.1%} "
                  f"{100 * (ratio - bound):13.1f} {agree:>15} {spread:>15}" + (f"  (M = {m})" if m != M else ""),
                  flush=True)
            ROWS.append({"model": name, "depth": d, "layers": num_layers, "candidates": m, "rows": str(label),
                         "selection_s": sel, "plain_s": plain, "plain_how": how, "ratio": ratio, "bound": bound,
                         "rank_agreement": agree, "spread_over_error": spread,
                         "entries_per_candidate": entries(d) if entries else None})


def check_device(device: str, parser) -> None:
    """Refuse ``--device cuda`` cleanly (one ``error:`` line, exit 2) when no GPU is present."""
    if device == "cuda" and not torch.cuda.is_available():
        parser.exit(2, f"error: --device cuda: no GPU is present here (torch.cuda.is_available() is False, "
                       f"torch {torch.__version__}); run with --device cpu for the CPU sizes\n")


def gpu_cogvideox_2b():
    """A random-weight CogVideoX of CogVideoX-2B's size on the GPU in bf16, and its call arguments."""
    pipe, kw = T.tiny_cogvideox_pipeline(num_layers=30, frames=49, height=480, width=720, heads=30, head_dim=64,
                                         text_len=226)
    pipe.to("cuda", torch.bfloat16)
    kw = {k: (v.to("cuda", torch.bfloat16) if torch.is_tensor(v) else v) for k, v in kw.items()
          if k != "num_inference_steps"}
    return pipe, kw


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("toy", "cogvideox"), default=None)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--save", action="store_true", help="write the table to data/sweeps/selection_overhead.csv")
    args = ap.parse_args(argv)
    check_device(args.device, ap)
    if args.device == "cuda":
        pipe, kw = gpu_cogvideox_2b()
        print(f"M={M} candidates, K={K}, d=14 of 30, GPU {torch.cuda.get_device_name()}, bf16, scorer: PyTorch")
        report("CogVideoX-2B size, random weights (17,550 video + 226 text tokens, 30 layers, 30 heads x 64)", pipe,
               None, kw, 30, [14], extrapolate=True, repeats=2, variants=("off", None, ROW_SAMPLE))
        return
    scorer = "compiled" if kernel.available() else f"PyTorch ({kernel.build_error()})"
    print(f"M={M} candidates, K={K}, row_sample={ROW_SAMPLE}, {torch.get_num_threads()} threads, scorer: {scorer}")
    if args.only in (None, "toy"):
        toy = load_toy_pipeline()
        layers = toy.transformer.config.num_layers
        c = toy.transformer.config
        frames, _, height, width = toy.video_shape  # pixel space: no temporal compression
        tokens = frames * (height // c.patch_size) * (width // c.patch_size) + c.max_text_seq_length
        depth = calibrated_depth(toy)[0] or layers
        report(f"toy model ({tokens} tokens, {layers} layers, {c.num_attention_heads} heads x {c.attention_head_dim})",
               toy, "a big red circle moving left", {}, layers,
               [depth] + [d for d in range(1, layers + 1) if d != depth], repeats=3, ms=(5, M, 20),
               entries=lambda d: d * c.num_attention_heads * tokens * tokens)
    if args.only in (None, "cogvideox"):
        pipe, kw = T.tiny_cogvideox_pipeline(num_layers=4, frames=49, height=288, width=288, heads=2, head_dim=64)
        kw = {k: v for k, v in kw.items() if k != "num_inference_steps"}
        report("CogVideoX, random weights (4,212 video + 8 text tokens, 4 layers, 2 heads x 64)", pipe, None, kw, 4,
               [2, 4], extrapolate=True, repeats=2, entries=lambda d: d * 2 * 4220 * 4220)
    if args.save:
        save(argv)


def save(argv) -> None:
    """Write ``ROWS`` as the cached table ``data/sweeps/selection_overhead`` with its provenance."""
    import os
    import platform

    import pandas as pd

    from anse_lib import sweeps
    from anse_lib.toyworld import DEFAULT_MODEL_DIR

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    config = {"M": M, "K": K, "steps": STEPS, "row_sample": ROW_SAMPLE, "threads": torch.get_num_threads(),
              "cpu": cpu, "scorer": "compiled" if kernel.available() else "torch",
              "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    sweeps.save("selection_overhead", pd.DataFrame(ROWS), config, DEFAULT_MODEL_DIR,
                sweeps.command_line(__file__, argv))
    print(f"wrote {sweeps.SWEEPS_DIR / 'selection_overhead.csv'} ({len(ROWS)} rows)")

if __name__ == "__main__":
    main()
