"""How good, and how seed-dependent, is the shipped toy model? (cached in data/sweeps/)

    python benchmarks/toy_model_quality.py            # resumes; prints the figures
    python benchmarks/toy_model_quality.py --prompts 8 --seeds 4 --name quick   # a smaller run

For held-out prompts x seeds at the default sampler settings: ToyBench of every video,
and the BANSA of every (prompt, seed) at the first step (all layers, K=10, drop_prob=0.2,
conditional branch), so later notebooks can ask whether the score predicts quality.
First a guidance sweep over guidance scale and ``guidance_rescale`` on the first 8
prompts (the best semantic score there chose the pipeline's defaults), then the main
sweep, then the defaults against no guidance on the other 56 prompts (out of sample),
last the time to generate one video.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from anse_lib import AnseConfig, BansaConfig, select_noise, sweeps
from anse_lib.studies.analysis import paired_difference
from anse_lib.toyworld import DEFAULT_MODEL_DIR, WorldSplit, load_toy_pipeline, toybench
from anse_lib.toyworld.pipeline import DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_RESCALE, DEFAULT_STEPS
from anse_lib.toyworld.world import distinct_prompt_texts

SUCCESS = 0.999  # a video "succeeds" when every semantic check is right


def heldout_prompts(n: int, seed: int = 1234) -> list[str]:
    """``n`` distinct held-out prompt texts, drawn in a fixed order (repeated draws skipped)."""
    split = WorldSplit.from_json((DEFAULT_MODEL_DIR / "split.json").read_text())
    return distinct_prompt_texts(n, np.random.default_rng(seed), split, held_out=True)


def generate(pipe, prompt, seeds, steps, guidance, guidance_rescale=DEFAULT_GUIDANCE_RESCALE) -> torch.Tensor:
    """One video per seed, batched: ``(len(seeds), F, 3, H, W)`` in [-1, 1]."""
    return pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, guidance_rescale=guidance_rescale,
                num_videos_per_prompt=len(seeds), generator=[torch.Generator().manual_seed(s) for s in seeds]).frames


def quality_chunk(pipe, seeds, steps, guidance, guidance_rescale, k, drop_prob):
    def work(chunk):
        prompt_index, prompt = chunk
        video = generate(pipe, prompt, seeds, steps, guidance, guidance_rescale)
        sel = select_noise(pipe, prompt, AnseConfig(bansa=BansaConfig(num_masks=k, drop_prob=drop_prob)), seeds=seeds)
        rows = []
        for i, s in enumerate(seeds):
            scores = sel.scores.iloc[i]
            rows.append({"prompt_index": prompt_index, "prompt": prompt, "seed": s,
                         **toybench.toybench(video[i], prompt).as_dict(),
                         "bansa": scores.bansa, **{c: scores[c] for c in sel.scores.columns if c.startswith("layer_")}})
        return rows
    return work


def guidance_chunk(pipe, seeds, steps):
    def work(chunk):
        guidance, rescale, prompt = chunk
        video = generate(pipe, prompt, seeds, steps, guidance, rescale)
        return [{"guidance": guidance, "guidance_rescale": rescale, "prompt": prompt, "seed": s,
                 **toybench.toybench(video[i], prompt).as_dict()} for i, s in enumerate(seeds)]
    return work


def guidance_settings(guidance_values, rescale_values) -> list[tuple[float, float]]:
    """(guidance, guidance_rescale) pairs; rescaling is skipped at guidance 1, where CFG is off."""
    return [(g, r) for g in guidance_values for r in rescale_values if g > 1 or r == 0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--name", default="heldout_quality")
    ap.add_argument("--guidance-values", default="1,2,3,4,6")
    ap.add_argument("--guidance-rescale-values", default="0,0.7")
    ap.add_argument("--guidance-prompts", type=int, default=8)
    ap.add_argument("--guidance-only", action="store_true", help="run and print only the guidance sweep")
    args = ap.parse_args(argv)
    pipe = load_toy_pipeline()
    seeds = list(range(args.seeds))
    config = dict(prompts=args.prompts, seeds=seeds, steps=DEFAULT_STEPS, guidance=DEFAULT_GUIDANCE,
                  guidance_rescale=DEFAULT_GUIDANCE_RESCALE, k=10,
                  drop_prob=0.2, threads=torch.get_num_threads())
    # the guidance tables set guidance themselves: their config is the rest of the main one
    shared = {k: v for k, v in config.items() if k not in ("guidance", "guidance_rescale")}
    command = sweeps.command_line(__file__, argv)
    prompts = heldout_prompts(args.prompts)
    gvals = [float(g) for g in args.guidance_values.split(",")]
    rvals = [float(r) for r in args.guidance_rescale_values.split(",")]
    gprompts = prompts[: args.guidance_prompts]
    gsettings = [(g, r, p) for g, r in guidance_settings(gvals, rvals) for p in gprompts]
    gtable = sweeps.run(f"{args.name}_guidance", gsettings,
                        guidance_chunk(pipe, seeds[:4], DEFAULT_STEPS),
                        {**shared, "guidance_values": gvals, "guidance_rescale_values": rvals,
                         "prompts": len(gprompts), "seeds": seeds[:4]},
                        DEFAULT_MODEL_DIR, command=command)
    by_guidance = gtable.groupby(["guidance", "guidance_rescale"])[["semantic", "quality"]].mean()
    print(f"guidance sweep ({len(gprompts)} held-out prompts x 4 seeds; pipeline default {DEFAULT_GUIDANCE}, "
          f"guidance_rescale {DEFAULT_GUIDANCE_RESCALE}):")
    print(by_guidance.round(3).to_string(), flush=True)
    if args.guidance_only:
        return
    table = sweeps.run(args.name, list(enumerate(prompts)),
                       quality_chunk(pipe, seeds, config["steps"], config["guidance"], config["guidance_rescale"],
                                     config["k"], config["drop_prob"]),
                       config, DEFAULT_MODEL_DIR, command=command)

    per_prompt = table.groupby("prompt_index").agg(semantic=("semantic", "mean"), semantic_sd=("semantic", "std"),
                                             quality=("quality", "mean"), quality_sd=("quality", "std"),
                                             success=("semantic", lambda s: (s >= SUCCESS).mean()))
    mixed = ((per_prompt.success > 0) & (per_prompt.success < 1)).mean()
    report = {
        "videos": len(table), "held-out prompt draws": table.prompt_index.nunique(),
        "distinct prompt texts": table.prompt.nunique(), "seeds per prompt": args.seeds,
        "mean semantic": table.semantic.mean(), "mean quality": table.quality.mean(),
        **{f"mean {c}": table[c].mean() for c in toybench.SEMANTIC_CHECKS},
        "share of videos with every attribute right": (table.semantic >= SUCCESS).mean(),
        "mean per-prompt sd of semantic across seeds": per_prompt.semantic_sd.mean(),
        "mean per-prompt sd of quality across seeds": per_prompt.quality_sd.mean(),
        "share of prompts where some seeds succeed and others fail": mixed,
        "share of prompts where every seed succeeds": (per_prompt.success == 1).mean(),
        "share of prompts where every seed fails": (per_prompt.success == 0).mean(),
    }

    # Out of sample: the default guidance was chosen on the guidance sweep's prompts; compare it
    # with no guidance on the other held-out prompts (the same first seeds, so the pairs share noise).
    check_prompts, check_seeds = prompts[args.guidance_prompts:], seeds[:4]
    unguided = sweeps.run(f"{args.name}_unguided", [(1.0, 0.0, p) for p in check_prompts],
                          guidance_chunk(pipe, check_seeds, DEFAULT_STEPS),
                          {**shared, "prompts": len(check_prompts), "skipped_prompts": args.guidance_prompts,
                           "seeds": check_seeds},
                          DEFAULT_MODEL_DIR, command=command)
    print(f"\ndefault guidance {DEFAULT_GUIDANCE} (rescale {DEFAULT_GUIDANCE_RESCALE}) minus no guidance, on the "
          f"{len(check_prompts)} held-out prompts the guidance sweep did not use x {len(check_seeds)} seeds "
          "(mean of per-prompt differences, 95 % bootstrap interval over prompts):")
    print(paired_difference(table, unguided).round(3).to_string())

    pipe("a big red circle moving left", generator=torch.Generator().manual_seed(0))  # warm-up
    times = []
    for i in range(3):
        t0 = time.perf_counter()
        pipe("a big red circle moving left", generator=torch.Generator().manual_seed(i))
        times.append(time.perf_counter() - t0)

    print(json.dumps({k: round(float(v), 4) for k, v in report.items()}, indent=1))
    print(f"\ntime to generate one video ({DEFAULT_STEPS} steps, CFG {DEFAULT_GUIDANCE}, "
          f"{torch.get_num_threads()} threads): median {np.median(times):.2f} s")


if __name__ == "__main__":
    main()
