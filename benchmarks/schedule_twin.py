"""The schedule twin beside the shipped toy model: its guidance, its held-out ToyBench, and the seed's footprint.

    python benchmarks/schedule_twin.py                       # resumes; prints the tables
    python benchmarks/schedule_twin.py --prompts 4 --name quick   # a smaller run

The twin (``data/toy_model_sd_schedule``) is the shipped model fine-tuned on Stable Diffusion
1.5's noise schedule (scaled-linear betas without the zero-SNR rescale, alpha_bar at t = 999
about 0.0047, epsilon prediction, leading spacing), so its first denoising step sees a faint
copy of the clean video in the starting noise, where the shipped model's sees none. Three
tables, each cached in ``data/sweeps/`` with provenance tied to the twin's hash (the shipped
model's hash is part of the config):

1. ``NAME_guidance``: the rule that chose the shipped model's defaults (``toy_model_quality``),
   applied to the twin: guidance 1, 2, 3, 4, 6 with and without ``guidance_rescale`` 0.7 on the
   first 8 held-out prompts x seeds 0-3; the best mean semantic score becomes the twin's
   defaults, written to its ``guidance.json``.
2. ``NAME_heldout``: both models on the first ``--prompts`` held-out prompts (the benchmark's
   draw, ``toy_model_quality.heldout_prompts``) x seeds 0-3, same noise, each at its own
   defaults: ToyBench per check, for paired differences twin minus shipped.
3. ``NAME_footprint``: for the same prompts and seeds, each model's predicted clean video
   ``x0_hat`` after 1, 2, 3, 5 and 10 of its 25 steps (the sampler's guided prediction), and the
   starting noise itself as step 0: per prompt the sum of squares between the prompt's seeds and
   between the prompt's mean and the model's grand mean (their ratio is how much of ``x0_hat``
   the seed decides), and the spread of the prediction's ToyBench over seeds.

Judged on ToyBench and loss only: no attention score is computed here, and nothing is chosen by
how ANSE does.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch
from toy_model_quality import guidance_chunk, guidance_settings, heldout_prompts

from anse_lib import sweeps
from anse_lib.provenance import atomic_write_text, model_hash
from anse_lib.studies.analysis import paired_difference
from anse_lib.studies.footprint import footprint_rows, seed_share
from anse_lib.toyworld import DEFAULT_MODEL_DIR, load_toy_pipeline, toybench
from anse_lib.toyworld.pipeline import DEFAULT_STEPS, GUIDANCE_NAME

TWIN_DIR = DEFAULT_MODEL_DIR.parent / "toy_model_sd_schedule"
SEEDS = [0, 1, 2, 3]
GUIDANCE_VALUES, RESCALE_VALUES, GUIDANCE_PROMPTS = [1.0, 2.0, 3.0, 4.0, 6.0], [0.0, 0.7], 8
LOOKAHEAD = (1, 2, 3, 5, 10)


def choose_guidance(table: pd.DataFrame) -> tuple[float, float]:
    """The sweep rule: the (guidance, guidance_rescale) with the best mean semantic score."""
    means = table.groupby(["guidance", "guidance_rescale"]).semantic.mean()
    return tuple(float(v) for v in means.idxmax())


def heldout_chunk(pipes: dict, seeds):
    def work(chunk):
        prompt_index, prompt = chunk
        rows = []
        for name, pipe in pipes.items():
            video = pipe(prompt, num_inference_steps=DEFAULT_STEPS, num_videos_per_prompt=len(seeds),
                         generator=[torch.Generator().manual_seed(s) for s in seeds]).frames
            rows += [{"model": name, "prompt_index": prompt_index, "prompt": prompt, "seed": s,
                      **toybench.toybench(video[i], prompt).as_dict()} for i, s in enumerate(seeds)]
        return rows
    return work


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--twin", default=str(TWIN_DIR), help="the twin's folder (default data/toy_model_sd_schedule)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--name", default="schedule_twin")
    args = ap.parse_args(argv)
    twin_dir = Path(args.twin)
    shipped, twin = load_toy_pipeline(DEFAULT_MODEL_DIR), load_toy_pipeline(twin_dir)
    command = sweeps.command_line(__file__, argv)
    prompts = heldout_prompts(args.prompts)
    base = dict(shipped_model_hash=model_hash(DEFAULT_MODEL_DIR), steps=DEFAULT_STEPS, seeds=SEEDS,
                prompt_draw="toy_model_quality.heldout_prompts (held-out split of the shipped model)")

    gprompts = prompts[:GUIDANCE_PROMPTS]
    gsettings = [(g, r, p) for g, r in guidance_settings(GUIDANCE_VALUES, RESCALE_VALUES) for p in gprompts]
    gtable = sweeps.run(f"{args.name}_guidance", gsettings, guidance_chunk(twin, SEEDS, DEFAULT_STEPS),
                        {**base, "guidance_values": GUIDANCE_VALUES, "guidance_rescale_values": RESCALE_VALUES,
                         "prompts": len(gprompts)}, twin_dir, command=command)
    print(f"the twin's guidance sweep ({len(gprompts)} held-out prompts x {len(SEEDS)} seeds):")
    print(gtable.groupby(["guidance", "guidance_rescale"])[["semantic", "quality"]].mean().round(3).to_string())
    guidance, rescale = choose_guidance(gtable)
    atomic_write_text(twin_dir / GUIDANCE_NAME, json.dumps({
        "guidance_scale": guidance, "guidance_rescale": rescale,
        "_source": f"best mean semantic of data/sweeps/{args.name}_guidance ({len(gprompts)} held-out prompts x "
                   f"{len(SEEDS)} seeds), the rule that chose the shipped model's defaults",
        "_model_hash": model_hash(twin_dir), "_command": command}, indent=1) + "\n")
    twin.guidance_defaults.update(guidance_scale=guidance, guidance_rescale=rescale)
    print(f"twin defaults: guidance {guidance:g}, guidance_rescale {rescale:g} (written to {twin_dir / GUIDANCE_NAME})")

    pipes = {"shipped": shipped, "twin": twin}
    held = sweeps.run(f"{args.name}_heldout", list(enumerate(prompts)), heldout_chunk(pipes, SEEDS),
                      {**base, "prompts": len(prompts), "twin_guidance": [guidance, rescale],
                       "shipped_guidance": [shipped.guidance_defaults["guidance_scale"],
                                            shipped.guidance_defaults["guidance_rescale"]]},
                      twin_dir, command=command)
    checks = ["semantic", *toybench.SEMANTIC_CHECKS, "quality"]
    print(f"\nheld-out ToyBench, {len(prompts)} prompts x {len(SEEDS)} seeds (same noise), twin minus shipped:")
    print(paired_difference(held[held.model == "twin"], held[held.model == "shipped"], targets=checks)
          .round(3).to_string())

    foot = sweeps.run(f"{args.name}_footprint", ["shipped", "twin"],
                      lambda name: footprint_rows(pipes[name], name, prompts, SEEDS, LOOKAHEAD, DEFAULT_STEPS),
                      {**base, "prompts": len(prompts), "lookahead": list(LOOKAHEAD),
                       "twin_guidance": [guidance, rescale]}, twin_dir, command=command)
    print("\nhow much of the predicted clean video the seed decides (step 0: the starting noise itself):")
    print(seed_share(foot).round(4).to_string())


if __name__ == "__main__":
    main()
