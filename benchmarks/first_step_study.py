"""The pre-registered first-step study (``data/preregistrations/first_step_study.md``), cached with provenance.

    nice python benchmarks/first_step_study.py                 # everything, both models; resumes
    python benchmarks/first_step_study.py --models shipped --parts depth,eval --prompts 2 --seeds 3 --name quick

For each model (``shipped``: ``data/toy_model``; ``twin``: ``data/toy_model_sd_schedule``) three
cached tables in ``data/sweeps/``, each tied to that model's hash:

1. ``NAME_depth_MODEL``: every layer's first-step BANSA (K = 10, p = 0.2) on the first 100
   training-split prompts x seeds 0-9, label-free; the paper's rule (pooled r >= 0.7) gives the
   model's d* (:func:`anse_lib.calibrate.calibration_from_scores`). The twin's is saved with it
   as ``data/toy_model_sd_schedule/anse_config.json`` (the shipped model's comes from
   ``toy_depth_calibration.py``, on held-out prompts; both rules give d* = 3 there).
2. ``NAME_eval_MODEL``: the 64 fresh held-out prompts (:func:`fresh_heldout_prompts`) x seeds 0-9.
3. ``NAME_train_MODEL``: 128 training-split prompts (:func:`training_prompts`) x seeds 0-15,
   the only rows a learned predictor is fitted on.

Rows of 2 and 3, one per (prompt, seed), from one first-step capture and one full generation at
the model's own defaults (25 steps, its guidance):

- ``layer_XX``: the first-step BANSA of layer ``XX`` (mean over heads and rows; what
  ``select_noise`` scores, so ANSE at depth d is the mean of ``layer_00..layer_{d-1}``);
- ``h_STAT_XX_H``: per layer ``XX`` and head ``H`` the mean over rows of ``bansa``, its
  ``kept_mass_term`` (the other term is their difference), ``entropy`` (nats) and ``collision``
  (:func:`anse_lib.rowstats.row_statistics`, the probe's masks), the features of the step-0
  predictor;
- ``noise_F_C_I``: the starting noise average-pooled to 2 x 2 per frame ``F`` and channel ``C``
  (its lowest frequencies); ``x0sS_F_C``: the sampler's predicted clean video after ``S`` of 25
  steps (1, 2, 3, 5, 10; read from the same generation) averaged per frame and channel, both
  rounded to 3 decimals (secondary features);
- ``final_*``: the final video's ToyBench, every dimension.

Nothing here is chosen by how ANSE or a predictor does: the prompts, seeds, K, p and the
models' defaults were fixed before the run (the pre-registration's commit).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from toy_model_quality import heldout_prompts

from anse_lib import AnseConfig, BansaConfig, sweeps
from anse_lib.calibrate import calibration_from_scores
from anse_lib.capture import capture_attention
from anse_lib.provenance import model_hash
from anse_lib.select import select_noise
from anse_lib.studies.selectors import initial_noise, recorded_steps
from anse_lib.toyworld import DEFAULT_MODEL_DIR, load_toy_pipeline, toybench
from anse_lib.toyworld.pipeline import DEFAULT_STEPS
from anse_lib.toyworld.world import WorldSplit, distinct_prompt_texts

MODELS = {"shipped": DEFAULT_MODEL_DIR, "twin": DEFAULT_MODEL_DIR.parent / "toy_model_sd_schedule"}
PARTS = ("depth", "eval", "train")
K, DROP_PROB, TAU = 10, 0.2, 0.7
#: per-head features kept (``spread_term`` = ``kept_mass_term`` - ``bansa`` is not stored)
STATS = ("bansa", "kept_mass_term", "entropy", "collision")
X0_STEPS = (1, 2, 3, 5, 10)
#: (prompts, seeds) of each part, as pre-registered
SIZES = {"depth": (100, 10), "eval": (64, 10), "train": (128, 16)}


def _split() -> WorldSplit:
    return WorldSplit.from_json((DEFAULT_MODEL_DIR / "split.json").read_text())


def fresh_heldout_prompts(n: int = 64) -> list[str]:
    """``n`` held-out texts from ``default_rng(2027)`` (batches of ``distinct_prompt_texts(n)``),
    leaving out every text of the earlier draw (``heldout_prompts(64)``, ``default_rng(1234)``)."""
    old, rng, texts = set(heldout_prompts(64)), np.random.default_rng(2027), []
    while len(texts) < n:
        for text in distinct_prompt_texts(n, rng, _split(), held_out=True):
            if text not in old and text not in texts and len(texts) < n:
                texts.append(text)
    return texts


def training_prompts(n: int = 128) -> list[str]:
    """``n`` distinct training-split texts from ``default_rng(2028)``; the depth uses the first 100."""
    return distinct_prompt_texts(n, np.random.default_rng(2028), _split(), held_out=False)


def generate_recording(pipe, prompt: str, seeds: list[int], steps=X0_STEPS):
    """Final videos ``(S, F, H, W, 3)`` in [0, 1] at the pipeline's defaults, and the sampler's
    ``pred_original_sample`` after each of ``steps`` model calls (``{s: (S, F, C, H, W)}``)."""
    with recorded_steps(pipe.scheduler) as seen:
        frames = pipe(prompt, num_inference_steps=DEFAULT_STEPS, num_videos_per_prompt=len(seeds),
                      generator=[torch.Generator().manual_seed(int(s)) for s in seeds]).frames
    return frames, {s: seen[s - 1][0].float() for s in steps}


def study_chunk(pipe, seeds: list[int]):
    def work(chunk):
        prompt_index, prompt = chunk
        rows = [{"prompt_index": prompt_index, "prompt": prompt, "seed": int(s)} for s in seeds]
        for row in rows:
            cap = capture_attention(pipe, prompt, row["seed"], step=0, k=K, drop_prob=DROP_PROB)
            for layer in cap.layers:
                stats = cap.row_statistics(layer)
                row[f"layer_{layer:02d}"] = float(stats["bansa"].mean())
                for name in STATS:
                    for head, value in enumerate(stats[name].mean(1).tolist()):
                        row[f"h_{name}_{layer:02d}_{head}"] = value
        noise = torch.nn.functional.avg_pool2d(initial_noise(pipe, seeds).flatten(0, 1), 8)  # (S*F, C, 2, 2)
        noise = noise.reshape(len(seeds), -1).numpy().round(3)
        frames, x0 = generate_recording(pipe, prompt, seeds)
        for i, row in enumerate(rows):
            row.update({f"noise_{j}": v for j, v in enumerate(noise[i].tolist())})
            for s, pred in x0.items():
                means = pred[i].mean((-1, -2)).flatten().numpy().round(3)  # (F * C,)
                row.update({f"x0s{s}_{j}": v for j, v in enumerate(means.tolist())})
            row.update({f"final_{k}": v for k, v in toybench.toybench(frames[i], prompt).as_dict().items()})
        return rows
    return work


def depth_chunk(pipe, seeds: list[int]):
    config = AnseConfig(bansa=BansaConfig(num_masks=K, drop_prob=DROP_PROB))

    def work(chunk):
        prompt_index, prompt = chunk
        scores = select_noise(pipe, prompt, config, seeds=seeds).scores
        return scores.assign(prompt_index=prompt_index, prompt=prompt).to_dict("records")
    return work


def save_depth(folder, cal, table, command) -> None:
    """The twin's d* with the model (``anse_config.json``), as ``toy_depth_calibration`` does for the
    shipped model: ``demo --model``, ``select`` and ``study`` then score layers 1..d* on it."""
    hit = cal.curve[cal.curve.r_pooled >= TAU].iloc[0]
    source = (f"the calibrated d* (pooled r = {hit.r_pooled:.2f} >= {TAU} over {table.prompt_index.nunique()} "
              f"training-split prompts x {table.seed.nunique()} seeds; benchmarks/first_step_study.py)")
    path = AnseConfig(depth=cal.d_star, bansa=BansaConfig(num_masks=K, drop_prob=DROP_PROB)).save_pretrained(
        folder, source=source, model_hash=model_hash(folder), command=command)
    print(f"wrote {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="shipped,twin", help=f"comma-separated, of {sorted(MODELS)}")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {PARTS}, run in this order")
    ap.add_argument("--prompts", type=int, help="fewer prompts per part (a quick run; give it another --name)")
    ap.add_argument("--seeds", type=int, help="fewer seeds per part (a quick run)")
    ap.add_argument("--name", default="first_step")
    ap.add_argument("--folder", default=str(sweeps.SWEEPS_DIR), help="where the tables are cached")
    args = ap.parse_args(argv)
    models, parts = args.models.split(","), args.parts.split(",")
    for bad in [m for m in models if m not in MODELS] + [p for p in parts if p not in PARTS]:
        ap.error(f"unknown model or part {bad!r}; models: {sorted(MODELS)}, parts: {list(PARTS)}")
    command = sweeps.command_line(__file__, argv)
    for part in [p for p in PARTS if p in parts]:
        n_prompts, n_seeds = SIZES[part]
        n_prompts, seeds = args.prompts or n_prompts, list(range(args.seeds or n_seeds))
        prompts = (fresh_heldout_prompts() if part == "eval" else training_prompts())[:n_prompts]
        for model in models:
            pipe = load_toy_pipeline(MODELS[model])
            pipe.set_progress_bar_config(disable=True)
            config = dict(part=part, prompts=n_prompts, seeds=seeds, split="held-out (fresh)" if part == "eval"
                          else "training", steps=DEFAULT_STEPS, **pipe.guidance_defaults, k=K, drop_prob=DROP_PROB,
                          x0_steps=list(X0_STEPS), preregistration="data/preregistrations/first_step_study.md",
                          threads=torch.get_num_threads())
            work = depth_chunk(pipe, seeds) if part == "depth" else study_chunk(pipe, seeds)
            table = sweeps.run(f"{args.name}_{part}_{model}", list(enumerate(prompts)), work, config, MODELS[model],
                               command=command, folder=args.folder)
            print(f"{model} {part}: {len(table)} rows ({table.prompt_index.nunique()} prompts x {len(seeds)} seeds)")
            if part == "depth":
                cal = calibration_from_scores(table, TAU)
                print(cal.curve.round(3).to_string(index=False))
                print(f"{model}: d* = {cal.d_star} (pooled r >= {TAU})")
                if model == "twin" and args.name == "first_step" and args.prompts is None and args.seeds is None:
                    save_depth(MODELS[model], cal, table, command)


if __name__ == "__main__":
    main()
