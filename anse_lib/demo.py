"""The end-to-end demo (``make demo``) and the ``select`` command, on the shipped toy model.

For each prompt: M candidate seeds, their BANSA, the selected seed, its video and the
video of a random seed (the first candidate: what a user without ANSE would have got),
both scored with ToyBench; the cost of selection as a ratio to one plain generation.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd
import torch

from . import viz
from .calibrate import calibrated_depth
from .config import AnseConfig
from .probe import attention_layers
from .select import AnseSelectionOutput, call_default, denoiser, generate_with_anse, select_noise
from .toyworld import toybench
from .viz import plot_candidate_scores

DEMO_PROMPTS = (
    "a big red circle moving left",
    "a small blue square moving up on a gray background",
    "a green triangle moving right and a yellow circle staying still",
)


@dataclass
class DemoRow:
    prompt: str
    selection: AnseSelectionOutput
    anse_video: object
    random_video: object
    plain_seconds: float


def resolve_config(pipe, layers=None, out=print, **settings) -> AnseConfig:
    """The command line's config: ``layers`` ``None`` -> the model folder's calibrated depth (or
    every layer), ``"all"`` -> every layer, an int -> that depth, a list -> those indices;
    ``settings``: other :class:`~anse_lib.config.AnseConfig` fields (BANSA's by name too)."""
    if layers == "all":
        out("scoring all layers (--layers all)")
        depth, indices = None, None
    elif layers is None:
        depth, why = calibrated_depth(pipe)
        out(f"scoring {why}")
        indices = None
    elif isinstance(layers, int):
        depth, indices = layers, None
    else:
        depth, indices = None, tuple(layers)
    return AnseConfig().replace(depth=depth, layers=indices, **settings)


def _generate(pipe, prompt, seed, steps, guidance):
    t0 = time.perf_counter()
    video = pipe(prompt, num_inference_steps=steps, guidance_scale=guidance,
                 generator=torch.Generator().manual_seed(seed)).frames[0]
    return video, time.perf_counter() - t0


def run_demo(pipe, prompts=DEMO_PROMPTS, config: AnseConfig | None = None, steps: int | None = None,
             guidance: float | None = None, seed: int = 0, figure_prefix: str = "demo", folder=viz.FIGURES_DIR,
             out=print) -> pd.DataFrame:
    """Run ANSE on ``prompts`` and print / plot the comparison. Returns one row per prompt.

    ``config``: the selection (default: the model folder's calibrated depth, the paper's M, K, p).
    """
    steps = steps or call_default(pipe, "num_inference_steps")
    guidance = guidance or call_default(pipe, "guidance_scale")
    config = resolve_config(pipe, None, out) if config is None else config
    num_candidates, k, drop_prob = config.num_candidates, config.bansa.num_masks, config.bansa.drop_prob
    # warm-up, untimed: the first call builds the compiled scorer and fills caches, which
    # would otherwise be counted as the cost of selecting for the first prompt
    select_noise(pipe, prompts[0], config, seeds=[0])
    _generate(pipe, prompts[0], 0, 1, guidance)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for prompt in prompts:
        result = generate_with_anse(pipe, prompt, config, generator=gen, num_inference_steps=steps,
                                    guidance_scale=guidance)
        sel = result.selection
        random_video, plain = _generate(pipe, prompt, sel.seeds[0], steps, guidance)
        rows.append(DemoRow(prompt, sel, result.frames[0], random_video, plain))

    table = []
    for r in rows:
        anse = toybench.toybench(r.anse_video, r.prompt)
        rand = toybench.toybench(r.random_video, r.prompt)
        table.append({
            "prompt": r.prompt, "winner seed": r.selection.winner_seed, "random seed": r.selection.seeds[0],
            "BANSA winner": r.selection.scores.bansa.min(), "BANSA random": r.selection.scores.bansa.iloc[0],
            "semantic ANSE": anse.semantic, "semantic random": rand.semantic,
            "quality ANSE": anse.quality, "quality random": rand.quality,
            "selection s": r.selection.seconds, "generation s": r.plain_seconds,
        })
    table = pd.DataFrame(table)
    overhead = table["selection s"].sum() / table["generation s"].sum()

    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 5):
        for r in rows:
            out(f"\n{r.prompt!r}: {len(r.selection.scores)} candidates, layers {r.selection.layers}, "
                f"K={k}, drop_prob={drop_prob}")
            out(r.selection.scores[["seed", "bansa", "rank", "winner"]].to_string())
        out("\nToyBench of the ANSE video vs the first (random) candidate's video:")
        out(table.drop(columns=["selection s", "generation s"]).to_string(index=False))
    d, n_layers = len(rows[0].selection.layers), len(attention_layers(denoiser(pipe)))
    bound = num_candidates * d / n_layers / (2 * steps)
    out(f"\nselection cost / plain generation, warm calls ({steps} steps, CFG {guidance}): {overhead:.2f}x "
        f"({table['selection s'].sum():.1f} s vs {table['generation s'].sum():.1f} s over {len(rows)} prompts); "
        f"bound if scoring were free, M x (d/L) / (2 x steps) = {num_candidates} x ({d}/{n_layers}) / (2 x {steps}) "
        f"= {bound:.2f}x")

    fig = viz.film_strips([v for r in rows for v in (r.anse_video, r.random_video)],
                          [f"{lab} ({i + 1})" for i in range(len(rows)) for lab in ("ANSE", "random")],
                          title="ANSE-selected vs random seed, one pair per prompt")
    paths = [viz.save_figure(fig, f"{figure_prefix}_videos", folder)]
    plt.close(fig)
    fig, axes = plt.subplots(1, len(rows), figsize=(3.6 * len(rows), 2.6), squeeze=False)
    for ax, r in zip(axes[0], rows):
        plot_candidate_scores(r.selection, ax=ax, title=r.prompt)
    fig.tight_layout()
    paths.append(viz.save_figure(fig, f"{figure_prefix}_scores", folder))
    plt.close(fig)
    for i, r in enumerate(rows):
        paths.append(viz.save_gif(r.anse_video, f"{figure_prefix}_{i + 1}_anse", folder))
        paths.append(viz.save_gif(r.random_video, f"{figure_prefix}_{i + 1}_random", folder))
    out("figures: " + ", ".join(str(p) for p in paths))
    return table


