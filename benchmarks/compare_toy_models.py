"""A candidate toy model against the shipped one on held-out prompts: ToyBench, paired by noise.

    python benchmarks/compare_toy_models.py --candidate runs/next_export            # 16 x 4, ~3 min
    python benchmarks/compare_toy_models.py --candidate DIR --prompts 64 --seeds 16  # the full benchmark's size

Both models generate the same held-out prompts (the first ``--prompts`` of the benchmark's
draw, ``toy_model_quality.heldout_prompts``) from the same seeds at the pipeline's defaults.
Printed: each model's mean ToyBench per check, the share of videos with every attribute
right, and the candidate-minus-shipped paired differences with 95 % bootstrap intervals
over prompts. A quick screen for training runs (issue 19), judged on ToyBench only;
promoting a model still takes the full benchmark (``toy_model_quality.py``).
"""
from __future__ import annotations

import argparse
import time

import pandas as pd
import torch
from toy_model_quality import SUCCESS, generate, heldout_prompts

from anse_lib.studies.analysis import paired_difference
from anse_lib.toyworld import DEFAULT_MODEL_DIR, load_toy_pipeline, toybench
from anse_lib.toyworld.pipeline import DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_RESCALE, DEFAULT_STEPS

CHECKS = ("colour", "shape", "size", "count", "motion", "semantic", "subject_consistency", "quality")


def score(path, prompts, seeds) -> tuple[pd.DataFrame, float]:
    pipe = load_toy_pipeline(path, verify=False)
    pipe.set_progress_bar_config(disable=True)
    t0, rows = time.perf_counter(), []
    for p in prompts:
        videos = generate(pipe, p, seeds, DEFAULT_STEPS, DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_RESCALE)
        rows += [{"prompt": p, "seed": s, **toybench.toybench(v, p).as_dict()} for s, v in zip(seeds, videos)]
    return pd.DataFrame(rows), time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidate", required=True, help="an exported toy model folder")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=4)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    prompts, seeds = heldout_prompts(64)[: args.prompts], list(range(args.seeds))
    shipped, t_s = score(DEFAULT_MODEL_DIR, prompts, seeds)
    candidate, t_c = score(args.candidate, prompts, seeds)
    print(f"{len(prompts)} held-out prompts x {len(seeds)} seeds; generation {t_s:.0f} s (shipped), "
          f"{t_c:.0f} s (candidate)")
    means = pd.DataFrame({"shipped": shipped[list(CHECKS)].mean(), "candidate": candidate[list(CHECKS)].mean()}).T
    means["all right"] = [(t.semantic >= SUCCESS).mean() for t in (shipped, candidate)]
    print(means.round(3).to_string())
    # size is NaN where a prompt names no size: paired_difference uses the prompts that name one
    diff = paired_difference(candidate, shipped, targets=list(CHECKS))
    print("\ncandidate - shipped, paired by prompt and seed (95 % bootstrap over prompts):")
    print(diff[["difference", "low", "high"]].round(3).to_string())


if __name__ == "__main__":
    main()
