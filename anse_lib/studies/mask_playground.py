"""A small widget to feel the Bernoulli-mask score: one synthetic row, its K masked samples, BANSA.

Sliders set the row's temperature (sharp to diffuse), K, the drop probability p and the
mask seed; the picture shows the row, the mean of its K samples, every sample (white:
dropped keys), and the row's statistics from :func:`~anse_lib.rowstats.row_statistics`.

Study helper for: Notebooks 02-03.
"""
from __future__ import annotations

import math

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ..bansa import _masked_sample, keep_masks
from ..explorer import error_html, figure_png, stats_table_html, widget_bundle
from ..rowstats import row_statistics
from .synthetic import attention_map


class MaskPlayground:
    """Sliders for temperature, K, drop_prob and mask seed over one synthetic attention row.

    Args:
        num_keys: keys in the row.
        row_seed: seed of the row's Gaussian logits.
        temperature, k, drop_prob, mask_seed: the starting values.

    Examples:
        >>> from anse_lib.studies.mask_playground import MaskPlayground
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
