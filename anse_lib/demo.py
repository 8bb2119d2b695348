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

from . import sweeps, viz
from .probe import attention_layers
from .select import SelectionResult, denoiser, generate_with_anse, select_noise
from .toyworld import toybench

DEMO_PROMPTS = (
    "a big red circle moving left",
    "a small blue square moving up on a gray background",
    "a green triangle moving right and a yellow circle staying still",
)


@dataclass
class DemoRow:
    prompt: str
    selection: SelectionResult
    anse_video: object
    random_video: object
    plain_seconds: float


def calibrated_depth(pipe) -> tuple[int | None, str]:
    """The depth to score by default: the cached d* of this toy model, and where it comes from.

    ``(d, description)`` when ``data/sweeps/depth_calibration`` was made for the pipeline's
    own folder (``benchmarks/toy_depth_calibration.py``: the paper's rule on the held-out
    sweep); ``(None, reason)`` (all layers) for any other model or a stale cache.
    """
    folder = getattr(pipe, "name_or_path", None)
    if type(pipe).__name__ != "ToyVideoPipeline" or not folder:
        return None, "all layers (no calibrated depth for this model; see calibrate_depth)"
    try:
        curve, meta = sweeps.load("depth_calibration", folder)
    except (FileNotFoundError, sweeps.StaleResultsError) as err:
        return None, f"all layers (no calibrated depth: {err})"
    cfg = meta["config"]
    hit = curve[curve.r_pooled >= cfg["tau"]].iloc[0]
    d = int(hit.depth)
    return d, (f"layers 1..{d} of {len(curve)}, the calibrated d* (pooled r = {hit.r_pooled:.2f} >= {cfg['tau']} "
               f"over {cfg['prompts']} held-out prompts x {cfg['seeds']} seeds; "
               f"benchmarks/toy_depth_calibration.py)")


def resolve_layers(pipe, layers, out=print):
    """``None`` -> the calibrated depth (or all layers), ``"all"`` -> all layers; anything else as given."""
    if layers == "all":
        out("scoring all layers (--layers all)")
        return None
    if layers is None:
        d, why = calibrated_depth(pipe)
        out(f"scoring {why}")
        return d
    return layers


def _generate(pipe, prompt, seed, steps, guidance):
    t0 = time.perf_counter()
    video = pipe(prompt, num_inference_steps=steps, guidance_scale=guidance,
                 generator=torch.Generator().manual_seed(seed)).frames[0]
    return video, time.perf_counter() - t0


def run_demo(pipe, prompts=DEMO_PROMPTS, num_candidates: int = 10, k: int = 10, drop_prob: float = 0.2,
             layers=None, steps: int | None = None, guidance: float | None = None, seed: int = 0,
             figure_prefix: str = "demo", folder=viz.FIGURES_DIR, out=print) -> pd.DataFrame:
    """Run ANSE on ``prompts`` and print / plot the comparison. Returns one row per prompt."""
    from .toyworld.pipeline import DEFAULT_GUIDANCE, DEFAULT_STEPS

    steps = steps or DEFAULT_STEPS
    guidance = guidance or DEFAULT_GUIDANCE
    layers = resolve_layers(pipe, layers, out)
    # warm-up, untimed: the first call builds the compiled scorer and fills caches, which
    # would otherwise be counted as the cost of selecting for the first prompt
    select_noise(pipe, prompts[0], seeds=[0], k=k, drop_prob=drop_prob, layers=layers)
    _generate(pipe, prompts[0], 0, 1, guidance)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for prompt in prompts:
        (output, sel) = generate_with_anse(
            pipe, prompt, selection=dict(num_candidates=num_candidates, k=k, drop_prob=drop_prob, layers=layers,
                                         generator=gen),
            num_inference_steps=steps, guidance_scale=guidance)
        random_video, plain = _generate(pipe, prompt, sel.seeds[0], steps, guidance)
        rows.append(DemoRow(prompt, sel, output.frames[0], random_video, plain))

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


def plot_candidate_scores(selection: SelectionResult, ax=None, title: str | None = None, errors=None):
    """Every candidate's BANSA as a point (the winner highlighted), on a zoomed y axis.

    Points, not bars: the axis spans only the candidates' range, where bars from a cut-off
    baseline would make small differences look large. ``errors``: optional ``(M,)``
    Monte-Carlo standard deviations (e.g. of each candidate's score over several mask
    seeds), drawn as error bars.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 2.6))
    s = selection.scores
    ax.errorbar(range(len(s)), s.bansa, yerr=errors, fmt="none", ecolor="0.3", capsize=3 if errors is not None else 0)
    ax.scatter(range(len(s)), s.bansa, c=["C2" if w else "C0" for w in s.winner], zorder=3)
    spread = 0 if errors is None else float(max(errors))
    lo, hi = s.bansa.min() - spread, s.bansa.max() + spread
    pad = (hi - lo) * 0.3 + 1e-6
    ax.set(ylim=(lo - pad, hi + pad), xlabel="candidate seed (green: the winner)", ylabel="BANSA, nats (zoomed)",
           xticks=range(len(s)))
    ax.set_xticklabels(s.seed, rotation=90, fontsize=6)
    if title:
        ax.set_title(title if len(title) < 40 else title[:37] + "...", fontsize=8)
    return ax


def select_command(pipe, prompt: str | None, num_candidates: int, k: int, drop_prob: float, layers, batch_size: int,
                   seed: int, out_name: str, steps: int | None, guidance: float | None, out=print,
                   folder=viz.FIGURES_DIR, **pipe_kwargs) -> SelectionResult:
    """``python -m anse_lib select``: progress bar, table of candidates, winner's GIF, bar plot."""
    kwargs = dict(pipe_kwargs)
    layers = resolve_layers(pipe, layers, out)
    if steps is not None:
        kwargs["num_inference_steps"] = steps
    if guidance is not None:
        kwargs["guidance_scale"] = guidance
    output, sel = generate_with_anse(
        pipe, prompt, selection=dict(num_candidates=num_candidates, k=k, drop_prob=drop_prob, layers=layers,
                                     batch_size=batch_size, generator=torch.Generator().manual_seed(seed),
                                     progress=True), **kwargs)
    out(sel.scores.to_string(float_format=lambda x: f"{x:.5f}"))
    out(f"winner: seed {sel.winner_seed} (BANSA {sel.scores.bansa.min():.5f} nats, {sel.seconds:.1f} s to select)")
    gif = viz.save_gif(output.frames[0], f"{out_name}_winner", folder)
    fig, ax = plt.subplots(figsize=(5, 2.8))
    plot_candidate_scores(sel, ax=ax, title=prompt)
    png = viz.save_figure(fig, f"{out_name}_scores", folder)
    plt.close(fig)
    out(f"winner video: {gif}\nscores plot: {png}")
    return sel
