"""The paper's depth rule on the shipped toy model, from the cached held-out sweep (seconds).

    python benchmarks/toy_depth_calibration.py

d* is the smallest depth d whose mean score over layers 1..d has Pearson r >= 0.7 with the
all-layer score (the paper's rule; ``anse_lib.select.calibration_from_scores``), pooled over
the held-out prompts x seeds of ``data/sweeps/heldout_quality.csv`` (every layer scored at
the pipeline's defaults, K = 10, p = 0.2). The curve is cached as the sweep
``depth_calibration`` with its provenance; ``make demo`` and ``python -m anse_lib select``
score layers 1..d* of the toy model by default when this cache matches the shipped model.
"""
from __future__ import annotations

from anse_lib import sweeps
from anse_lib.provenance import sha256_file
from anse_lib.select import calibration_from_scores
from anse_lib.toyworld import DEFAULT_MODEL_DIR

TAU = 0.7
SOURCE = "heldout_quality"


def main():
    table, meta = sweeps.load(SOURCE, DEFAULT_MODEL_DIR)
    cal = calibration_from_scores(table, TAU)
    config = {"source": SOURCE, "source_sha256": sha256_file(sweeps.SWEEPS_DIR / f"{SOURCE}.csv"), "tau": TAU,
              "prompts": int(table.prompt.nunique()), "seeds": len(meta["config"]["seeds"]),
              "k": meta["config"]["k"], "drop_prob": meta["config"]["drop_prob"]}
    curve = sweeps.run("depth_calibration", [0], lambda _: cal.curve.to_dict("records"), config, DEFAULT_MODEL_DIR,
                       command=sweeps.command_line(__file__), progress=False)
    print(curve.drop(columns="chunk").round(3).to_string(index=False))
    print(f"d* = {cal.d_star} of {len(curve)} "
          f"(pooled r >= {TAU}, {config['prompts']} prompts x {config['seeds']} seeds)")


if __name__ == "__main__":
    main()
