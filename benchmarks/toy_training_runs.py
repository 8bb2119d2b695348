"""What the training runs of the toy model bought: ToyBench and word sensitivity per exported model.

    python benchmarks/toy_training_runs.py --model first=RUN_3500 --model cool=RUN_6500 --model mid=data/toy_model
    python benchmarks/toy_training_runs.py --model ... --prompts 8 --seeds 2 --name quick   # a smaller run

Each ``--model NAME=DIR`` (an exported toy model folder) generates the first ``--prompts``
held-out prompts of the benchmark's draw (``toy_model_quality.heldout_prompts``) from seeds
``0..--seeds-1`` at the pipeline's defaults, so every model sees the same prompts and noise
and the rows pair. The config records each model's hash and training command (from its
manifest). Each row carries the model's name, hash and trained steps; its mean
logged training loss over the last 500 steps (under the run's own timestep weighting, so not
comparable across recipes); its loss on fixed data per timestep band
(``train.evaluation_loss``, comparable); and the ToyBench scores of one video.

A second table, NAME_words, holds for each model how far swapping one word (colour, size,
shape, motion) moves the clean-video prediction (``toyworld.sensitivity``; 8 one-object
training prompts x 4 renders, at timesteps 999 and 500; one row per prompt, timestep and
swapped word). The training curve of the last ``--model`` (whose lineage, through
``--init-from``, contains the earlier ones) is copied to NAME_curve.csv.

Judged on ToyBench and loss only (issue 19): this benchmark computes no attention score.
The shipped model must be one of the models; the tables are tied to its hash, so they are
re-made whenever the shipped model changes.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch
from toy_model_quality import SUCCESS, generate, heldout_prompts
from toy_prompt_sensitivity import one_object_prompts

from anse_lib import sweeps
from anse_lib.provenance import MANIFEST_NAME, model_hash, read_manifest
from anse_lib.toyworld import DEFAULT_MODEL_DIR, WorldSplit, load_toy_pipeline, toybench
from anse_lib.toyworld.pipeline import DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_RESCALE, DEFAULT_STEPS
from anse_lib.toyworld.sensitivity import prompt_sensitivity
from anse_lib.toyworld.train import CURVE_NAME, evaluation_loss

#: Timesteps at which word sensitivity is measured (pure noise, and half way).
WORD_TIMESTEPS = (999, 500)
#: Training steps over which the final loss is averaged.
LOSS_WINDOW = 500


def parse_models(specs: list[str]) -> dict[str, Path]:
    """``["name=DIR", ...]`` as an ordered ``{name: Path}``; every DIR must be an exported model folder."""
    models = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"--model must be NAME=DIR, got {spec!r}")
        if name in models:
            raise ValueError(f"model name {name!r} given twice")
        path = Path(folder)
        if not all((path / f).exists() for f in (CURVE_NAME, MANIFEST_NAME, "split.json")):
            raise ValueError(f"{folder!r} is not an exported toy model folder (it needs {CURVE_NAME}, "
                             f"{MANIFEST_NAME} and split.json; a run folder is exported with "
                             "python -m anse_lib.toyworld.train --out RUN --export-only --export DIR)")
        models[name] = path
    return models


def check_comparable(models: dict[str, Path], shipped: Path = DEFAULT_MODEL_DIR):
    """Refuse models that would not see the same data as the shipped one, or that are not one lineage.

    Same held-out split and frame size as the shipped model (so the held-out prompts, the
    fixed evaluation data and the word prompts are the same for all), and the last model's
    training curve starts with every other model's (it was trained on from them).
    """
    def frame(folder):
        return {k: read_manifest(folder)["config"]["transformer"][k] for k in ("sample_height", "sample_frames")}

    last_name, last = list(models.items())[-1]
    lineage = pd.read_csv(last / CURVE_NAME)
    for name, folder in models.items():
        if (folder / "split.json").read_text() != (shipped / "split.json").read_text():
            raise ValueError(f"model {name!r} ({folder}) was trained on another held-out split than {shipped}")
        if frame(folder) != frame(shipped):
            raise ValueError(f"model {name!r} makes {frame(folder)} videos, the shipped one {frame(shipped)}")
        own = pd.read_csv(folder / CURVE_NAME)
        if not lineage.iloc[: len(own)].reset_index(drop=True).equals(own):
            raise ValueError(f"the last --model ({last_name!r}) must descend from every other, but its training "
                             f"curve does not start with {name!r}'s")


def final_loss(folder: Path) -> float:
    """Mean logged training loss over the model's last :data:`LOSS_WINDOW` steps."""
    curve = pd.read_csv(folder / CURVE_NAME)
    return float(curve[curve.step > curve.step.max() - LOSS_WINDOW].loss.mean())


def model_info(name: str, folder: Path, pipe) -> dict:
    """Name, hash, trained steps, logged final loss and the fixed-data loss per timestep band."""
    manifest = read_manifest(folder)
    split = WorldSplit.from_json((folder / "split.json").read_text())
    bands = {f"eval_loss {k}": v for k, v in evaluation_loss(pipe, split).items()}
    return {"model": name, "model_hash": model_hash(folder), "trained_steps": int(manifest["trained_steps"]),
            "final_loss": final_loss(folder), **bands}


