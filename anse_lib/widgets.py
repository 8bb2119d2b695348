"""The workbook's widgets (ipywidgets): the attention explorer and the mask playground.

:class:`AttentionExplorer` (notebook 04) captures the attention of a prompt and seed at a
denoising step (:func:`~anse_lib.capture.capture_attention`, cached per prompt, seed and
step) and draws, for the chosen layer, head and query token: the row over the video's
frames, one of its K masked samples, the mean of the K samples, and the per-token BANSA map
of that head, with the row's statistics beside it. Changing the layer, head, query, K, p or
mask seed redraws from the cached capture; changing the prompt, seed or step captures again
(one partial forward pass at step 0, ``step`` denoising steps later). A button generates
the video.

:class:`MaskPlayground` (notebooks 02-03) lets you feel the Bernoulli-mask score: sliders set
one synthetic row's temperature (sharp to diffuse), K, the drop probability p and the mask
seed; the picture shows the row, the mean of its K samples, every sample (white: dropped
keys), and the row's statistics from :func:`~anse_lib.rowstats.row_statistics`.

In a notebook, each widget's output carries the live widget and a PNG of its current state,
so a static renderer (GitHub, nbconvert) shows the picture instead of nothing.
"""
from __future__ import annotations

import base64
import html
import inspect
import io
import math
import time

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from .bansa import _masked_sample, keep_masks
from .capture import capture_attention
from .rowstats import row_statistics
from .select import denoiser
from .studies.attention_views import WEIGHT_LABEL, key_mass, masked_samples
from .studies.synthetic import attention_map
from .viz import gif_bytes


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of a matplotlib figure that has an Agg canvas."""
    buf = io.BytesIO()
    fig.canvas.print_png(buf)
    return buf.getvalue()


def widget_bundle(box: widgets.Widget, png: bytes, text: str) -> dict:
    """A display bundle: the live widget, plus a PNG and text for static renderers (GitHub, nbconvert)."""
    bundle = box._repr_mimebundle_()
    data = dict(bundle[0] if isinstance(bundle, tuple) else bundle)
    data["image/png"] = base64.b64encode(png).decode()
    data["text/plain"] = text
    return data


def stats_table_html(rows: list[tuple[str, str]]) -> str:
    """A small two-column HTML table of ``(label, value)`` rows, values in bold."""
    body = "".join(f"<tr><td style='padding-right:8px'>{a}</td><td><b>{b}</b></td></tr>" for a, b in rows)
    return f"<table style='font-size:12px'>{body}</table>"


def error_html(e: Exception) -> str:
    return f'<span style="color:#b00020">error: {html.escape(str(e))}</span>'


def _toy_parser(pipe):
    if type(pipe).__name__ == "ToyVideoPipeline":
        from .toyworld.world import parse_prompt

        return parse_prompt
    return None


class AttentionExplorer:
    """Interactive view of one query row's attention, its masked samples and per-token BANSA.

    Args:
        pipe: a pipeline with joint text+video attention (the toy pipeline, CogVideoX).
        prompt: the starting prompt.
        seed: the candidate's seed.
        step: denoising step, 0-based (0: the first, where ANSE scores).
        layer, head: the attention layer and head shown.
        query: the query token's sequence index (default: the first video patch).
        k, drop_prob, mask_seed: the masks (the paper's K = 10, p = 0.2).
        parse: checks a typed prompt, raising ``ValueError`` with a message for a bad one
            (default: the toy world's grammar for the toy pipeline, else none).

    Examples:
        >>> from anse_lib.widgets import AttentionExplorer
        >>> from anse_lib.toyworld import load_toy_pipeline
        >>> ex = AttentionExplorer(load_toy_pipeline(), "a big red circle moving left", seed=0)
        >>> before = ex.image.value
        >>> ex.controls["layer"].value = 2  # redraws
        >>> ex.image.value != before, ex.error.value
        (True, '')
    """

    def __init__(self, pipe, prompt: str, seed: int = 0, step: int = 0, layer: int = 0, head: int = 0,
                 query: int | None = None, k: int = 10, drop_prob: float = 0.2, mask_seed: int = 0, parse=None):
        self.pipe = pipe
        self.parse = parse if parse is not None else _toy_parser(pipe)
        self._captures: dict = {}
        self.last_redraw_seconds = float("nan")
        model = denoiser(pipe)
        num_layers = len(model.transformer_blocks)
        heads = int(model.config.num_attention_heads)
        steps = int(inspect.signature(pipe.__call__).parameters["num_inference_steps"].default)  # step slider range
        cap = self._capture(prompt, seed, step)
        style = {"description_width": "90px"}
        layout = widgets.Layout(width="310px")
        c = self.controls = {
            "prompt": widgets.Text(value=prompt, description="prompt", continuous_update=False, style=style,
                                   layout=widgets.Layout(width="560px")),
            "seed": widgets.BoundedIntText(value=seed, min=0, max=2**31 - 2, description="seed", style=style,
                                           layout=layout),
            "step": widgets.IntSlider(value=step, min=0, max=steps - 1, description="step (0=first)",
                                      continuous_update=False, style=style, layout=layout),
            "layer": widgets.IntSlider(value=layer, min=0, max=num_layers - 1, description="layer", style=style,
                                       layout=layout),
            "head": widgets.IntSlider(value=head, min=0, max=heads - 1, description="head", style=style,
                                      layout=layout),
            "query": widgets.IntSlider(value=cap.text_len if query is None else query, min=0,
                                       max=cap.num_tokens - 1, description="query token", continuous_update=False,
                                       style=style, layout=layout),
            "k": widgets.IntSlider(value=k, min=2, max=40, description="K masks", continuous_update=False,
                                   style=style, layout=layout),
            "drop_prob": widgets.FloatSlider(value=drop_prob, min=0.05, max=0.95, step=0.05, description="drop p",
                                             continuous_update=False, style=style, layout=layout),
            "mask_seed": widgets.BoundedIntText(value=mask_seed, min=0, max=2**31 - 2, description="mask seed",
                                                style=style, layout=layout),
        }
        self.query_label = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.stats = widgets.HTML(layout=widgets.Layout(min_width="360px"))
        self.error = widgets.HTML(value="")
        self.button = widgets.Button(description="generate the video", icon="play",
                                     layout=widgets.Layout(width="200px"))
        self.video = widgets.Image(format="gif", layout=widgets.Layout(display="none"))  # shown once generated
        self.button.on_click(self._generate)
        for w in c.values():
            w.observe(self._changed, names="value")
        column = widgets.Layout(width="330px")
        left = widgets.VBox([c["seed"], c["step"], c["layer"], c["head"], c["query"], self.query_label], layout=column)
        right = widgets.VBox([c["k"], c["drop_prob"], c["mask_seed"], self.button], layout=column)
        self.box = widgets.VBox([c["prompt"], self.error, widgets.HBox([left, right, self.stats]), self.image,
                                 self.video])
        self.box.add_class("anse-explorer")
        self.image.add_class("anse-explorer-picture")
        self._build_figure(cap)
        self.redraw()

    # --- data -------------------------------------------------------------------------------
    def _capture(self, prompt, seed, step):
        key = (prompt, int(seed), int(step))
        if key not in self._captures:
            self._captures[key] = capture_attention(self.pipe, prompt, int(seed), step=int(step))
        return self._captures[key]

    @property
    def capture(self):
        c = self.controls
        return self._capture(c["prompt"].value, c["seed"].value, c["step"].value)

    # --- drawing -----------------------------------------------------------------------------
    def _build_figure(self, cap):
        nf = cap.grid[0]
        self.fig = Figure(figsize=(1.05 * nf + 2.6, 5.0), dpi=72)
        FigureCanvasAgg(self.fig)
        gs = self.fig.add_gridspec(4, nf + 3, width_ratios=[1] * nf + [0.35, 0.75, 0.18], wspace=0.08, hspace=0.28)
        names = ["the row", "mask 1 (white:\ndropped)", "mean of K", "BANSA map"]
        blank = np.zeros(cap.grid[1:])
        self.ims, self.word_ims, self.marks = [], [], []
        for r, name in enumerate(names):
            row = []
            for f in range(nf):
                ax = self.fig.add_subplot(gs[r, f])
                ax.set_xticks([])
                ax.set_yticks([])
                row.append(ax.imshow(blank, cmap="viridis" if r == 3 else "magma"))
                if r == 0:
                    ax.set_title(f"frame {f}", fontsize=8)
                self.marks.append(ax.plot([], [], marker="s", ms=7, mfc="none", mec="cyan", mew=1.5)[0])
            row[0].axes.set_ylabel(name, fontsize=8)
            self.ims.append(row)
            wax = self.fig.add_subplot(gs[r, nf])
            self.word_ims.append(wax.imshow(np.zeros((len(cap.words), 1)), cmap="viridis" if r == 3 else "magma",
                                            aspect="auto"))
            wax.set_xticks([])
            wax.yaxis.tick_right()
            if r == 0:
                wax.set_title("words", fontsize=8)
        cax_w = self.fig.add_subplot(gs[0:3, nf + 2])
        cax_b = self.fig.add_subplot(gs[3, nf + 2])
        self.cbar_w = self.fig.colorbar(self.ims[0][0], cax=cax_w)
        self.cbar_w.set_label(WEIGHT_LABEL, fontsize=7)
        self.cbar_b = self.fig.colorbar(self.ims[3][0], cax=cax_b)
        self.cbar_b.set_label("BANSA (nats)", fontsize=7)
        self.title = self.fig.suptitle("", fontsize=9)

    def redraw(self):
        """Redraw the picture and statistics from the current controls (captures if needed)."""
        t0 = time.perf_counter()
        c = {name: w.value for name, w in self.controls.items()}
        try:
            if self.parse is not None:
                self.parse(c["prompt"])
            cap = self.capture
            if tuple(self.ims[0][0].get_array().shape) != tuple(cap.grid[1:]):
                raise ValueError("the video's geometry changed; make a new explorer")
            layer, head, q = c["layer"], c["head"], c["query"]
            n = cap.num_tokens
            row = cap.probs(layer, head, [q])[0]
            samples = masked_samples(cap, layer, head, q, c["k"], c["drop_prob"], c["mask_seed"])
            stats = cap.row_statistics(layer, c["k"], c["drop_prob"], c["mask_seed"])
            weights = [row * n, samples[0] * n, samples.mean(0) * n]
            v = torch.cat(weights).clamp_min(1e-6).numpy()
            lo, hi = np.percentile(v, [1, 99.9])
            wnorm = LogNorm(vmin=max(lo, 1e-3), vmax=max(hi, lo * 1.01))
            bmap = stats["bansa"][head]
            bv = bmap[cap.text_len:].numpy()
            bnorm = Normalize(vmin=float(bv.min()), vmax=float(bv.max()))
            for r, values in enumerate([*weights, bmap]):
                norm = bnorm if r == 3 else wnorm
                maps = cap.video_map(values).numpy()
                for f, im in enumerate(self.ims[r]):
                    im.set_data(maps[f])
                    im.set_norm(norm)
                words = self.word_ims[r]
                words.set_data(cap.text_values(values).numpy()[:, None])
                words.set_norm(norm)
                words.set_extent((-0.5, 0.5, len(cap.words) - 0.5, -0.5))
                words.axes.set_ylim(len(cap.words) - 0.5, -0.5)
                words.axes.set_yticks(range(len(cap.words)), cap.words, fontsize=7)
            for mark in self.marks:
                mark.set_data([], [])
            if q >= cap.text_len:
                i = q - cap.text_len
                _, h, w = cap.grid
                frame = i // (h * w)
                for r in range(4):
                    self.marks[r * cap.grid[0] + frame].set_data([i % w], [(i // w) % h])
            self.cbar_w.update_normal(self.ims[0][0])
            self.cbar_b.update_normal(self.ims[3][0])
            self.title.set_text(f"{cap.prompt!r}, seed {cap.seed}: layer {layer}, head {head}, step {cap.step} "
                                f"(t = {cap.timestep:.0f}); query: {cap.token_label(q)}")
            self.image.value = figure_png(self.fig)
            self.query_label.value = f"<small>query {q}: <b>{html.escape(cap.token_label(q))}</b></small>"
            self.stats.value = self._stats_html(cap, stats, layer, head, q, c)
            self.error.value = ""
        except (ValueError, RuntimeError) as e:
            self.error.value = error_html(e)
        self.last_redraw_seconds = time.perf_counter() - t0

    @staticmethod
    def _stats_html(cap, stats, layer, head, q, c) -> str:
        n = cap.num_tokens
        s = {name: float(v[head, q]) for name, v in stats.items()}
        layer_mean = float(stats["bansa"].mean())
        mass = key_mass(cap, layer, head, q)
        rows = [
            ("BANSA of this row", f"{s['bansa']:.4f} nats"),
            ("= kept-mass term E[-log Z]", f"{s['kept_mass_term']:.4f}"),
            ("&minus; spread term KL(q&#772;||a)", f"{s['spread_term']:.4f}"),
            ("row entropy H", f"{s['entropy']:.3f} nats (log N = {math.log(n):.3f})"),
            ("effective keys exp(H)", f"{s['effective_keys']:.1f} of {n}"),
            ("collision &Sigma;a&sup2;", f"{s['collision']:.5f} (uniform: {1 / n:.5f})"),
            ("weight on words / padding / video", " / ".join(f"{v:.3f}" for v in mass.values())),
            ("this layer's BANSA (all heads, rows)", f"{layer_mean:.4f} nats"),
            ("masks", f"K = {c['k']}, p = {c['drop_prob']:.2f}, seed {c['mask_seed']}"),
        ]
        return stats_table_html(rows)

    def _changed(self, change):
        self.redraw()

    def _generate(self, _button=None):
        c = {name: w.value for name, w in self.controls.items()}
        try:
            if self.parse is not None:
                self.parse(c["prompt"])
            video = self.pipe(c["prompt"], generator=torch.Generator().manual_seed(int(c["seed"])),
                              output_type="np").frames[0]  # (F, H, W, 3) in [0, 1], whatever the pipeline's default
            self.video.value = gif_bytes(video, scale=6)
            self.video.layout.display = None
        except (ValueError, RuntimeError) as e:
            self.error.value = error_html(e)

    # --- display --------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        """The live widget, and a PNG of the current picture for static renderers."""
        return widget_bundle(self.box, self.image.value,
                             "AttentionExplorer (a live widget; the PNG shows its state when the cell ran)")


class MaskPlayground:
    """Sliders for temperature, K, drop_prob and mask seed over one synthetic attention row.

    Args:
        num_keys: keys in the row.
        row_seed: seed of the row's Gaussian logits.
        temperature, k, drop_prob, mask_seed: the starting values.

    Examples:
        >>> from anse_lib.widgets import MaskPlayground
        >>> pg = MaskPlayground()
        >>> before = pg.image.value
        >>> pg.controls["k"].value = 20
        >>> pg.image.value != before, pg.error.value
        (True, '')
    """

    def __init__(self, num_keys: int = 48, row_seed: int = 0, temperature: float = 0.3, k: int = 10,
                 drop_prob: float = 0.2, mask_seed: int = 0):
        self.num_keys, self.row_seed = num_keys, row_seed
        style = {"description_width": "100px"}
        layout = widgets.Layout(width="380px")
        self.controls = {
            "temperature": widgets.FloatLogSlider(value=temperature, base=10, min=-1.7, max=1, step=0.05,
                                                  description="temperature", continuous_update=False, style=style,
                                                  layout=layout),
            "k": widgets.IntSlider(value=k, min=2, max=50, description="K masks", continuous_update=False,
                                   style=style, layout=layout),
            "drop_prob": widgets.FloatSlider(value=drop_prob, min=0.05, max=0.95, step=0.05, description="drop p",
                                             continuous_update=False, style=style, layout=layout),
            "mask_seed": widgets.IntSlider(value=mask_seed, min=0, max=20, description="mask seed",
                                           continuous_update=False, style=style, layout=layout),
        }
        self.image = widgets.Image(format="png")
        self.stats = widgets.HTML()
        self.error = widgets.HTML(value="")
        for w in self.controls.values():
            w.observe(lambda change: self.redraw(), names="value")
        self.box = widgets.VBox([widgets.HBox([widgets.VBox(list(self.controls.values())), self.stats]),
                                 self.error, self.image])
        self.box.add_class("anse-mask-playground")
        self.fig = Figure(figsize=(9.5, 3.2), dpi=72)
        FigureCanvasAgg(self.fig)
        self.redraw()

    def row(self) -> torch.Tensor:
        """``(num_keys,)`` the synthetic row at the current temperature."""
        g = torch.Generator().manual_seed(self.row_seed)
        return attention_map(1, self.num_keys, temperature=self.controls["temperature"].value, generator=g)[0, 0]

    def redraw(self):
        c = {name: w.value for name, w in self.controls.items()}
        try:
            a = self.row()
            masks = keep_masks(c["k"], torch.tensor([0]), torch.tensor([0]), self.num_keys, c["drop_prob"],
                               c["mask_seed"])[:, 0, 0]
            samples = _masked_sample(a, masks)[0]  # the scorer's own renormalised samples
            stats = {name: float(v[0]) for name, v in row_statistics(
                a[None], k=c["k"], drop_prob=c["drop_prob"], seed=c["mask_seed"]).items()}
            self.fig.clear()
            ax1, ax2 = self.fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[1, 1.25]))
            x = np.arange(self.num_keys)
            ax1.bar(x, a.numpy(), color="0.6", width=0.9, label="the row a")
            ax1.step(x, samples.mean(0).numpy(), where="mid", color="C3", lw=1.2, label=f"mean of {c['k']} samples")
            ax1.set_xlabel("key j")
            ax1.set_ylabel("attention weight")
            ax1.legend(fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2)
            shown = np.ma.masked_where(~masks.numpy(), samples.numpy())
            im = ax2.imshow(shown, aspect="auto", cmap="magma", norm=Normalize(0, float(samples.max())),
                            interpolation="nearest")
            ax2.grid(False)
            ax2.set_xlabel("key j")
            ax2.set_ylabel("mask k")
            ax2.set_title(f"the {c['k']} renormalised samples (white: dropped, p = {c['drop_prob']:.2f})", fontsize=9)
            self.fig.colorbar(im, ax=ax2, label="sample weight")
            self.fig.suptitle(f"temperature {c['temperature']:.2f} (exp(H) = {stats['effective_keys']:.1f} of "
                              f"{self.num_keys} keys): BANSA of this row = {stats['bansa']:.3f} nats", fontsize=10)
            self.fig.subplots_adjust(left=0.07, right=0.97, bottom=0.16, top=0.8, wspace=0.25)
            self.image.value = figure_png(self.fig)
            self.stats.value = self._stats_html(stats, c)
            self.error.value = ""
        except ValueError as e:
            self.error.value = error_html(e)

    def _stats_html(self, s, c) -> str:
        rows = [("BANSA", f"{s['bansa']:.4f} nats"), ("= kept-mass term E[-log Z]", f"{s['kept_mass_term']:.4f}"),
                ("&minus; spread term KL(q&#772;||a)", f"{s['spread_term']:.4f}"),
                ("diffuse-row floor &minus;log(1&minus;p)", f"{-math.log(1 - c['drop_prob']):.4f}"),
                ("row entropy H", f"{s['entropy']:.3f} of log N = {math.log(self.num_keys):.3f} nats")]
        return stats_table_html(rows)

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.box, self.image.value,
                             "MaskPlayground (a live widget; the PNG shows its state when the cell ran)")
