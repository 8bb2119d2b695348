"""The score-versus-quality study on any supported pipeline, on one process or many (``python -m anse_lib study``).

For every (prompt, seed): the first-step BANSA that selection uses (``bansa``, over the config's
layers) and per layer (``layer_XX``, every layer), the cheap baselines of notebook 05 over the
config's layers (mean row ``entropy`` in nats, ``collision``, ``kept_mass`` = ``E[-log Z]``, and per
layer ``entropy_XX``, ...), then the generated video's metrics (:mod:`anse_lib.metrics`). Seed
``s``'s video is the pipeline's own draw for ``torch.Generator("cpu").manual_seed(s)``, the same
noise the scores were computed on.

Layout of ``--out DIR``:

- ``study.json``: provenance (command, model folder and hash, pipeline class, package versions,
  the config, dtype, the prompts' SHA-256, seeds, metrics), written before any work, with one
  line per run in ``runs``; a run whose model, score config, dtype, prompts, seeds, metrics,
  ``--save-videos`` or package versions differ refuses to use the folder (the batch size, a memory
  knob, may change);
- ``shards/prompt-NNNNN.csv`` and ``.json``: one prompt's rows, written atomically by the rank
  that did it, with the study's key; an interrupted run resumes at the first missing shard;
- ``study.csv``: every shard merged by the main rank once all are complete, sorted by
  (``prompt_index``, ``seed``), and recorded in ``study.json`` (``complete``, ``table_sha256``);
- ``videos/{prompt}-{seed}.mp4`` with ``--save-videos``: VBench's naming, so ``vbench evaluate
  --videos_path DIR/videos`` can score them (its standard mode reads samples 0-4, i.e. seeds 0-4;
  its custom-input mode every file). The study's own metrics are computed on the frames before
  H.264 encoding, VBench's on the decoded file, so the two differ a little.

Many processes: work is split by prompt with Accelerate's ``PartialState().split_between_processes``
(``accelerate launch -m anse_lib study ...`` on GPUs; ``torchrun --nproc_per_node 2 -m anse_lib study``
on CPUs, gloo).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import AnseConfig
from .metrics import VideoMetric
from .provenance import atomic_write_bytes, atomic_write_text, sha256_file
from .rowstats import row_statistics
from .select import _resolve_layers, denoiser, run_probe, scoring_setup, select_noise

#: provenance fields that must agree for two runs to share a folder
KEY_FIELDS = ("model_hash", "pipeline", "score_config", "prompts_sha256", "seeds", "metrics", "pipeline_kwargs",
              "dtype", "save_videos", "versions")
#: AnseConfig fields that change memory, never a score: a resume may change them
MEMORY_ONLY = ("batch_size", "block_rows")
#: weight files fingerprinted for a checkpoint without a manifest
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
#: query rows per layer the baselines read at most (an evenly spaced sample beyond that)
BASELINE_ROWS = 2048


def read_prompts(path: str | Path) -> list[str]:
    """One prompt a line (VBench's ``prompts/*.txt``); blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--prompts {str(path)!r}: no such file (one prompt a line)")
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"--prompts {str(path)!r} holds no prompt (one prompt a line)")
    return prompts