class Models:
    """The models, each loaded once and described once (``model_info``) when first needed.

    A folder whose hash is no longer the one recorded when the run started (re-exported
    meanwhile) is an error, so no row carries another model's scores.
    """

    def __init__(self, folders: dict[str, Path]):
        self.folders = folders
        self.hashes = {name: model_hash(folder) for name, folder in folders.items()}
        self.pipes, self.infos = {}, {}

    def get(self, name: str):
        if name not in self.pipes:
            pipe = load_toy_pipeline(self.folders[name], verify=True)
            pipe.set_progress_bar_config(disable=True)
            info = model_info(name, self.folders[name], pipe)
            if info["model_hash"] != self.hashes[name]:
                raise RuntimeError(f"{self.folders[name]} changed during the run (model hash "
                                   f"{info['model_hash'][:12]}, was {self.hashes[name][:12]})")
            self.pipes[name], self.infos[name] = pipe, info
        return self.pipes[name], self.infos[name]


def quality_chunk(models: Models, seeds: list[int]):
    def work(chunk):
        name, prompt_index, prompt = chunk
        pipe, info = models.get(name)
        video = generate(pipe, prompt, seeds, DEFAULT_STEPS, DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_RESCALE)
        return [{**info, "prompt_index": prompt_index, "prompt": prompt, "seed": s,
                 **toybench.toybench(video[i], prompt).as_dict()} for i, s in enumerate(seeds)]
    return work


def words_chunk(models: Models, prompts: list[str], videos: int):
    def work(name):
        pipe, info = models.get(name)
        table = pd.concat([prompt_sensitivity(pipe, p, num_videos=videos, seed=i, timesteps=WORD_TIMESTEPS)
                           .assign(prompt=p) for i, p in enumerate(prompts)])
        return [{**info, **row} for row in table.to_dict("records")]
    return work


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, metavar="NAME=DIR",
                    help="an exported toy model (repeat; the shipped one must be among them)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--word-prompts", type=int, default=8)
    ap.add_argument("--word-videos", type=int, default=4)
    ap.add_argument("--name", default="training_runs")
    args = ap.parse_args(argv)
    if not 1 <= args.prompts <= 64:
        ap.exit(2, f"error: --prompts must be in 1..64 (the benchmark's held-out draw), got {args.prompts}\n")
    try:  # a bad --model is one error line (exit 2)
        folders = parse_models(args.model)
        check_comparable(folders)
    except ValueError as e:
        ap.exit(2, f"error: {e}\n")
    models = Models(folders)
    hashes = models.hashes
    if model_hash(DEFAULT_MODEL_DIR) not in hashes.values():
        ap.exit(2, f"error: none of the models is the shipped one ({DEFAULT_MODEL_DIR}); "
                   f"add shipped={DEFAULT_MODEL_DIR}\n")
    torch.set_num_threads(2)
    command = sweeps.command_line(__file__, argv)
    seeds = list(range(args.seeds))
    prompts = heldout_prompts(64)[: args.prompts]
    commands = {name: read_manifest(folder)["command"] for name, folder in folders.items()}  # how each was trained
    config = dict(models=hashes, commands=commands, prompts=args.prompts, seeds=seeds, steps=DEFAULT_STEPS,
                  guidance=DEFAULT_GUIDANCE, guidance_rescale=DEFAULT_GUIDANCE_RESCALE)
    table = sweeps.run(args.name, [(m, i, p) for m in folders for i, p in enumerate(prompts)],
                       quality_chunk(models, seeds), config, DEFAULT_MODEL_DIR, command=command)
    split = WorldSplit.from_json((DEFAULT_MODEL_DIR / "split.json").read_text())
    word_prompts = one_object_prompts(split, args.word_prompts)
    words = sweeps.run(f"{args.name}_words", list(folders), words_chunk(models, word_prompts, args.word_videos),
                       dict(models=hashes, prompts=word_prompts, videos=args.word_videos,
                            timesteps=list(WORD_TIMESTEPS)),
                       DEFAULT_MODEL_DIR, command=command)
    last_name, last = list(folders.items())[-1]
    sweeps.save(f"{args.name}_curve", pd.read_csv(last / CURVE_NAME), {"models": hashes}, last, command,
                float_format=None, copied_from=last_name)  # an exact copy of the last model's curve

    checks = ["semantic", *toybench.SEMANTIC_CHECKS, "quality", "subject_consistency"]
    losses = [c for c in table.columns if c.startswith("eval_loss")]
    summary = table.groupby("model", sort=False).agg(
        trained_steps=("trained_steps", "first"), final_loss=("final_loss", "first"),
        **{c.removeprefix("eval_loss "): (c, "first") for c in losses},
        **{c: (c, "mean") for c in checks}, all_right=("semantic", lambda s: (s >= SUCCESS).mean()))
    print(f"{len(prompts)} held-out prompts x {len(seeds)} seeds per model:")
    print(summary.round(3).to_string())
    print("\nRMS change of the clean-video prediction when one word is swapped:")
    print(words.pivot_table(index=["model", "timestep"], columns="attribute", values="rms", aggfunc="mean",
                            sort=False).round(4).to_string())


if __name__ == "__main__":
    main()
