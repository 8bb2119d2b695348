"""Where a training step of the toy model spends its time, and what would make it faster.

    python benchmarks/train_step_profile.py            # prints; ~3 min on 2 cores
    python benchmarks/train_step_profile.py --save     # also caches data/sweeps/train_step_profile.*
    python benchmarks/train_step_profile.py --compile  # adds torch.compile (about 70 s to compile)

The shipped model's recipe (the flags in its manifest) in float32, from a fresh
initialisation (the weights do not change the cost). One step = data, forward, backward,
gradient clipping and AdamW, and the EMA update (what each holds: ``PHASES``): first the time of each phase (the named
scopes of ``Trainer.train_step``, total CPU time), then the operators that take it, by
group (self CPU time, so nothing is counted twice; "everything else" holds the element-wise
ops, the optimiser's per-tensor arithmetic, autograd bookkeeping and allocation). Then the
wall time of a step under alternatives, each as a ratio to the default measured in the same
run, in interleaved rounds (with the lowest and highest ratio over the rounds): PyTorch's
math attention instead of its fused CPU kernel, bf16 autocast, a fused
AdamW, and optionally ``torch.compile`` (the first compile takes about a minute; a warm
inductor cache, seconds). Time it on a quiet machine (nothing else running): the numbers
are shares and ratios, but two cores shared with another job make them noisy.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from anse_lib import sweeps
from anse_lib.toyworld import DEFAULT_MODEL_DIR
from anse_lib.toyworld.train import TrainConfig, Trainer

#: Operator groups: the first pattern (substring of the profiler's operator name) that matches wins.
GROUPS = (("attention", ("scaled_dot_product", "flash_attention")),
          ("matrix multiply", ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "convolution")),
          ("GELU", ("aten::gelu",)),
          ("layer norm", ("layer_norm",)),
          ("copies", ("aten::copy_", "aten::cat", "aten::clone")))
OTHER = "everything else"
DEFAULT = "default (fused CPU attention, float32)"
#: The named scopes of ``Trainer.train_step`` and what each holds (recorded with the table).
PHASES = {"data": "the batch's prompts and renders, its noise and timesteps",
          "forward": "noising, tokenizing, the text encoder, the transformer and the loss",
          "backward": "autograd", "clip and optimiser": "gradient clipping and AdamW", "ema": "the EMA update"}

def shipped_config() -> TrainConfig:
    """The shipped model's training recipe (its manifest's ``train`` config), for a fresh run."""
    from anse_lib.provenance import read_manifest
    cfg = dict(read_manifest(DEFAULT_MODEL_DIR)["config"]["train"])
    cfg.update(init_from="", decay_steps=0, autocast="none")
    return TrainConfig(**cfg)


def group_of(name: str) -> str:
    for group, patterns in GROUPS:
        if any(p in name for p in patterns):
            return group
    return OTHER


def profile_step(trainer: Trainer, steps: int) -> tuple[pd.Series, pd.Series]:
    """CPU seconds per step: by phase (scope totals) and by operator group (self times)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.train_step()
    phases, groups = dict.fromkeys(PHASES, 0.0), {}
    for event in prof.key_averages():
        if event.key in phases:
            phases[event.key] += event.cpu_time_total / 1e6
        else:
            groups[group_of(event.key)] = groups.get(group_of(event.key), 0.0) + event.self_cpu_time_total / 1e6
    return pd.Series(phases) / steps, pd.Series(groups) / steps


def step_times(trainer: Trainer, steps: int, context=nullcontext) -> list[float]:
    """Wall seconds of ``steps`` training steps under ``context`` (after one untimed warm-up step)."""
    with context():
        trainer.train_step()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            trainer.train_step()
            times.append(time.perf_counter() - t0)
    return times


def swapped(obj, attr: str, value):
    """A context that sets ``obj.attr = value`` and restores it on exit."""
    @contextmanager
    def context():
        old = getattr(obj, attr)
        setattr(obj, attr, value)
        try:
            yield
        finally:
            setattr(obj, attr, old)
    return context


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per variant and round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the variants")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the transformer")
    ap.add_argument("--save", action="store_true", help="cache the tables in data/sweeps/")
    args = ap.parse_args(argv)
    if args.steps < 2 or args.rounds < 1:
        ap.exit(2, f"error: --steps must be >= 2 and --rounds >= 1, got {args.steps} and {args.rounds}\n")
    torch.set_num_threads(2)
    cfg = shipped_config()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp))
        trainer.train_step()
        phases, groups = profile_step(trainer, 3)
        fused = torch.optim.AdamW(trainer.modules.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        contexts = {DEFAULT: nullcontext, "math attention": lambda: sdpa_kernel(SDPBackend.MATH),
                    "fused AdamW": swapped(trainer, "opt", fused)}
        if args.compile:
            compiled = torch.compile(trainer.transformer.forward)
            with swapped(trainer.transformer, "forward", compiled)():
                t0 = time.perf_counter()
                trainer.train_step()
                compile_s = time.perf_counter() - t0
            contexts[f"torch.compile (compiling took {compile_s:.0f} s)"] = swapped(
                trainer.transformer, "forward", compiled)
        # interleaved rounds, so drift of the machine hits every variant alike
        rounds = {name: [] for name in contexts}
        for _ in range(args.rounds):
            for name, context in contexts.items():
                rounds[name].append(float(np.median(step_times(trainer, args.steps, context))))
        # bf16 autocast is an order of magnitude slower: timed once, on two steps
        rounds["bf16 autocast"] = [float(np.median(step_times(trainer, 2, swapped(trainer.cfg, "autocast", "bf16"))))]
    variants = {name: float(np.median(r)) for name, r in rounds.items()}
    base = variants[DEFAULT]
    by_phase = pd.DataFrame({"seconds per step": phases, "share": phases / phases.sum()})
    shares = pd.DataFrame({"seconds per step": groups, "share": groups / groups.sum()}).sort_values(
        "seconds per step", ascending=False)
    base_rounds = rounds[DEFAULT]
    timing = pd.DataFrame({
        "seconds per step": variants,
        "ratio to default": {k: v / base for k, v in variants.items()},
        # the ratio within each round (same round of the default), lowest and highest
        "lowest round": {k: min(x / b for x, b in zip(r, base_rounds)) for k, r in rounds.items()},
        "highest round": {k: max(x / b for x, b in zip(r, base_rounds)) for k, r in rounds.items()},
    })
    print(f"batch {cfg.batch_size}, {cfg.resolution}x{cfg.resolution}, patch {cfg.patch_size}, "
          f"{cfg.num_layers} layers; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or 'cpu'}")
    print("\nprofiled time per step, by phase (CPU time of each scope):")
    print(by_phase.round(3).to_string())
    print("\nby operator group (self CPU time):")
    print(shares.round(3).to_string())
    print("\nwall time of one step:")
    print(timing.round(3).to_string())
    if args.save:
        rows = [{"table": "phases", "name": k, **v} for k, v in by_phase.to_dict("index").items()]
        rows += [{"table": "operators", "name": k, **v} for k, v in shares.to_dict("index").items()]
        rows += [{"table": "variants", "name": k, **v} for k, v in timing.to_dict("index").items()]
        config = {"train": dict(cfg.__dict__), "steps": args.steps, "rounds": args.rounds,
                  "threads": torch.get_num_threads(), "phases": PHASES,
                  "torch": torch.__version__}
        sweeps.run("train_step_profile", ["measured"], lambda _: rows, config, DEFAULT_MODEL_DIR,
                   command=sweeps.command_line(__file__, argv), progress=False, force=True)  # timings: never reused


if __name__ == "__main__":
    main()
