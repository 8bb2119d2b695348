"""Cached sweeps: resume after interruption, reuse a complete cache, refuse another model's results."""
import json

import numpy as np
import pandas as pd
import pytest

from anse_lib import sweeps
from anse_lib.provenance import atomic_write_text, write_manifest


def fake_model(path, content="weights"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "w.bin").write_text(content)
    write_manifest(path, command="test", config={})
    return path


def test_resume_reuse_and_stale_refusal(tmp_path):
    model = fake_model(tmp_path / "model")
    calls = []

    def work(chunk):
        calls.append(chunk)
        if chunk == 2 and len(calls) == 3:
            raise KeyboardInterrupt  # interrupted during the third chunk
        return [{"x": chunk, "y": chunk * 10}]

    with pytest.raises(KeyboardInterrupt):
        sweeps.run("s", [0, 1, 2, 3], work, {"a": 1}, model, command="cmd", folder=tmp_path, progress=False)
    assert (tmp_path / "s.partial.csv").exists() and not (tmp_path / "s.csv").exists()
    table = sweeps.run("s", [0, 1, 2, 3], work, {"a": 1}, model, command="cmd", folder=tmp_path, progress=False)
    assert calls == [0, 1, 2, 2, 3]  # resumed: chunks 0 and 1 were not recomputed
    assert table.x.tolist() == [0, 1, 2, 3] and table.chunk.tolist() == [0, 1, 2, 3]
    assert not (tmp_path / "s.partial.csv").exists()
    meta = json.loads((tmp_path / "s.json").read_text())
    assert meta["command"] == "cmd" and meta["config"] == {"a": 1}

    again = sweeps.run("s", [0, 1, 2, 3], work, {"a": 1}, model, folder=tmp_path, progress=False)
    assert calls == [0, 1, 2, 2, 3] and again.equals(table)  # complete cache reused

    other = fake_model(tmp_path / "other", content="other weights")
    with pytest.raises(sweeps.StaleResultsError, match="re-run: cmd"):
        sweeps.load("s", other, folder=tmp_path)
    (tmp_path / "s.csv").write_text(pd.DataFrame({"x": [9]}).to_csv(index=False))
    with pytest.raises(sweeps.StaleResultsError, match="does not match the SHA-256"):
        sweeps.load("s", model, folder=tmp_path)
    with pytest.raises(FileNotFoundError, match="no cached sweep 'nope'"):
        sweeps.load("nope", folder=tmp_path)


def test_an_interrupted_sweep_with_another_config_does_not_leak_its_rows(tmp_path):
    model = fake_model(tmp_path / "model")

    def interrupted(chunk):
        if chunk == 1:
            raise KeyboardInterrupt
        return [{"x": "old"}]

    with pytest.raises(KeyboardInterrupt):
        sweeps.run("s", [0, 1], interrupted, {"a": 1}, model, folder=tmp_path, progress=False)

    def stopped_before_any_chunk(chunk):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # another config: the old rows must go, even before a chunk is done
        sweeps.run("s", [0, 1], stopped_before_any_chunk, {"a": 2}, model, folder=tmp_path, progress=False)
    table = sweeps.run("s", [0, 1], lambda c: [{"x": "new"}], {"a": 2}, model, folder=tmp_path, progress=False)
    assert table.x.tolist() == ["new", "new"]


def test_force_remeasures_a_complete_table(tmp_path):
    model = fake_model(tmp_path / "model")
    first = sweeps.run("t", ["measured"], lambda _: [{"s": 1.0}], {}, model, folder=tmp_path, progress=False)
    kept = sweeps.run("t", ["measured"], lambda _: [{"s": 2.0}], {}, model, folder=tmp_path, progress=False)
    forced = sweeps.run("t", ["measured"], lambda _: [{"s": 2.0}], {}, model, folder=tmp_path, progress=False,
                        force=True)
    assert first.s.tolist() == kept.s.tolist() == [1.0] and forced.s.tolist() == [2.0]
    assert sweeps.load("t", model, folder=tmp_path)[0].s.tolist() == [2.0]


