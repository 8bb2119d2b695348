"""Train the miniature CogVideoX on rendered videos.

    python -m anse_lib.toyworld.train --out runs/toy --steps 12000
    python -m anse_lib.toyworld.train --out runs/toy --export data/toy_model
    python -m anse_lib.toyworld.train --promote data/toy_model_next   # staged -> shipped

Resumable: the run folder holds the latest checkpoint (written atomically every
``--ckpt-every`` steps) and the training curve; running the same command again continues
where it stopped. Deterministic given ``--seed``: the batch and the noise of step ``s``
are drawn from generators seeded by ``(seed, s)``, so an interrupted and resumed run sees
exactly the data of an uninterrupted one.

Recipe: v-prediction on a zero-terminal-SNR DDIM schedule (``--schedule sd``: epsilon
prediction on Stable Diffusion 1.5's schedule, see ``model.SCHEDULES``), AdamW with linear warm-up,
bf16 autocast, an EMA of the weights (exported), and condition dropout (the empty prompt)
for classifier-free guidance. ``--decay-steps N`` cools the learning rate linearly to zero
over the run's last N steps.

``--timestep-bias-strategy later`` draws the noisiest ``--timestep-bias-portion`` of the
timesteps ``--timestep-bias-multiplier`` times as often (the option of diffusers'
``train_text_to_image_sdxl.py``, same names and meaning). Where the objects are, and how
they move, is decided in the noisiest steps; a uniform draw visits them rarely.

Architecture: ``--resolution``, ``--patch-size`` and ``--num-layers`` set the transformer's
frame size, patch size and depth; ``--positions rope`` swaps CogVideoX-2B's sin-cos
position table for CogVideoX-5B's 3D rotary embedding; ``--text-layers`` sets the text
encoder's depth (0: each text token is its word's embedding alone). Defaults:
``model.TRANSFORMER_CONFIG`` and ``model.TEXT_ENCODER_CONFIG`` (32x32, patch 4, 6 layers,
a 2-layer text encoder: the first shipped model's). The shipped model's own flags are the
command in its manifest: 16x16, patch 2, 4 layers, ``--text-layers 0``, and half of all
timestep draws among the noisiest 5 %, the recipe under which it learned the motion word.

``--autocast none`` trains in float32: on a CPU without native bf16 (no AVX-512 BF16 /
AMX) autocast is emulated and about 10x slower than float32. ``--init-from DIR`` continues
from an exported pipeline folder (its hash is checked): the step counter, the data stream
and the training curve carry on from that model's ``trained_steps``; the optimiser starts
fresh, so the warm-up is repeated.
"""
from __future__ import annotations

import argparse
import copy
import csv
import datetime as _dt
import io
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.profiler import record_function
from tqdm.auto import tqdm

from ..provenance import (
    MANIFEST_NAME,
    atomic_write_bytes,
    atomic_write_text,
    model_hash,
    read_manifest,
    repo_relative,
    save_manifest,
    verify_manifest,
    write_manifest,
)
from .model import (
    SCHEDULES,
    TEXT_ENCODER_CONFIG,
    TRANSFORMER_CONFIG,
    build_components,
    denoiser_output,
    rotary_embeddings,
)
from .pipeline import DEFAULT_MODEL_DIR, ToyVideoPipeline, load_toy_pipeline
from .render import RESOLUTION, render
from .world import make_split, sample_prompts

CKPT_NAME = "checkpoint.pt"
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "none": None}
TIMESTEP_BIAS_STRATEGIES = ("none", "later", "earlier")
#: Where the transformer gets token positions: CogVideoX-2B's sin-cos embedding added to the
#: video tokens, or CogVideoX-5B's 3D rotary embedding applied to queries and keys.
POSITIONS = ("sincos", "rope")
CURVE_NAME = "training_curve.csv"
#: The folder a recorded training command exports to (its ``--export`` argument).
EXPORT_ARG = re.compile(r"--export (\S+)")


