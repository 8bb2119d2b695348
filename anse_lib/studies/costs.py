"""Measured cost of computing BANSA: wall time and peak extra memory.

Peak memory of CPU tensors is measured as the process's peak resident set during one call
minus its resident set just before, in a freshly spawned process. On Linux the peak
(VmHWM) is reset right before the call (``/proc/self/clear_refs``), so earlier
transients such as torch's import do not hide it. The spawned process runs with glibc's
``MALLOC_MMAP_THRESHOLD_`` fixed at 1 MiB (:func:`fixed_mmap_threshold`): every block of a
MiB or more is mapped on its own and unmapped when freed, so the peak counts what the
computation holds, not what the allocator kept from earlier frees (with glibc's moving
default, one computation's peak varied by tens of MiB between processes). Times are for
this machine, in one run; compare them as ratios.

Study helper for: Notebook 03 and ``benchmarks/probe_memory.py``.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import resource
import time
from dataclasses import dataclass

import torch

from ..bansa import MASK_CACHE, bansa_bernoulli, bansa_chunked


@dataclass
class Cost:
    seconds: float
    peak_extra_mib: float


@contextlib.contextmanager
def fixed_mmap_threshold(nbytes: int = 1 << 20):
    """Processes spawned inside run with glibc's mmap threshold fixed at ``nbytes`` (unless
    ``MALLOC_MMAP_THRESHOLD_`` is already set): their peak resident memory is then the same
    from run to run. Other C libraries ignore the variable."""
    saved = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(nbytes))
    try:
        yield
    finally:
        if saved is None:
            del os.environ["MALLOC_MMAP_THRESHOLD_"]


def _status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        return None
    return None


def _reset_peak() -> float:
    """Reset the peak resident set where the OS allows it; return the current resident set (MiB)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    rss = _status_mib("VmRSS")
    return rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_mib() -> float:
    hwm = _status_mib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _qk(heads, tokens, head_dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, heads, tokens, head_dim, generator=g), torch.randn(1, heads, tokens, head_dim, generator=g))


def _run(method: str, heads: int, tokens: int, head_dim: int, k: int, block_rows: int, threads: int) -> Cost:
    torch.set_num_threads(threads)
    q, key = _qk(heads, tokens, head_dim)
    # warm-up on a tiny input so that one-off allocations are not counted
    bansa_chunked(q[:, :1, :8], key[:, :1, :8], k=k)
    MASK_CACHE.clear()
    before = _reset_peak()
    t0 = time.perf_counter()
    if method == "naive":
        probs = torch.softmax(q @ key.transpose(-1, -2) * head_dim**-0.5, -1)
        bansa_bernoulli(probs, k=k, seed=0)
    elif method == "chunked":  # the default scorer: compiled where gcc is there
        bansa_chunked(q, key, k=k, seed=0, block_rows=block_rows)
    elif method == "chunked (PyTorch)":  # the same arithmetic as tensor operations
        bansa_chunked(q, key, k=k, seed=0, block_rows=block_rows, backend="torch")
    elif method == "attention":  # the model's own attention call, for scale
        torch.nn.functional.scaled_dot_product_attention(q, key, key)
    else:
        raise ValueError(f"method must be 'naive', 'chunked', 'chunked (PyTorch)' or 'attention', got {method!r}")
    seconds = time.perf_counter() - t0
    return Cost(seconds=seconds, peak_extra_mib=max(0.0, _peak_mib() - before))


def measure(method: str, heads: int = 2, tokens: int = 512, head_dim: int = 32, k: int = 10,
            block_rows: int = 1024, threads: int = 1) -> Cost:
    """Time and peak extra memory of one BANSA computation of one attention call, measured in a spawned process."""
    with fixed_mmap_threshold(), mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_run, (method, heads, tokens, head_dim, k, block_rows, threads))