def test_save_writes_the_provenance_run_writes(tmp_path):
    model = fake_model(tmp_path / "model")
    sweeps.run("a", [0], lambda _: [{"x": 1}], {"k": 1}, model, command="cmd", folder=tmp_path, progress=False)
    meta = sweeps.save("b", pd.DataFrame({"x": [1], "chunk": [0]}), {"k": 1}, model, "cmd", folder=tmp_path,
                       chunks=["0"], copied_from="run")
    table, loaded = sweeps.load("b", model, folder=tmp_path)
    assert loaded == meta and meta["copied_from"] == "run"
    ran = json.loads((tmp_path / "a.json").read_text())
    assert {k: v for k, v in meta.items() if k not in ("name", "copied_from")} == \
        {k: v for k, v in ran.items() if k != "name"}


def test_command_is_the_script_relative_to_the_repository_and_quoted(tmp_path, monkeypatch):
    script = sweeps.REPO_ROOT / "benchmarks" / "toy_model_quality.py"
    assert sweeps.command_line(script, ["--name", "a b"]) == "python benchmarks/toy_model_quality.py --name 'a b'"
    assert sweeps.command_line(script, []) == "python benchmarks/toy_model_quality.py"
    monkeypatch.setattr("sys.argv", [str(script), "--seeds", "2"])
    assert sweeps.command_line(script) == "python benchmarks/toy_model_quality.py --seeds 2"  # this process's
    outside = tmp_path / "my script.py"
    assert sweeps.command_line(outside, []) == f"python '{outside.resolve()}'"  # absolute, quoted


def test_save_refuses_extra_fields_that_would_replace_its_own(tmp_path):
    model = fake_model(tmp_path / "model")
    with pytest.raises(ValueError, match=r"\['model_hash'\] would replace"):
        sweeps.save("x", pd.DataFrame({"a": [1]}), {}, model, "cmd", folder=tmp_path, model_hash="forged")
    assert not (tmp_path / "x.csv").exists()


def test_save_can_keep_floats_exact(tmp_path):
    model = fake_model(tmp_path / "model")
    value = 0.1234567891234
    sweeps.save("rounded", pd.DataFrame({"v": [value]}), {}, model, "cmd", folder=tmp_path)
    sweeps.save("exact", pd.DataFrame({"v": [value]}), {}, model, "cmd", folder=tmp_path, float_format=None)
    rounded = sweeps.load("rounded", folder=tmp_path)[0].v[0]
    assert rounded == pytest.approx(value, rel=1e-6) and rounded != value
    assert sweeps.load("exact", folder=tmp_path)[0].v[0] == value


def test_atomic_write_gives_the_permissions_open_would(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_text(tmp_path / "atomic.txt", "x")
    assert (tmp_path / "atomic.txt").stat().st_mode == plain.stat().st_mode  # not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_cached_depth_calibration_recomputes_from_the_cached_heldout_sweep():
    """data/sweeps/depth_calibration is the paper's depth rule applied to heldout_quality, for this model."""
    from anse_lib import AnseConfig
    from anse_lib.calibrate import calibration_from_scores
    from anse_lib.provenance import model_hash
    from anse_lib.toyworld import DEFAULT_MODEL_DIR

    curve, meta = sweeps.load("depth_calibration", DEFAULT_MODEL_DIR)
    table, _ = sweeps.load(meta["config"]["source"], DEFAULT_MODEL_DIR)
    again = calibration_from_scores(table, meta["config"]["tau"])
    np.testing.assert_allclose(curve[["r_pooled", "r_within_prompt"]], again.curve[["r_pooled", "r_within_prompt"]],
                               atol=1e-6)
    assert again.d_star == int(curve[curve.r_pooled >= meta["config"]["tau"]].depth.iloc[0])
    # the depth travels with the model folder, saved for this model by the same benchmark
    saved = AnseConfig.from_pretrained(DEFAULT_MODEL_DIR)
    assert saved.depth == again.d_star and saved.bansa.num_masks == meta["config"]["k"]
    notes = json.loads((DEFAULT_MODEL_DIR / "anse_config.json").read_text())
    assert notes["_model_hash"] == model_hash(DEFAULT_MODEL_DIR) and notes["_command"] == meta["command"]
