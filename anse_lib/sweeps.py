"""Cached, resumable sweeps whose results carry their provenance.

A sweep is a list of work items (chunks); each chunk produces rows of a table. Rows are
appended to ``NAME.partial.csv`` atomically after every chunk, so an interrupted sweep
resumes where it stopped; when all chunks are done the table is written to
``NAME.csv`` with ``NAME.json`` beside it: the command, the model's hash, the config
and the chunk layout that made it. :func:`load` checks that the cached table was made
by the model it is used with. A table made in one go (a timing run, a copied file) is
written with the same provenance by :func:`save`; :func:`command_line` spells the command line
every cached table records.
"""
from __future__ import annotations

import io
import json
import shlex
import sys
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from .provenance import REPO_ROOT, atomic_write_text, model_hash, repo_relative, sha256_file

SWEEPS_DIR = REPO_ROOT / "data" / "sweeps"
#: Provenance fields :func:`save` writes itself (``extra`` fields may not override them).
RESERVED = ("name", "command", "model_hash", "model_dir", "config", "table_sha256")


class StaleResultsError(RuntimeError):
    """A cached table was made by another model (or config) than the one asked for."""


def command_line(script: str | Path, argv: list[str] | None = None) -> str:
    """The command line a cached table records: ``python SCRIPT ARGS``, shell-quoted.

    ``script`` is the running file (``__file__``), shown relative to the repository root
    (:func:`~anse_lib.provenance.repo_relative`); ``argv`` the arguments given to ``main``
    (``None``: this process's ``sys.argv[1:]``). Paths among the arguments are recorded as
    given: the command replays from the directory it was run in.
    """
    return shlex.join(["python", repo_relative(script), *(sys.argv[1:] if argv is None else argv)])


def save(name: str, table: pd.DataFrame, config: dict, model_dir: str | Path, command: str,
         folder: Path = SWEEPS_DIR, float_format: str | None = "%.7g", **extra) -> dict:
    """Write ``table`` as the cached table ``NAME.csv`` with its provenance ``NAME.json``; returns the latter.

    The provenance is :func:`run`'s (command, the model's hash, config, the table's SHA-256),
    plus any ``extra`` fields, which may not be one of :data:`RESERVED`. Floats keep 7
    significant digits unless ``float_format`` says otherwise (``None``: exact round-trip).
    Both files are written atomically, the table first.
    """
    clash = sorted(set(extra) & set(RESERVED))
    if clash:
        raise ValueError(f"extra provenance fields {clash} would replace the ones save writes ({', '.join(RESERVED)})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{name}.csv", _csv(table, float_format))
    meta = {"name": name, "command": command, "model_hash": model_hash(model_dir),
            "model_dir": str(Path(model_dir).name), "config": config, **extra,
            "table_sha256": sha256_file(folder / f"{name}.csv")}
    atomic_write_text(folder / f"{name}.json", json.dumps(meta, indent=1) + "\n")
    return meta


def run(name: str, chunks: Iterable, work: Callable[[object], list[dict]], config: dict, model_dir: str | Path,
        command: str | None = None, folder: Path = SWEEPS_DIR, progress: bool = True,
        force: bool = False) -> pd.DataFrame:
    """Run (or resume, or just load) a sweep and return its table. ``work(chunk)`` returns the chunk's rows.

    A complete cached table made with the same model, config and chunks is returned as is,
    unless ``force`` (a timing run, say, which must be re-measured): then it and any partial
    table are made again from the start.

    Every row gets a ``chunk`` column (the chunk's position), which is how resuming and
    recomputing find it.
    """
    from tqdm.auto import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chunks = list(chunks)
    meta = {"name": name, "command": command or command_line(sys.argv[0]), "model_hash": model_hash(model_dir),
            "model_dir": str(Path(model_dir).name), "config": config, "chunks": [repr(c) for c in chunks]}
    same = lambda other: all(other.get(k) == meta[k] for k in ("model_hash", "config", "chunks"))  # noqa: E731
    final, final_meta = folder / f"{name}.csv", folder / f"{name}.json"
    if not force and final.exists() and final_meta.exists() and same(json.loads(final_meta.read_text())):
        return load(name, model_dir, folder)[0]  # already complete
    partial = folder / f"{name}.partial.csv"
    partial_meta = folder / f"{name}.partial.json"
    done = pd.DataFrame()
    if not force and partial.exists() and partial_meta.exists() and same(json.loads(partial_meta.read_text())):
        done = pd.read_csv(partial)
    else:  # another sweep's rows must not be resumed as this one's
        partial.unlink(missing_ok=True)
    atomic_write_text(partial_meta, json.dumps(meta, indent=1))
    finished = set(done["chunk"].unique()) if len(done) else set()
    for i, chunk in enumerate(tqdm(chunks, desc=name, disable=not progress)):
        if i in finished:
            continue
        rows = pd.DataFrame(work(chunk)).assign(chunk=i)
        done = pd.concat([done, rows], ignore_index=True)
        atomic_write_text(partial, _csv(done))
    done = done.sort_values("chunk", kind="stable").reset_index(drop=True)
    save(name, done, config, model_dir, meta["command"], folder, chunks=meta["chunks"])
    partial.unlink()
    partial_meta.unlink()
    return done


def load(name: str, model_dir: str | Path | None = None, folder: Path = SWEEPS_DIR) -> tuple[pd.DataFrame, dict]:
    """A cached table and its metadata; with ``model_dir``, check it was made by that model."""
    folder = Path(folder)
    table_path, meta_path = folder / f"{name}.csv", folder / f"{name}.json"
    if not table_path.exists() or not meta_path.exists():
        raise FileNotFoundError(f"no cached sweep {name!r} in {folder}; make it with the command in the README")
    meta = json.loads(meta_path.read_text())
    if sha256_file(table_path) != meta["table_sha256"]:
        raise StaleResultsError(f"{table_path} does not match the SHA-256 recorded in {meta_path.name}")
    if model_dir is not None and meta["model_hash"] != model_hash(model_dir):
        raise StaleResultsError(
            f"sweep {name!r} was made by model {meta['model_hash'][:12]}, not by {model_dir} "
            f"({model_hash(model_dir)[:12]}); re-run: {meta['command']}"
        )
    return pd.read_csv(table_path), meta


def _csv(df: pd.DataFrame, float_format: str | None = "%.7g") -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format=float_format)
    return buf.getvalue()
