"""Execute notebooks in place so that their committed outputs are fresh.

    python scripts/run_notebooks.py notebooks/*.ipynb

Each notebook runs top to bottom in its own folder with the current environment's
kernel; a failing cell stops with the error and leaves the file unchanged.
"""
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from anse_lib.provenance import atomic_write_text


def run(path: Path, timeout: int = 600) -> float:
    nb = nbformat.read(path, as_version=4)
    t0 = time.time()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    atomic_write_text(path, nbformat.writes(nb) + "\n")
    return time.time() - t0


if __name__ == "__main__":
    # the kernel inherits the environment: a non-interactive MPLBACKEND (the Makefile sets Agg
    # for the tests) would replace the inline backend and drop every figure from the outputs
    os.environ.pop("MPLBACKEND", None)
    paths = [Path(p) for p in sys.argv[1:]]
    if not paths:
        sys.exit("usage: python scripts/run_notebooks.py NOTEBOOK.ipynb [...]")
    for p in paths:
        print(f"{p}: {run(p):.1f} s", flush=True)