@dataclass
class TrainConfig:
    steps: int = 12000
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 500
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    cond_dropout: float = 0.1
    seed: int = 0
    split_seed: int = 0
    held_out_fraction: float = 0.2
    autocast: str = "bf16"
    init_from: str = ""
    timestep_bias_strategy: str = "none"
    timestep_bias_portion: float = 0.25
    timestep_bias_multiplier: float = 1.0
    decay_steps: int = 0
    resolution: int = RESOLUTION
    patch_size: int = TRANSFORMER_CONFIG["patch_size"]
    num_layers: int = TRANSFORMER_CONFIG["num_layers"]
    text_layers: int = TEXT_ENCODER_CONFIG["num_layers"]
    positions: str = "sincos"
    schedule: str = "zero_snr"

    def transformer_config(self) -> dict:
        """The transformer's config: the default (``model.TRANSFORMER_CONFIG``) with this
        run's frame size, patch size, depth and kind of position embedding."""
        return dict(TRANSFORMER_CONFIG, sample_height=self.resolution, sample_width=self.resolution,
                    patch_size=self.patch_size, num_layers=self.num_layers,
                    use_rotary_positional_embeddings=self.positions == "rope")

    def text_encoder_config(self) -> dict:
        """The text encoder's config: the default (``model.TEXT_ENCODER_CONFIG``) with this run's number of
        encoder layers."""
        return dict(TEXT_ENCODER_CONFIG, num_layers=self.text_layers)

    def validate(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if not 0 <= self.cond_dropout < 1:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast must be one of {sorted(AUTOCAST_DTYPES)}, got {self.autocast!r}")
        if self.decay_steps < 0:
            raise ValueError(f"decay_steps must be >= 0, got {self.decay_steps}")
        if self.timestep_bias_strategy not in TIMESTEP_BIAS_STRATEGIES:
            raise ValueError(f"timestep_bias_strategy must be one of {TIMESTEP_BIAS_STRATEGIES}, "
                             f"got {self.timestep_bias_strategy!r}")
        if not 0 < self.timestep_bias_portion <= 1:
            raise ValueError(f"timestep_bias_portion must be in (0, 1], got {self.timestep_bias_portion}")
        if self.resolution < 16 or self.resolution % 16 or self.patch_size < 1 or self.resolution % self.patch_size:
            raise ValueError(f"resolution must be a multiple of 16 (the renderer's unit) and of patch_size >= 1, "
                             f"got resolution={self.resolution}, patch_size={self.patch_size}")
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {self.positions!r}")
        if self.text_layers < 0:
            raise ValueError(f"text_layers must be >= 0 (0: no text encoder layers), got {self.text_layers}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.timestep_bias_multiplier <= 0:
            raise ValueError(f"timestep_bias_multiplier must be > 0, got {self.timestep_bias_multiplier}")


def timestep_weights(cfg: TrainConfig, num_timesteps: int) -> torch.Tensor:
    """Relative probability of drawing each training timestep, shape ``(num_timesteps,)``.

    Uniform, except that with strategy "later" ("earlier") the last (first)
    ``timestep_bias_portion`` of the timesteps weigh ``timestep_bias_multiplier``; high
    timesteps are the noisy ones.
    """
    weights = torch.ones(num_timesteps)
    n = int(cfg.timestep_bias_portion * num_timesteps)
    if cfg.timestep_bias_strategy == "later" and n:
        weights[-n:] *= cfg.timestep_bias_multiplier
    elif cfg.timestep_bias_strategy == "earlier" and n:
        weights[:n] *= cfg.timestep_bias_multiplier
    return weights


def make_batch(step: int, cfg: TrainConfig, split) -> tuple[list[str], torch.Tensor]:
    """Prompts (with condition dropout applied) and videos ``(B, F, 3, H, W)`` of one step."""
    rng = np.random.default_rng([cfg.seed, step])
    specs = sample_prompts(cfg.batch_size, rng, split=split, held_out=False)
    video = render(specs, rng, resolution=cfg.resolution).video
    prompts = ["" if rng.random() < cfg.cond_dropout else s.text for s in specs]
    return prompts, video


#: Timestep bands of :func:`evaluation_loss`: the noisiest 5 % (where layout and motion are
#: decided), the rest of the upper half, and the lower half (where detail such as shape is).
EVAL_BANDS = {"t 950-999": (950, 1000), "t 500-949": (500, 950), "t 0-499": (0, 500)}


def training_target(scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the model is trained to output for ``x0`` noised with ``noise`` to ``t``, by the
    scheduler's ``prediction_type``: the velocity (``v_prediction``) or the noise (``epsilon``)."""
    kind = scheduler.config.prediction_type
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    if kind == "epsilon":
        return noise
    raise ValueError(f"the toy model trains a v- or epsilon-prediction; the scheduler's prediction_type is {kind!r}")


def prediction_loss(transformer, text_encoder, tokenizer, scheduler, prompts: list[str], x0: torch.Tensor,
                    noise: torch.Tensor, t: torch.Tensor, image_rotary_emb=None) -> torch.Tensor:
    """The training objective: MSE between the model's output and its target (a scalar tensor).

    ``x0`` and ``noise`` are ``(B, F, C, H, W)`` (pixels in [-1, 1]), ``t`` ``(B,)`` integer
    timesteps, one prompt per video. ``x0`` is noised to ``t`` by ``scheduler.add_noise``; the
    target is :func:`training_target` (the velocity for the shipped zero-SNR model, the noise
    for the SD-schedule twin); the output comes from
    :func:`~anse_lib.toyworld.model.denoiser_output` and is compared in float32.
    """
    target = training_target(scheduler, x0, noise, t)
    noisy = scheduler.add_noise(x0, noise, t)
    pred = denoiser_output(transformer, text_encoder, tokenizer, noisy, t, prompts, image_rotary_emb)
    return torch.nn.functional.mse_loss(pred.float(), target)


@torch.no_grad()
def evaluation_loss(pipe, split, batches: int = 8, batch_size: int = 16, seed: int = 10**6,
                    bands: dict = EVAL_BANDS) -> dict[str, float]:
    """The training loss (MSE of :func:`prediction_loss`) of an exported model on fixed data, per timestep band.

    The training loss a run logs depends on its timestep weighting, so runs with different
    weightings cannot be compared by it; this one can. Training-split prompts (no condition
    dropout) and their renders come from generators seeded by ``(seed, batch)``, timesteps
    uniformly within each band, so every model sees the same videos, noise and timesteps.

    Args:
        pipe: a ``ToyVideoPipeline`` (its transformer, text encoder and scheduler).
        split: the model's ``WorldSplit`` (training prompts are drawn outside its held-out set).
        batches, batch_size: ``batches x batch_size`` videos per band.
        bands: ``{name: (low, high)}`` timestep ranges, ``low <= t < high``.

    Returns:
        ``{band name: mean loss}`` and ``"uniform"``: the mean over the bands weighted by their
        widths (the loss under uniformly drawn timesteps).
    """
    res = pipe.transformer.config.sample_height
    rotary = rotary_embeddings(pipe.transformer)
    out = {}
    for name, (low, high) in bands.items():
        losses = []
        for b in range(batches):
            rng = np.random.default_rng([seed, b])
            specs = sample_prompts(batch_size, rng, split=split, held_out=False)
            x0 = render(specs, rng, resolution=res).video
            gen = torch.Generator().manual_seed(seed + b)
            noise = torch.randn(x0.shape, generator=gen)
            t = torch.randint(low, high, (batch_size,), generator=gen)
            losses.append(prediction_loss(pipe.transformer, pipe.text_encoder, pipe.tokenizer, pipe.scheduler,
                                            [s.text for s in specs], x0, noise, t, rotary).item())
        out[name] = float(np.mean(losses))
    width = {name: high - low for name, (low, high) in bands.items()}
    out["uniform"] = float(sum(out[n] * width[n] for n in bands) / sum(width.values()))
    return out


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path):
        cfg.validate()
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.split = make_split(cfg.held_out_fraction, cfg.split_seed)
        comps = build_components(seed=cfg.seed, transformer_config=cfg.transformer_config(),
                                 text_encoder_config=cfg.text_encoder_config(), schedule=cfg.schedule)
        self.tokenizer, self.text_encoder = comps["tokenizer"], comps["text_encoder"]
        self.transformer, self.scheduler = comps["transformer"], comps["scheduler"]
        self.modules = torch.nn.ModuleDict({"transformer": self.transformer, "text_encoder": self.text_encoder})
        self.rotary_emb = rotary_embeddings(self.transformer)
        self.modules.train()
        self.ema = copy.deepcopy(self.modules).eval().requires_grad_(False)
        self.timestep_weights = timestep_weights(cfg, self.scheduler.config.num_train_timesteps)
        self.opt = torch.optim.AdamW(self.modules.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step = 0
        self.curve: list[dict] = []
        self.base_step = 0  # where this run's optimiser (and warm-up) started
        self.init_manifest: dict | None = None
        if cfg.init_from:
            self._init_from(Path(cfg.init_from))
        self._load_if_present()

    def _init_from(self, folder: Path):
        """Start from the weights of an exported pipeline folder (hash-checked)."""
        pipe = load_toy_pipeline(folder, verify=True)
        self.init_manifest = read_manifest(folder)
        wanted = self.cfg.transformer_config()
        have = {k: pipe.transformer.config[k] for k in ("sample_height", "patch_size", "num_layers",
                                                      "use_rotary_positional_embeddings")}
        want = {k: wanted[k] for k in have}
        have["text_layers"], want["text_layers"] = pipe.text_encoder.config.num_layers, self.cfg.text_layers
        if have != want:
            raise ValueError(f"{folder} has architecture {have}, but this run asks for {want} "
                             "(--resolution, --patch-size, --num-layers, --positions, --text-layers "
                             "must match the model trained on from)")
        weights = {"transformer": pipe.transformer.state_dict(), "text_encoder": pipe.text_encoder.state_dict()}
        for name, module in self.modules.items():
            module.load_state_dict(weights[name])
            self.ema[name].load_state_dict(weights[name])
        self.base_step = self.step = int(self.init_manifest["trained_steps"])
        with open(folder / CURVE_NAME, newline="") as f:
            self.curve = [{k: float(v) if k != "step" else int(v) for k, v in row.items()} for row in csv.DictReader(f)]
        if self.cfg.steps <= self.step:
            raise ValueError(f"--steps counts from the start of {folder}'s training, which already has "
                             f"{self.step} steps; got steps={self.cfg.steps}, need more than {self.step}")

    # --- persistence -----------------------------------------------------------------------
    def _ckpt_path(self) -> Path:
        return self.run_dir / CKPT_NAME

    def _load_if_present(self):
        path = self._ckpt_path()
        if not path.exists():
            return
        state = torch.load(path, map_location="cpu", weights_only=False)
        saved = TrainConfig(**state["config"])
        if asdict(saved) | {"steps": 0} != asdict(self.cfg) | {"steps": 0}:
            raise ValueError(
                f"{path} was trained with config {asdict(saved)}, which differs from {asdict(self.cfg)} "
                "(only --steps may change on resume). Use another --out folder."
            )
        self.modules.load_state_dict(state["modules"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        self.step = state["step"]
        self.curve = state["curve"]
        self.base_step = state.get("base_step", 0)

    def save(self):
        buf = io.BytesIO()
        torch.save(
            {"modules": self.modules.state_dict(), "ema": self.ema.state_dict(), "optimizer": self.opt.state_dict(),
             "step": self.step, "curve": self.curve, "config": asdict(self.cfg),
             "base_step": self.base_step},
            buf,
        )
        atomic_write_bytes(self._ckpt_path(), buf.getvalue())
        atomic_write_text(self.run_dir / CURVE_NAME, curve_csv(self.curve))

    # --- optimisation -------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step``: linear warm-up from this run's first step, and with
        ``decay_steps`` a linear cool-down to zero over the run's last ``decay_steps`` steps."""
        lr = self.cfg.lr * min(1.0, (step - self.base_step + 1) / self.cfg.warmup_steps)
        if self.cfg.decay_steps:
            lr *= min(1.0, (self.cfg.steps - step) / self.cfg.decay_steps)
        return lr

    def train_step(self) -> float:
        """One optimisation step; returns its loss. Its phases are named for ``torch.profiler``:
        ``data``, ``forward``, ``backward``, ``clip and optimiser``, ``ema``."""
        cfg = self.cfg
        with record_function("data"):
            prompts, x0 = make_batch(self.step, cfg, self.split)
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)
            noise = torch.randn(x0.shape, generator=gen)
            if cfg.timestep_bias_strategy == "none":
                t = torch.randint(0, self.scheduler.config.num_train_timesteps, (x0.shape[0],), generator=gen)
            else:
                t = torch.multinomial(self.timestep_weights, x0.shape[0], replacement=True, generator=gen)
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step)
        dtype = AUTOCAST_DTYPES[cfg.autocast]
        with record_function("forward"):
            with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                loss = prediction_loss(self.transformer, self.text_encoder, self.tokenizer, self.scheduler,
                                         prompts, x0, noise, t, self.rotary_emb)
        with record_function("backward"):
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("clip and optimiser"):
            torch.nn.utils.clip_grad_norm_(self.modules.parameters(), 1.0)
            self.opt.step()
        with record_function("ema"), torch.no_grad():
            decay = min(cfg.ema_decay, (1 + self.step) / (10 + self.step))
            for e, p in zip(self.ema.parameters(), self.modules.parameters()):
                e.lerp_(p, 1 - decay)
        self.step += 1
        return loss.item()

    def run(self, ckpt_every: int = 250, log_every: int = 50, progress: bool = True):
        start_step, t0 = self.step, time.time()
        window = []
        bar = tqdm(total=self.cfg.steps, initial=self.step, disable=not progress, desc="train")
        while self.step < self.cfg.steps:
            window.append(self.train_step())
            bar.update(1)
            if self.step % log_every == 0:
                self.curve.append({"step": self.step, "loss": float(np.mean(window)), "lr": self.lr_at(self.step - 1),
                                   "seconds_per_step": (time.time() - t0) / max(1, self.step - start_step)})
                bar.set_postfix(loss=f"{self.curve[-1]['loss']:.4f}")
                window = []
            if self.step % ckpt_every == 0 or self.step == self.cfg.steps:
                self.save()
        bar.close()

    # --- export ---------------------------------------------------------------------------------
    def export(self, out_dir: Path, command: str):
        """Write the EMA weights as a ``ToyVideoPipeline`` folder with a SHA-256 manifest."""
        out_dir = Path(out_dir)
        ema = copy.deepcopy(self.ema)
        pipe = ToyVideoPipeline(tokenizer=self.tokenizer, text_encoder=ema["text_encoder"],
                                transformer=ema["transformer"], scheduler=self.scheduler)
        tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
        try:
            pipe.save_pretrained(tmp, safe_serialization=True)
            (tmp / "split.json").write_text(self.split.to_json() + "\n")
            (tmp / CURVE_NAME).write_text(curve_csv(self.curve))
            extra = {"trained_steps": self.step}
            if self.init_manifest is not None:
                extra["init_from"] = {k: self.init_manifest[k] for k in ("command", "files", "trained_steps")
                                      if k in self.init_manifest}
            config = {"train": asdict(self.cfg), "transformer": self.cfg.transformer_config(),
                      "text_encoder": self.cfg.text_encoder_config()}
            write_manifest(tmp, command=command, config=config,
                           extra=extra)
            if out_dir.exists():
                shutil.rmtree(out_dir)
            os.replace(tmp, out_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)


def curve_csv(curve: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["step", "loss", "lr", "seconds_per_step"])
    w.writeheader()
    w.writerows(curve)
    return buf.getvalue()


def reproduce_command(cfg: TrainConfig, out: str, export: str, step: int, init_manifest: dict | None = None) -> str:
    """The shell command that reproduces an exported model from scratch.

    It names ``--steps``, ``--seed`` and every setting that differs from the default. A
    model trained on from another (``init_from``) gets that model's command first, joined
    by ``&&``, and its ``--init-from`` names the folder that command exports to, so the
    chain replays as written whatever the folder was called when it was trained.
    """
    defaults = TrainConfig()
    settings = asdict(cfg)
    previous = init_manifest["command"] if init_manifest is not None else None
    if previous is not None:
        exports = EXPORT_ARG.findall(previous)
        if exports:
            settings["init_from"] = exports[-1]
    command = f"python -m anse_lib.toyworld.train --out {out} --steps {step} --seed {cfg.seed}"
    for name, value in settings.items():
        if name not in ("steps", "seed") and value != getattr(defaults, name):
            command += f" --{name.replace('_', '-')} {value}"
    command += f" --export {export}"
    return command if previous is None else f"{previous} && {command}"


def promote(staged: str | os.PathLike, target: str | os.PathLike = DEFAULT_MODEL_DIR) -> dict:
    """Move an exported model folder ``staged`` to ``target``, replacing what is there.

    The files are checked against the manifest first. The recorded command's last
    ``--export`` is rewritten to name ``target``, so the chain still replays as written, and
    a ``promoted`` field records the move. The model hash (the manifest's file table) does
    not change. Returns the new manifest.
    """
    staged, target = Path(staged), Path(target)
    manifest = verify_manifest(staged)
    before = model_hash(staged)
    exports = list(EXPORT_ARG.finditer(manifest["command"]))
    if not exports:
        raise ValueError(f"the command in {staged / MANIFEST_NAME} has no --export to rewrite: {manifest['command']!r}")
    last = exports[-1]
    command = manifest["command"]
    shown = repo_relative(target)  # the recorded commands run from the repository root
    manifest["command"] = command[: last.start(1)] + shown + command[last.end(1):]
    today = _dt.date.today().isoformat()
    manifest["promoted"] = f"exported to {last.group(1)} (staged), then moved to {shown} on {today}"
    original = (staged / MANIFEST_NAME).read_text()
    save_manifest(staged, manifest)
    old = None
    try:
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
            os.replace(target, old / target.name)
        os.replace(staged, target)
    except BaseException:  # leave both folders as they were
        if old is not None and (old / target.name).exists():
            os.replace(old / target.name, target)
        atomic_write_text(staged / MANIFEST_NAME, original)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old)
    assert model_hash(target) == before
    return manifest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/toy", help="run folder (checkpoint + curve); resumes if present")
    ap.add_argument("--export", default=None, metavar="DIR",
                    help=f"after training, write the EMA pipeline to DIR (the shipped one is {DEFAULT_MODEL_DIR})")
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--export-only", action="store_true",
                    help="export the run's latest checkpoint without training further (needs --export)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--promote", default=None, metavar="DIR",
                    help="move the exported model DIR to --export (default: the shipped folder), rewriting "
                         "its recorded command; trains nothing")
    for name, f in TrainConfig.__dataclass_fields__.items():
        ap.add_argument("--" + name.replace("_", "-"), type=type(f.default), default=f.default)
    args = ap.parse_args(argv)
    if args.promote:
        target = args.export or DEFAULT_MODEL_DIR
        manifest = promote(args.promote, target)
        print(json.dumps({"promoted": args.promote, "to": str(target), "trained_steps": manifest.get("trained_steps")}))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(**{k: getattr(args, k) for k in TrainConfig.__dataclass_fields__})
    if args.export_only and not args.export:
        ap.error("--export-only needs --export DIR")
    if args.export_only:
        if not (Path(args.out) / CKPT_NAME).exists():
            ap.error(f"no checkpoint in {args.out} to export")
        trainer = Trainer(cfg, Path(args.out))
        trainer.cfg.steps = trainer.step  # what was actually trained
    else:
        trainer = Trainer(cfg, Path(args.out))
        trainer.run(ckpt_every=args.ckpt_every, log_every=args.log_every)
    if args.export:
        command = reproduce_command(cfg, args.out, args.export, trainer.step, trainer.init_manifest)
        trainer.export(Path(args.export), command=command)
        print(json.dumps({"exported": args.export, "step": trainer.step}))


if __name__ == "__main__":
    main()