def model_identity(folder: str | Path, edge_bytes: int = 1 << 20) -> str:
    """The model's hash: its manifest's (toy models), else a fingerprint of the folder: every JSON
    file (``model_index.json``, the components' configs) in full, and every weight file by its size
    and the SHA-256 of its first and last ``edge_bytes`` (a full hash of tens of GB would take minutes;
    two fine-tunes of one architecture differ in their weights' bytes, which the edges sample)."""
    from .provenance import model_hash

    folder = Path(folder)
    if (folder / "MANIFEST.json").is_file():
        return model_hash(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = str(path.relative_to(folder))
        if path.suffix == ".json":
            h.update(rel.encode() + path.read_bytes())
        elif path.suffix in WEIGHT_SUFFIXES:
            size = path.stat().st_size
            with path.open("rb") as f:
                head = f.read(edge_bytes)
                f.seek(max(0, size - edge_bytes))
                tail = f.read(edge_bytes)
            h.update(f"{rel}:{size}".encode() + hashlib.sha256(head + tail).digest())
    return h.hexdigest()


def video_name(prompt: str, index: int) -> str:
    """VBench's file name for sample ``index`` of ``prompt``."""
    return f"{prompt}-{index}.mp4"


@dataclass
class Study:
    """What one study run does (see the module docstring); ``key`` is what two runs must share."""

    pipe: object
    prompts: list[str]
    seeds: list[int]
    out: Path
    config: AnseConfig
    metrics: list[VideoMetric]
    provenance: dict
    save_videos: bool = False
    pipe_kwargs: dict = field(default_factory=dict)

    @property
    def key(self) -> dict:
        return {k: self.provenance[k] for k in KEY_FIELDS}

    @property
    def key_sha(self) -> str:
        return hashlib.sha256(json.dumps(self.key, sort_keys=True, default=str).encode()).hexdigest()


def provenance(pipe, model_dir: str | Path, prompts: list[str], seeds: list[int], config: AnseConfig,
               metrics: list[str], command: str, pipe_kwargs: dict | None = None, dtype: str = "float32",
               save_videos: bool = False) -> dict:
    """The study's provenance record (``study.json`` before the table exists).

    ``score_config`` is the config without its memory-only fields (:data:`MEMORY_ONLY`), which a
    resumed run may change; ``config`` is the whole config of the run that made the folder.
    """
    import diffusers
    import transformers

    from . import __version__

    full = config.to_dict()
    return {"command": command, "model_dir": str(model_dir), "model_hash": model_identity(model_dir),
            "pipeline": type(pipe).__name__, "config": full,
            "score_config": {k: v for k, v in full.items() if k not in MEMORY_ONLY},
            "prompts_sha256": hashlib.sha256("\n".join(prompts).encode()).hexdigest(), "prompts": len(prompts),
            "seeds": list(seeds), "metrics": list(metrics), "pipeline_kwargs": dict(pipe_kwargs or {}),
            "dtype": dtype, "save_videos": bool(save_videos),
            "versions": {"anse_lib": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
                         "transformers": transformers.__version__, "python": platform.python_version()},
            "complete": False}


def check_folder(out: Path, key: dict, key_sha: str) -> str:
    """``"new"``, ``"resume"`` or ``"complete"`` for a study folder; raises if it holds another study."""
    meta_path = out / "study.json"
    if not out.exists():
        return "new"
    if not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give a folder")
    if not meta_path.is_file():
        if any(out.iterdir()):
            raise ValueError(f"--out {str(out)!r} exists and is not a study folder (no study.json); give a new folder")
        return "new"
    meta = json.loads(meta_path.read_text())
    if meta.get("key_sha256") != key_sha:
        diff = [k for k in KEY_FIELDS if meta.get(k) != json.loads(json.dumps(key[k], default=str))]
        raise ValueError(f"--out {str(out)!r} holds a study with another {', '.join(diff) or 'setup'}; "
                         "give a new folder (results of two setups are never mixed)")
    return "complete" if meta.get("complete") and (out / "study.csv").is_file() else "resume"


def first_step_baselines(pipe, prompt: str, seeds: list[int], config: AnseConfig, **pipe_kwargs) -> pd.DataFrame:
    """Mean row entropy, collision and kept-mass term per scored layer, one row per seed.

    One probe pass per batch at the config's step and branch, keeping each scored layer's query and
    key; the rows' probabilities are rebuilt per head for at most :data:`BASELINE_ROWS` query rows
    (evenly spaced) and summarised with :func:`~anse_lib.rowstats.row_statistics` (the probe's masks).
    Returns columns ``entropy_XX``, ``collision_XX``, ``kept_mass_XX`` per layer ``XX``.
    """
    model, layer_ids, step, _, score_kwargs, _, score_cfg, probe_kwargs = scoring_setup(pipe, config, pipe_kwargs)
    probe_kwargs = dict(probe_kwargs, row_sample=None, keep_inputs=True)  # the baselines read every row's q and k
    b = config.bansa
    size = config.batch_size or 2  # the kept queries and keys of every scored layer: keep the batch small
    rows = []
    for start in range(0, len(seeds), size):
        batch = seeds[start : start + size]
        probe, call, _ = run_probe(pipe, model, prompt, batch, layer_ids, config.branch, score_cfg, step,
                                   score_kwargs, probe_kwargs)
        stats = {i: {} for i in range(len(batch))}
        for record in (r for r in probe.records if r.call == call and r.sub == 0):
            for i, values in enumerate(_record_baselines(record, b)):
                stats[i].update({f"{name}_{record.layer:02d}": v for name, v in values.items()})
        rows += [{"seed": s, **stats[i]} for i, s in enumerate(batch)]
    return pd.DataFrame(rows)


@torch.no_grad()
def _record_baselines(record, bansa_config) -> list[dict]:
    q, k = record.inputs["query"].float(), record.inputs["key"].float()
    mask, scale = record.inputs["attn_mask"], record.inputs["scale"]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    n = q.shape[-2]
    idx = torch.arange(n) if n <= BASELINE_ROWS else torch.linspace(0, n - 1, BASELINE_ROWS).round().long()
    out = []
    for i in range(q.shape[0]):
        logits = (q[i][:, idx] @ k[i].transpose(-1, -2)) * scale  # (H, R, Nk)
        if mask is not None:
            m = mask[i if mask.shape[0] > 1 else 0]
            m = m[..., idx, :] if m.shape[-2] == n else m
            logits = logits.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else logits + m.float()
        st = row_statistics(logits.softmax(-1), k=bansa_config.num_masks, drop_prob=bansa_config.drop_prob,
                            seed=bansa_config.mask_seed, salt=record.layer, rows=idx)
        out.append({"entropy": float(st["entropy"].mean()), "collision": float(st["collision"].mean()),
                    "kept_mass": float(st["kept_mass_term"].mean())})
    return out


def prompt_rows(study: Study, prompt_index: int) -> list[dict]:
    """One prompt's rows: scores, baselines, then each seed's video and its metrics."""
    pipe, prompt, seeds, config = study.pipe, study.prompts[prompt_index], study.seeds, study.config
    every = select_noise(pipe, prompt, config.replace(depth=None, layers=None), seeds=seeds, **study.pipe_kwargs)
    chosen = _resolve_layers(denoiser(pipe), config.depth, config.layers, config.attention)
    per_layer = torch.tensor(every.scores[[f"layer_{i:02d}" for i in chosen]].to_numpy(), dtype=torch.float32)
    table = every.scores[["seed"] + [c for c in every.scores.columns if c.startswith("layer_")]].copy()
    table.insert(1, "bansa", per_layer.mean(1).numpy())  # as select_noise(config) averages its layers
    base = first_step_baselines(pipe, prompt, seeds, config, **study.pipe_kwargs)
    for name in ("entropy", "collision", "kept_mass"):
        table[name] = base[[f"{name}_{i:02d}" for i in chosen]].mean(axis=1).to_numpy()
    table = pd.concat([table, base.drop(columns="seed")], axis=1)
    table.insert(0, "prompt", prompt)
    table.insert(0, "prompt_index", prompt_index)
    rows = table.to_dict("records")
    for row in rows:
        frames = pipe(prompt, generator=torch.Generator("cpu").manual_seed(int(row["seed"])), output_type="np",
                      **study.pipe_kwargs).frames[0]
        frames = np.asarray(frames, dtype=np.float32)
        for metric in study.metrics:
            row.update(metric(frames, prompt))
        if study.save_videos:
            write_video(study.out / "videos" / video_name(prompt, int(row["seed"])), frames)
    return rows


def write_video(path: Path, frames: np.ndarray, fps: int = 8) -> None:
    """An mp4 (H.264 through imageio's ffmpeg plugin), written atomically."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")  # per process: ranks never share one
    uint8 = (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)
    with imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1,
                            ffmpeg_log_level="error") as writer:
        for frame in uint8:
            writer.append_data(frame)
    tmp.replace(path)


def _shard(out: Path, prompt_index: int) -> tuple[Path, Path]:
    base = out / "shards" / f"prompt-{prompt_index:05d}"
    return base.with_suffix(".csv"), base.with_suffix(".json")


def shard_done(study: Study, prompt_index: int) -> bool:
    table, meta = _shard(study.out, prompt_index)
    if not (table.is_file() and meta.is_file()):
        return False
    info = json.loads(meta.read_text())
    return info.get("key_sha256") == study.key_sha and info.get("table_sha256") == sha256_file(table)


def write_shard(study: Study, prompt_index: int, rows: list[dict], rank: int) -> None:
    table, meta = _shard(study.out, prompt_index)
    table.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    pd.DataFrame(rows).to_csv(buf, index=False, float_format="%.9g")
    atomic_write_bytes(table, buf.getvalue().encode())
    atomic_write_text(meta, json.dumps({"key_sha256": study.key_sha, "rank": rank, "rows": len(rows),
                                        "table_sha256": sha256_file(table)}) + "\n")


def merge(study: Study) -> pd.DataFrame:
    """Every shard into ``study.csv`` (all must be complete and carry the study's key)."""
    missing = [i for i in range(len(study.prompts)) if not shard_done(study, i)]
    if missing:
        raise RuntimeError(f"{len(missing)} shards missing or from another setup (first: prompt {missing[0]})")
    table = pd.concat([pd.read_csv(_shard(study.out, i)[0]) for i in range(len(study.prompts))], ignore_index=True)
    table = table.sort_values(["prompt_index", "seed"], kind="stable").reset_index(drop=True)
    buf = io.StringIO()
    table.to_csv(buf, index=False, float_format="%.9g")
    atomic_write_bytes(study.out / "study.csv", buf.getvalue().encode())
    meta = json.loads((study.out / "study.json").read_text())  # the record of the run that made the folder
    meta.update(complete=True, rows=len(table), table_sha256=sha256_file(study.out / "study.csv"))
    atomic_write_text(study.out / "study.json", json.dumps(meta, indent=1, default=str) + "\n")
    return table


def _record_run(study: Study, status: str, processes: int) -> None:
    """``study.json``: the provenance of the run that made the folder, and one line per run after it."""
    path = study.out / "study.json"
    run = {"command": study.provenance["command"], "config": study.provenance["config"], "processes": processes,
           "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    if status == "new":
        study.out.mkdir(parents=True, exist_ok=True)
        meta = dict(study.provenance, key_sha256=study.key_sha, runs=[run])
    else:
        meta = json.loads(path.read_text())
        meta["runs"] = [*meta.get("runs", []), run]
    atomic_write_text(path, json.dumps(meta, indent=1, default=str) + "\n")


def run_study(study: Study, state=None, progress: bool = True, out=print,
              poll_seconds: float = 2.0) -> pd.DataFrame | None:
    """Run (or resume) a study; returns the merged table on the main process, ``None`` on the others.

    Args:
        study: what to run (:class:`Study`).
        state: an Accelerate ``PartialState`` (default: a new one; one process unless launched
            by ``accelerate launch`` or ``torchrun``).
        progress: a progress bar per rank.
        poll_seconds: how often the main process looks for the other ranks' shards once its own
            are done (it merges when every shard is there; the others exit after their work).

    Examples:
        >>> # python -m anse_lib study --model toy --prompts prompts.txt --seeds 10 --out runs/study
        >>> # torchrun --nproc_per_node 2 -m anse_lib study ...   (the same table, split by prompt)
    """
    from accelerate import PartialState
    from tqdm.auto import tqdm

    state = state or PartialState(cpu=True)
    status = check_folder(study.out, study.key, study.key_sha)  # every rank checks before anyone writes
    state.wait_for_everyone()
    if status == "complete":
        if state.is_main_process:
            out(f"{study.out}/study.csv is complete ({study.provenance['prompts']} prompts); nothing to do")
            return pd.read_csv(study.out / "study.csv")
        return None
    if state.is_main_process:
        _record_run(study, status, state.num_processes)
    todo = [i for i in range(len(study.prompts)) if not shard_done(study, i)]
    state.wait_for_everyone()
    with state.split_between_processes(todo) as mine:
        bar = tqdm(mine, desc=f"rank {state.process_index}", position=state.process_index, disable=not progress,
                   unit="prompt")
        for i in bar:
            write_shard(study, i, prompt_rows(study, i), state.process_index)
    if not state.is_main_process:
        return None  # no barrier at the end: a rank with one prompt more must not time out the others
    while not all(shard_done(study, i) for i in range(len(study.prompts))):
        time.sleep(poll_seconds)
    table = merge(study)
    out(f"wrote {study.out / 'study.csv'}: {len(table)} rows ({len(study.prompts)} prompts x {len(study.seeds)} seeds)")
    return table
