"""Study helpers for the notebooks: measurements *about* the method, not the method.

The method itself is ``anse_lib.bansa``, ``kernel``, ``probe`` and ``select``; nothing
here re-implements its math. One module per idea, each naming the notebook it serves:

- ``synthetic``: attention maps and tiny attention layers of controlled sharpness (01-03)
- ``bald_demo``: BALD with MC dropout on a tiny classifier (02)
- ``mask_studies``: the Bernoulli-mask shortcut against K, p, row sharpness, mask seeds (03)
- ``costs``: measured time and peak memory of naive vs chunked scoring (03)
- ``analysis``: selection outcomes, bootstrap intervals, within-prompt correlations (00, 08)
- ``mask_playground``: a widget with one synthetic row, its K masked samples and its score (02, 03)
- ``attention_views``: pictures of a model's captured attention and its row statistics (04)
- ``selectors``: baselines next to BANSA (entropy, collision, kept mass, row subsets) and the look-ahead control
"""
