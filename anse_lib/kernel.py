"""The compiled BANSA row scorer: ``csrc/bansa_rows.c``, built with gcc at first use.

The chunked scorer's arithmetic (:func:`anse_lib.bansa._bansa_rows_block`: softmax, K
masked masses, the mean sample's weights, one logarithm per entry) runs as a chain of
tensor operations, each a pass over a block of rows; with the masks' hash, about 60
passes. The C file does the same per row in one sweep that stays in cache, with the same
masks (the same SplitMix64 hash), so the two agree to float rounding (tested).

Nothing to install: the first call compiles the file with the machine's C compiler
(``$CC``, default ``gcc``; ``-O3 -march=native -ffast-math``, about a second) into a
per-user cache (``$ANSE_KERNEL_CACHE``, default ``~/.cache/anse_lib``), written
atomically and named by a hash of the source, the flags and the CPU. Without a compiler
:func:`available` is False and :func:`anse_lib.bansa.bansa_chunked` keeps to PyTorch.
Rows are split over torch's OpenMP threads (``torch.get_num_threads()``): the file is
built with ``-fopenmp`` and so shares the libgomp torch loaded (torch's Linux wheels use
GNU OpenMP), one thread team for the matrix products and the scorer. (Two teams would each spin-wait for work on the
same cores: a second pool of Python threads made the scorer 1.8x slower between torch
products.) Where ``-fopenmp`` does not build, rows are split over a pool of Python
threads (ctypes releases the GIL).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("csrc") / "bansa_rows.c"
FLAGS = ("-O3", "-march=native", "-ffast-math", "-shared", "-fPIC")
#: Tried first; without it (no OpenMP in the compiler) the build uses FLAGS alone.
OPENMP_FLAG = "-fopenmp"
#: Logits below this are treated as masked out (the C code may not see -inf: -ffast-math).
MASKED_LOGIT = -1e30
#: Most mask samples the compiled scorer takes (its per-row accumulators).
MAX_K = 32

_lib = None
_error: str | None = None
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _cpu_id() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _cache_dir() -> Path:
    """``$ANSE_KERNEL_CACHE``, else ``~/.cache/anse_lib``, else (not writable) a folder in the temp dir."""
    if os.environ.get("ANSE_KERNEL_CACHE"):
        return Path(os.environ["ANSE_KERNEL_CACHE"])
    home = Path.home() / ".cache" / "anse_lib"
    try:
        home.mkdir(parents=True, exist_ok=True)
        if os.access(home, os.W_OK):
            return home
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"anse_lib-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def _compile(cc: str, flags: tuple[str, ...]) -> Path:
    """The shared library built from SOURCE with ``flags``, cached under a hash of source, flags and CPU."""
    src = SOURCE.read_bytes()
    tag = hashlib.sha256(src + " ".join((cc, *flags, platform.machine(), _cpu_id())).encode()).hexdigest()[:16]
    out = _cache_dir() / f"bansa_rows-{tag}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        try:
            subprocess.run([cc, *flags, str(SOURCE), "-o", tmp, "-lm"], check=True, capture_output=True, text=True)
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return out


def _load(path: Path) -> ctypes.CDLL:
    """A built library with its functions' C signatures declared."""
    lib = ctypes.CDLL(str(path))
    i64, p = ctypes.c_int64, ctypes.c_void_p
    lib.bansa_rows.argtypes = [p, i64, i64, i64, p, i64, i64, i64, ctypes.c_int, ctypes.c_float, i64, i64, p, p]
    lib.bansa_rows.restype = ctypes.c_int
    lib.bansa_openmp.restype = ctypes.c_int
    return lib


def _build() -> ctypes.CDLL:
    cc = os.environ.get("CC", "gcc")
    try:
        return _load(_compile(cc, (*FLAGS, OPENMP_FLAG)))
    except subprocess.CalledProcessError:
        return _load(_compile(cc, FLAGS))


def available() -> bool:
    """True if the compiled scorer is built (building it on the first call)."""
    global _lib, _error
    if _lib is None and _error is None:
        try:
            _lib = _build()
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            _error = f"could not build {SOURCE.name}: {detail.strip()[:500]}"
    return _lib is not None


def build_error() -> str | None:
    """Why the compiled scorer is unavailable (None if it is available or not yet tried)."""
    return _error


def bansa_rows(x: torch.Tensor, row_keys: torch.Tensor, k: int, mask_bits: int, threshold: int,
               is_probs: bool, empty_mass: float) -> tuple[torch.Tensor, torch.Tensor]:
    """BANSA rows of one block with the compiled scorer.

    x: ``(B, GR, Nk)`` float32 on the CPU, logits (``is_probs=False``; masked keys at or
    below :data:`MASKED_LOGIT`, never -inf) or probabilities; row_keys: ``(GR,)`` int64,
    the mask hash key of each (head, query row) (see :func:`anse_lib.bansa.keep_masks`).
    Returns rows ``(B, GR)`` float32 (nats) and empty-sample counts ``(B, GR)`` int64.
    """
    if not available():
        raise RuntimeError(_error)
    x = x.contiguous()
    row_keys = row_keys.contiguous()
    b, gr, nk = x.shape
    rows = torch.empty(b, gr, dtype=torch.float32)
    empty = torch.empty(b, gr, dtype=torch.int64)
    args = (x.data_ptr(), b, gr, nk, row_keys.data_ptr(), k, mask_bits, threshold, int(is_probs), empty_mass)
    outs = (rows.data_ptr(), empty.data_ptr())
    parts = max(1, min(torch.get_num_threads(), gr))
    if parts == 1 or _lib.bansa_openmp():  # one call: OpenMP splits the rows
        codes = [_lib.bansa_rows(*args, 0, gr, *outs)]
    else:
        global _pool, _pool_size
        bounds = [gr * i // parts for i in range(parts + 1)]
        if _pool is None or _pool_size < parts:
            _pool, _pool_size = ThreadPoolExecutor(max_workers=parts, thread_name_prefix="bansa"), parts
        futures = [_pool.submit(_lib.bansa_rows, *args, lo, hi, *outs) for lo, hi in zip(bounds, bounds[1:])]
        codes = [f.result() for f in futures]
    if any(c == 2 for c in codes):
        raise ValueError(f"the compiled scorer takes k <= {MAX_K}, got k={k}")
    if any(codes):
        raise MemoryError("the compiled BANSA scorer could not allocate its per-row scratch")
    return rows, empty
