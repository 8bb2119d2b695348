"""Study helpers for the notebooks: measurements *about* the method, not the method.

The method itself is ``anse_lib.bansa``, ``kernel``, ``probe``, ``select`` and ``calibrate``;
nothing here re-implements its math. The widgets are in ``anse_lib.widgets``. One module per
idea, each naming the notebook it serves:

- ``synthetic``: attention maps and tiny attention layers of controlled sharpness (01-03)
- ``bald_demo``: BALD with MC dropout on a tiny classifier (02)
- ``mask_studies``: the Bernoulli-mask shortcut against K, p, row sharpness, mask seeds (03)
- ``costs``: measured time and peak memory of naive vs chunked scoring (03)
- ``analysis``: selection outcomes, bootstrap intervals, within-prompt correlations (00, 08)
- ``attention_views``: pictures of a model's captured attention and its row statistics (04)
- ``selectors``: the scores a selector can read: row statistics, later-step BANSA, BANSA (D), inversion
  stability, the look-ahead x0 control (05)
- ``selector_study``: selectors on a sweep table: picks over random subsets, paired gains, best-of-M, cost (05)
- ``cost_model``: per-entry costs extrapolated to real model sizes (06)
"""
