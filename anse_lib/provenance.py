"""Atomic file writes and SHA-256 manifests: nothing half-written, everything traceable.

A manifest (``MANIFEST.json``) records, for a folder of results or weights, the SHA-256
of every file, the command and config that made them, and when. Loading checks it.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from pathlib import Path

MANIFEST_NAME = "MANIFEST.json"
#: The repository's root: recorded commands and paths are written relative to it.
REPO_ROOT = Path(__file__).resolve().parents[1]


class ChecksumError(RuntimeError):
    """A file's SHA-256 does not match the one its manifest records."""


def repo_relative(path: str | os.PathLike) -> str:
    """``path`` as recorded commands show it: relative to the repository root if it lies inside
    it (``data/toy_model``), else resolved to an absolute path (so it replays from the root)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(resolved)


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_bytes), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_manifest(folder: str | os.PathLike, command: str, config: dict, extra: dict | None = None) -> dict:
    """Hash every file below ``folder`` (except the manifest) and write ``MANIFEST.json``."""
    folder = Path(folder)
    files = {
        str(p.relative_to(folder)): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME and not p.name.endswith(".partial")
    }
    manifest = {
        "command": command,
        "config": config,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "files": files,
        **(extra or {}),
    }
    save_manifest(folder, manifest)
    return manifest


def save_manifest(folder: str | os.PathLike, manifest: dict) -> None:
    """Write ``manifest`` as ``folder``'s ``MANIFEST.json`` (atomically), as :func:`write_manifest` does."""
    atomic_write_text(Path(folder) / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def read_manifest(folder: str | os.PathLike) -> dict:
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {folder}: not a folder written by anse_lib")
    return json.loads(path.read_text())


def verify_manifest(folder: str | os.PathLike) -> dict:
    """Check every file's SHA-256 against the manifest; raise :class:`ChecksumError` on mismatch."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    for rel, expected in manifest["files"].items():
        p = folder / rel
        if not p.is_file():
            raise ChecksumError(f"{p} is listed in {folder / MANIFEST_NAME} but missing")
        got = sha256_file(p)
        if got != expected:
            raise ChecksumError(
                f"SHA-256 mismatch for {p}: manifest says {expected}, file has {got}. "
                "The file was changed or corrupted; restore it from git (git checkout -- data/)."
            )
    return manifest


def model_hash(folder: str | os.PathLike) -> str:
    """One SHA-256 naming a whole saved model: the hash of its manifest's file table."""
    files = read_manifest(folder)["files"]
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
