"""The paper's depth rule on the shipped toy model, from the cached held-out sweep (seconds).

    python benchmarks/toy_depth_calibration.py

d* is the smallest depth d whose mean score over layers 1..d has Pearson r >= 0.7 with the
all-layer score (the paper's rule; ``anse_lib.calibrate.calibration_from_scores``), pooled over
the held-out prompts x seeds of ``data/sweeps/heldout_quality.csv`` (every layer scored at
the pipeline's defaults, K = 10, p = 0.2). The curve is cached as the sweep
``depth_calibration`` with its provenance, and d* is saved with the model as
``data/toy_model/anse_config.json`` (``AnseConfig(depth=d*).save_pretrained``), which
``make demo`` and ``python -m anse_lib select`` read: they score layers 1..d* by default.
"""
from __future__ import annotations

from anse_lib import AnseConfig, BansaConfig, sweeps
from anse_lib.calibrate import calibration_from_scores
from anse_lib.provenance import model_hash, sha256_file
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
    hit = curve[curve.r_pooled >= TAU].iloc[0]
    source = (f"the calibrated d* (pooled r = {hit.r_pooled:.2f} >= {TAU} over {config['prompts']} held-out prompts "
              f"x {config['seeds']} seeds; benchmarks/toy_depth_calibration.py)")
    saved = AnseConfig(depth=cal.d_star, bansa=BansaConfig(num_masks=config["k"], drop_prob=config["drop_prob"]))
    path = saved.save_pretrained(DEFAULT_MODEL_DIR, source=source, model_hash=model_hash(DEFAULT_MODEL_DIR),
                                 command=sweeps.command_line(__file__))
    print(f"wrote {path}")
    print(f"d* = {cal.d_star} of {len(curve)} "
          f"(pooled r >= {TAU}, {config['prompts']} prompts x {config['seeds']} seeds)")


if __name__ == "__main__":
    main()
