"""The benchmarks' command lines: --device cuda is refused cleanly where no GPU is present."""
import subprocess
import sys
from pathlib import Path

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