def select_command(pipe, prompt: str | None, config: AnseConfig, seed: int, out_name: str, steps: int | None,
                   guidance: float | None, out=print, folder=viz.FIGURES_DIR, **pipe_kwargs) -> AnseSelectionOutput:
    """``python -m anse_lib select``: progress bar, table of candidates, winner's GIF, a plot of the scores."""
    kwargs = dict(pipe_kwargs)
    if steps is not None:
        kwargs["num_inference_steps"] = steps
    if guidance is not None:
        kwargs["guidance_scale"] = guidance
    result = generate_with_anse(pipe, prompt, config, generator=torch.Generator().manual_seed(seed), progress=True,
                                **kwargs)
    sel = result.selection
    out(sel.scores.to_string(float_format=lambda x: f"{x:.5f}"))
    out(f"winner: seed {sel.winner_seed} (BANSA {sel.scores.bansa.min():.5f} nats, {sel.seconds:.1f} s to select)")
    gif = viz.save_gif(_as_video(result.frames[0]), f"{out_name}_winner", folder)
    fig, ax = plt.subplots(figsize=(5, 2.8))
    plot_candidate_scores(sel, ax=ax, title=prompt)
    png = viz.save_figure(fig, f"{out_name}_scores", folder)
    plt.close(fig)
    out(f"winner video: {gif}\nscores plot: {png}")
    return sel


def _as_video(frames):
    """One video as ``(F, H, W, 3)`` numpy in [0, 1], from a pipeline's ``np`` or ``pt`` frames."""
    if isinstance(frames, torch.Tensor):
        frames = frames.float().cpu()
        if frames.dim() == 4 and frames.shape[1] in (1, 3) and frames.shape[-1] not in (1, 3):
            frames = frames.permute(0, 2, 3, 1)
        return frames.numpy()
    return frames
