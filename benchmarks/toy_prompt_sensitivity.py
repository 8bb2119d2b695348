"""Which words of the prompt does a toy model use? (a diagnostic; ~1 min per model on 2 cores)

    python benchmarks/toy_prompt_sensitivity.py                       # the shipped model
    python benchmarks/toy_prompt_sensitivity.py --model data/other    # any exported toy model

For one-object prompts (sizes named), renders of the prompt are noised to each timestep
and the model's clean-video prediction is compared with the prediction under the prompt
with one word swapped (colour, size, shape, motion): the RMS change, in pixel units of
[-1, 1], averaged over prompts (``anse_lib.toyworld.sensitivity``). A word the model
ignores scores ~0 at every timestep; then sampling leaves that attribute to the noise.
For scale, the last line is what the best possible model would show at pure noise
(timestep 999 of the zero-terminal-SNR schedule): the RMS difference between the mean
renders of the prompt and of its variant. Then, for the same prompts, how much the model's
pure-noise prediction changes from frame to frame, next to the mean render's (0 for a
model whose noisiest prediction is a still picture).
The prompts are training-split ones (what the model was taught), drawn with a fixed seed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from anse_lib.toyworld import DEFAULT_MODEL_DIR, WorldSplit, load_toy_pipeline
from anse_lib.toyworld.sensitivity import (
    ATTRIBUTES,
    frame_variation_at_pure_noise,
    ideal_sensitivity_at_pure_noise,
    prompt_sensitivity,
)
from anse_lib.toyworld.world import distinct_prompt_texts


def one_object_prompts(split: WorldSplit, n: int, seed: int = 7) -> list[str]:
    """``n`` distinct one-object training prompts with the size named, in a fixed order."""
    return distinct_prompt_texts(n, np.random.default_rng(seed), split, held_out=False, draw=4 * n,
                                 two_object_prob=0.0, size_named_prob=1.0, background_named_prob=0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="exported toy model folder")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--videos", type=int, default=8, help="renders per prompt and timestep")
    args = ap.parse_args()
    pipe = load_toy_pipeline(args.model)
    split = WorldSplit.from_json((Path(args.model) / "split.json").read_text())
    prompts = one_object_prompts(split, args.prompts)
    frames = [prompt_sensitivity(pipe, p, num_videos=args.videos, seed=i).assign(prompt=p)
              for i, p in enumerate(prompts)]
    table = pd.concat(frames).pivot_table(index="timestep", columns="attribute", values="rms", aggfunc="mean")
    c = pipe.transformer.config
    print(f"{args.model}: {c.sample_height}x{c.sample_width}, patch {c.patch_size}, {c.num_layers} layers; "
          f"{len(prompts)} prompts x {args.videos} renders")
    print("RMS change of the x0 prediction when one word is swapped (pixel units in [-1, 1]):")
    print(table.reindex(columns=list(ATTRIBUTES)).sort_index(ascending=False).round(4).to_string())
    ideal = pd.DataFrame([ideal_sensitivity_at_pure_noise(p, resolution=c.sample_height, frames=c.sample_frames, seed=i)
                          for i, p in enumerate(prompts)]).mean()
    print("the best possible model at pure noise (RMS difference of the prompts' mean renders, 512 each):")
    print(ideal.reindex(list(ATTRIBUTES)).round(4).to_frame("rms").T.to_string(index=False))
    variation = pd.DataFrame([frame_variation_at_pure_noise(pipe, p, num_videos=args.videos, seed=i)
                           for i, p in enumerate(prompts)]).mean()
    print("frame-to-frame variation of the x0 prediction at pure noise (RMS deviation of frames from their mean):")
    print(f"model {variation['model']:.4f}, best possible {variation['best']:.4f} (the prompt's mean render)")


if __name__ == "__main__":
    main()
