"""The benchmarks' command lines: --device cuda is refused cleanly where no GPU is present."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: --device cuda would run")
@pytest.mark.parametrize("script", ["selection_overhead.py", "probe_memory.py"])
def test_device_cuda_without_a_gpu_is_one_error_line(script):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--device", "cuda"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --device cuda: no GPU is present here"), out.stderr


def test_score_quality_study_tiny_run_agrees_with_the_cached_heldout_sweep(tmp_path):
    """A 1-prompt x 2-seed run of the study's sweep: its first-step BANSA per layer is the cached
    held-out sweep's (same prompt, seeds and settings), and every selector column is there."""
    import pandas as pd

    from anse_lib import sweeps
    from anse_lib.toyworld import DEFAULT_MODEL_DIR

    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "score_quality_study.py"), "--prompts", "1",
                          "--seeds", "2", "--later-steps", "1", "--lookahead", "1,2", "--folder", str(tmp_path),
                          "--name", "tiny"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(tmp_path / "tiny.csv")
    assert len(table) == 2 and {"step1_bansa_00", "lookahead2_semantic", "entropy_03", "bansa_video_01", "bansa_d_03",
                                "inversion_cosine", "final_semantic", "final_motion", "bansa_other_02"} <= set(table)
    cached, _ = sweeps.load("heldout_quality", DEFAULT_MODEL_DIR)
    first = cached[(cached.prompt_index == 0) & cached.seed.isin([0, 1])].sort_values("seed")
    for layer in range(4):
        np.testing.assert_allclose(table[f"bansa_{layer:02d}"], first[f"layer_{layer:02d}"], atol=1e-5)


@pytest.mark.parametrize("spec, message", [
    ("data/toy_model", "error: --model must be NAME=DIR, got 'data/toy_model'"),
    ("x=no/such/folder", "error: 'no/such/folder' is not an exported toy model folder"),
    ("x=RUN", "error: 'RUN' is not an exported toy model folder"),  # a run folder: checkpoint and curve only
])
def test_training_runs_rejects_a_bad_model_in_one_error_line(spec, message, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "training_curve.csv").write_text("step,loss,lr,seconds_per_step\n")
    spec, message = spec.replace("RUN", str(run)), message.replace("RUN", str(run))
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "toy_training_runs.py"), "--model", spec],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), out.stderr
