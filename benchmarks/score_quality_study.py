"""Per (prompt, seed) scores for the score-versus-quality study (issue 18), cached with provenance.

    python benchmarks/score_quality_study.py                 # 64 held-out prompts x 16 seeds; resumes
    python benchmarks/score_quality_study.py --prompts 2 --seeds 3 --name score_quality_quick

The prompts and seeds are those of ``data/sweeps/heldout_quality`` (the same held-out draw,
seeds 0..15), whose table holds every final video's ToyBench; this sweep adds, per
(prompt, seed), what a selector could see before generating:

- from the first step (one capture per seed, ``anse_lib.studies.selectors.attention_scores``):
  per layer BANSA over all / video / text rows, BANSA at a second K/p setting, mean row
  entropy (the entropy-only baseline), collision and the kept-mass term;
- BANSA (all rows, per layer) at later steps ``--later-steps`` (0-based; 1, 2, 4, 9 are the
  2nd, 3rd, 5th and 10th of 25);
- the look-ahead control: ToyBench of the model's predicted clean video after s steps,
  ``--lookahead`` (1, 2, 3, 5, 10 model calls).

- BANSA (D), the paper's dropout ablation: K first-step passes with the masked attention fed
  back (``dropout_bansa``), per layer;
- inversion stability (Qi et al. 2024): cosine of the seed's noise and the DDIM inversion
  of its own video (``inversion_stability``);
- the final video's ToyBench, every dimension (``final_*``), from the same generation the
  inversion starts from: the oracle's and random's column.

Cost of each selector, in transformer passes per candidate (counted in notebook 05):
first-step scores 1 (less with early stopping), a score at 0-based step s 2s + 1 (guided
steps before it), look-ahead s steps 2s (CFG), BANSA (D) K, inversion 2 x 25 + 25 = 75,
best-of-N (the oracle) 50.
"""
from __future__ import annotations

import argparse

import torch
from toy_model_quality import heldout_prompts

from anse_lib import sweeps
from anse_lib.studies.selectors import (
    attention_scores,
    dropout_bansa,
    inversion_stability,
    later_step_bansa,
    lookahead_x0,
)
from anse_lib.toyworld import DEFAULT_MODEL_DIR, load_toy_pipeline, toybench
from anse_lib.toyworld.pipeline import DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_RESCALE, DEFAULT_STEPS


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t]


def study_chunk(pipe, seeds, k, drop_prob, other, later_steps, lookahead):
    def work(chunk):
        prompt_index, prompt = chunk
        table = attention_scores(pipe, prompt, seeds, k=k, drop_prob=drop_prob, other=other)
        later = later_step_bansa(pipe, prompt, seeds, steps=later_steps, k=k, drop_prob=drop_prob)
        for col in later.columns[1:]:
            table[col] = later[col].to_numpy()
        x0 = lookahead_x0(pipe, prompt, seeds, steps=lookahead, num_inference_steps=DEFAULT_STEPS)
        for s, videos in x0.items():
            scored = [toybench.toybench(v, prompt) for v in videos]
            table[f"lookahead{s}_semantic"] = [t.semantic for t in scored]
            table[f"lookahead{s}_quality"] = [t.quality for t in scored]
        dropped = dropout_bansa(pipe, prompt, seeds, k=k, drop_prob=drop_prob)
        for col in dropped.columns[1:]:
            table[col] = dropped[col].to_numpy()
        stability, videos = inversion_stability(pipe, prompt, seeds, num_inference_steps=DEFAULT_STEPS)
        table["inversion_cosine"] = stability["inversion_cosine"].to_numpy()
        final = toybench.toybench_table(list(videos), [prompt] * len(seeds))
        for col in final.columns[1:]:
            table[f"final_{col}"] = final[col].to_numpy()
        table.insert(0, "prompt", prompt)
        table.insert(0, "prompt_index", prompt_index)
        return table.to_dict("records")
    return work


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--name", default="score_quality_study")
    ap.add_argument("--later-steps", type=_ints, default=[1, 2, 4, 9])
    ap.add_argument("--lookahead", type=_ints, default=[1, 2, 3, 5, 10])
    ap.add_argument("--folder", default=str(sweeps.SWEEPS_DIR), help="where the table is cached")
    args = ap.parse_args(argv)
    pipe = load_toy_pipeline()
    pipe.set_progress_bar_config(disable=True)
    seeds = list(range(args.seeds))
    config = dict(prompts=args.prompts, seeds=seeds, steps=DEFAULT_STEPS, guidance=DEFAULT_GUIDANCE,
                  guidance_rescale=DEFAULT_GUIDANCE_RESCALE, k=10, drop_prob=0.2, other=[20, 0.5],
                  later_steps=args.later_steps, lookahead=args.lookahead, threads=torch.get_num_threads())
    command = sweeps.command_line(__file__, argv)
    table = sweeps.run(args.name, list(enumerate(heldout_prompts(args.prompts))),
                       study_chunk(pipe, seeds, config["k"], config["drop_prob"], tuple(config["other"]),
                                   args.later_steps, args.lookahead),
                       config, DEFAULT_MODEL_DIR, command=command, folder=args.folder)
    print(f"{len(table)} rows ({table.prompt_index.nunique()} prompts x {len(seeds)} seeds), {table.shape[1]} columns")


if __name__ == "__main__":
    main()
