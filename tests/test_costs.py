"""Measuring the cost of BANSA (anse_lib.costs)."""
import os

from anse_lib.studies.costs import fixed_mmap_threshold


def test_fixed_mmap_threshold_is_scoped(monkeypatch):
    """Memory measurements fix glibc's mmap threshold for the processes they spawn, keep a
    value the user set, and leave the environment as it was."""
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    with fixed_mmap_threshold():
        assert os.environ["MALLOC_MMAP_THRESHOLD_"] == str(1 << 20)
    assert "MALLOC_MMAP_THRESHOLD_" not in os.environ
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "4096")
    with fixed_mmap_threshold():
        assert os.environ["MALLOC_MMAP_THRESHOLD_"] == "4096"
    assert os.environ["MALLOC_MMAP_THRESHOLD_"] == "4096"
