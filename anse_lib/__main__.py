"""Command line.

    python -m anse_lib demo [--model data/toy_model_sd_schedule]
    python -m anse_lib select --prompt "a big red circle moving left" --candidates 10
    python -m anse_lib select --prompt "..." --model /path/to/local/diffusers/checkpoint --device cuda --dtype bfloat16
    python -m anse_lib select --prompt "..." --config anse_config.json   # an AnseConfig saved with save_pretrained
    python -m anse_lib study --model toy --prompts prompts.txt --seeds 10 --out runs/study
    torchrun --nproc_per_node 2 -m anse_lib study ...       # the same table, split by prompt over two processes

A bad argument, prompt or setting ends with one line ``error: ...`` on stderr and exit
status 2, not a traceback. ``demo --model`` takes toy model folders only: the demo scores
its videos with ToyBench, which only understands toy-world prompts.
"""
from __future__ import annotations

import argparse
import sys


def _layers(text: str | None):
    """'6' -> depth 6 (layers 1..6); '0,2,5' -> those indices; 'all' -> all layers; None -> the default."""
    if text is None or text == "all":
        return text
    try:
        return [int(t) for t in text.split(",")] if "," in text else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--layers takes a depth d, comma-separated indices or 'all', got {text!r}") from None


DTYPES = ("float32", "bfloat16", "float16")


def _check_device(device: str):
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available here (torch.cuda.is_available() is False)")


def _load(model: str | None, device: str = "cpu", dtype: str = "float32", toy_only: bool = False):
    """The pipeline of ``--model`` (default: the shipped toy model) on ``device`` in ``dtype``."""
    from pathlib import Path

    import torch

    from .toyworld.pipeline import DEFAULT_MODEL_DIR, load_toy_pipeline

    _check_device(device)
    torch_dtype = getattr(torch, dtype)
    if model is not None and not Path(model).is_dir():
        raise ValueError(f"--model {model!r} is not a folder; give a local diffusers checkpoint "
                         "(nothing is downloaded)")
    folder = Path(model) if model is not None else DEFAULT_MODEL_DIR
    index = folder / "model_index.json"
    is_toy = index.is_file() and '"ToyVideoPipeline"' in index.read_text()
    if toy_only and not is_toy:
        raise ValueError(f"--model {model!r} is not a toy model folder (the demo scores videos with ToyBench, "
                         "which only reads toy-world prompts); use select for other checkpoints")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # loading bars: the commands print one line per step instead
    transformers_logging.disable_progress_bar()
    if is_toy:
        pipe = load_toy_pipeline(folder)
    else:
        from diffusers import DiffusionPipeline

        try:
            pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True, torch_dtype=torch_dtype)
        except Exception as err:  # noqa: BLE001 -- diffusers raises OSError, ValueError, KeyError, ...
            raise ValueError(f"--model {model!r} is not a diffusers pipeline folder this version loads "
                             f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
        pipe.set_progress_bar_config(disable=True)
    model = getattr(pipe, "transformer", None)
    model = getattr(pipe, "unet", None) if model is None else model
    if device != "cpu" or (model is not None and model.dtype != torch_dtype):  # cast only when asked to
        pipe = pipe.to(device=device, dtype=torch_dtype)
    return pipe


def _config(args, pipe):
    """The selection's AnseConfig: ``--config`` (a JSON file or a folder with anse_config.json),
    or the model folder's calibrated depth, with the flags given on top."""
    from pathlib import Path

    from .config import CONFIG_NAME, AnseConfig
    from .demo import resolve_config

    settings = dict(num_candidates=args.candidates, num_masks=args.k, drop_prob=args.drop_prob,
                    batch_size=getattr(args, "batch_size", None))
    settings = {k: v for k, v in settings.items() if v is not None}
    if args.config is None:
        return resolve_config(pipe, args.layers, **settings)
    path = Path(args.config)
    folder = path if path.is_dir() else path.parent
    if path.is_file() and path.name != CONFIG_NAME:
        import json

        base = AnseConfig.from_dict(json.loads(path.read_text()))
    else:
        base = AnseConfig.from_pretrained(folder)
    given = dict(settings)
    if args.layers is not None:
        layers = None if args.layers == "all" else args.layers
        given.update(depth=layers if isinstance(layers, int) else None,
                     layers=tuple(layers) if isinstance(layers, list) else None)
    print(f"settings from {args.config}")
    return base.replace(**given)


def demo(args) -> int:
    from .demo import run_demo

    pipe = _load(args.model, args.device, args.dtype, toy_only=True)
    print(f"ANSE demo on the toy model in {args.model or 'data/toy_model'}")
    run_demo(pipe, config=_config(args, pipe), **({"folder": args.figures} if args.figures else {}))
    return 0


def select(args) -> int:
    from .demo import select_command

    pipe = _load(args.model, args.device, args.dtype)
    from .toyworld import ToyVideoPipeline, parse_prompt

    if isinstance(pipe, ToyVideoPipeline):
        parse_prompt(args.prompt)  # an unknown word is an error before any work is done
    config = _config(args, pipe)
    select_command(pipe, args.prompt, config, seed=args.seed, out_name=args.out, steps=args.steps,
                   guidance=args.guidance, **({"folder": args.figures} if args.figures else {}))
    return 0


def study(args) -> int:
    import shlex
    from pathlib import Path

    from accelerate import PartialState

    from .metrics import METRICS, build_metrics, check_metrics
    from .probe import model_family
    from .select import denoiser
    from .study import Study, provenance, read_prompts, run_study
    from .toyworld import ToyVideoPipeline, parse_prompt
    from .toyworld.pipeline import DEFAULT_MODEL_DIR

    prompts = read_prompts(args.prompts)  # cheap checks first: nothing loads before they pass
    names = args.metrics.split(",") if args.metrics else []
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    if args.metric_models is not None and not Path(args.metric_models).is_dir():
        raise ValueError(f"--metric-models {args.metric_models!r} is not a folder")
    if args.save_videos:
        twice = sorted({p for p in prompts if prompts.count(p) > 1})
        if twice:
            raise ValueError(f"--save-videos names files by prompt (VBench's naming); prompt {twice[0][:60]!r} "
                             "is in the prompts file more than once")
        bad = [p for p in prompts if "/" in p or len(p.encode()) > 240]
        if bad:
            raise ValueError(f"--save-videos names files by prompt (VBench's naming); prompt {bad[0][:60]!r} "
                             "holds a '/' or is too long for a file name")
    state = PartialState(cpu=args.device == "cpu")
    device = str(state.device) if args.device.startswith("cuda") and state.num_processes > 1 else args.device
    pipe = _load(None if args.model == "toy" else args.model, device, args.dtype)
    model = denoiser(pipe)
    model_family(model)  # raises for a denoiser the probe does not support
    toy = isinstance(pipe, ToyVideoPipeline)
    names = names or (["toybench"] if toy else ["temporal_flickering"])
    folders = check_metrics(names, args.metric_models, toy)
    if toy:
        for p in prompts:
            parse_prompt(p)  # an unknown word is an error before any work
    pipe_kwargs = {k: v for k, v in dict(num_inference_steps=args.steps, guidance_scale=args.guidance,
                                         height=args.height, width=args.width, num_frames=args.num_frames).items()
                   if v is not None}
    if toy and set(pipe_kwargs) - {"num_inference_steps", "guidance_scale"}:
        raise ValueError("--height, --width and --num-frames: the toy model makes 8 frames of 16 x 16 only")
    config = _config(args, pipe)
    if config.rows != "all":
        raise ValueError(f"the study scores every query row (its baselines read all rows); the config's "
                         f"rows={config.rows!r} is not supported here: use rows='all'")
    seeds = list(range(args.seeds))
    model_dir = DEFAULT_MODEL_DIR if args.model == "toy" else Path(args.model)
    command = shlex.join(["python", "-m", "anse_lib", *args.argv])
    record = provenance(pipe, model_dir, prompts, seeds, config, names, command, pipe_kwargs,
                        dtype=args.dtype, save_videos=args.save_videos)
    pipe.set_progress_bar_config(disable=True)
    work = Study(pipe=pipe, prompts=prompts, seeds=seeds, out=Path(args.out), config=config,
                 metrics=build_metrics(folders, device), provenance=record, save_videos=args.save_videos,
                 pipe_kwargs=pipe_kwargs)
    run_study(work, state, progress=not args.no_progress)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``error: ...`` line (exit 2) instead of usage + message."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _positive_int(name):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < 1:
            raise argparse.ArgumentTypeError(f"{name} takes a whole number >= 1, got {text!r}")
        return value
    return parse


def main(argv=None) -> int:
    ap = _Parser(prog="python -m anse_lib", description="ANSE/BANSA workbook tools")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p):
        p.add_argument("--candidates", type=_positive_int("--candidates"), default=None,
                       help="M, number of candidate seeds (default 10, or --config's)")
        p.add_argument("-k", type=int, default=None, help="K, Bernoulli mask samples (default 10, or --config's)")
        p.add_argument("--drop-prob", type=float, default=None,
                       help="probability of dropping an entry (default 0.2, or --config's)")
        p.add_argument("--config", default=None,
                       help="an AnseConfig JSON file, or a folder with anse_config.json (flags given override it)")
        p.add_argument("--device", default="cpu", help="torch device, e.g. cuda or cuda:1 (default cpu)")
        p.add_argument("--dtype", choices=DTYPES, default="float32", help="the pipeline's dtype (default float32)")
        p.add_argument("--layers", type=_layers, default=None,
                       help="depth d, comma-separated layer indices, or 'all' (default: the toy model's calibrated "
                            "d*, all layers for other models)")
        p.add_argument("--figures", default=None, help="folder for the figures (default: figures/)")

    p = sub.add_parser("demo", help="the end-to-end demo on the shipped toy model (or another toy model)")
    common(p)
    p.add_argument("--model", default=None,
                   help="a toy model folder (default data/toy_model; e.g. data/toy_model_sd_schedule, the twin "
                        "trained on Stable Diffusion 1.5's noise schedule)")
    p.set_defaults(func=demo)
    p = sub.add_parser("select", help="score candidate seeds for one prompt and generate the winner")
    common(p)
    p.add_argument("--model", default=None, help="local diffusers checkpoint folder (default: the shipped toy model)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--batch-size", type=_positive_int("--batch-size"), default=2,
                   help="candidates per forward pass (default 2, on a GPU too); memory only, never changes a score")
    p.add_argument("--seed", type=int, default=0, help="seed of the generator drawing the candidate seeds")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the pipeline's)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the pipeline's)")
    p.add_argument("--out", default="select", help="name prefix of the figures written to figures/")
    p.set_defaults(func=select)
    p = sub.add_parser("study", help="scores and video metrics for every (prompt, seed): notebook 05's study on "
                                     "any supported pipeline, on one process or many (torchrun, accelerate launch)")
    p.add_argument("--model", required=True,
                   help="'toy' (the shipped toy model) or a local diffusers checkpoint folder")
    p.add_argument("--prompts", required=True, help="a text file, one prompt a line (VBench's prompts/*.txt work)")
    p.add_argument("--seeds", required=True, type=_positive_int("--seeds"), help="N: seeds 0..N-1 per prompt")
    p.add_argument("--out", required=True, help="the study folder (resumed if it holds the same study)")
    p.add_argument("--metrics", default=None,
                   help="comma-separated, of toybench, clip, subject_consistency, temporal_flickering "
                        "(default: toybench on a toy model, temporal_flickering otherwise)")
    p.add_argument("--metric-models", default=None,
                   help="folder with clip/ and dino/ (models saved with save_pretrained)")
    p.add_argument("--config", default=None, help="an AnseConfig JSON file (depth, K, p, ...), or a folder with one")
    p.add_argument("--layers", type=_layers, default=None,
                   help="depth d, comma-separated layer indices, or 'all' (default: --config's, else the model "
                        "folder's calibrated d*, else all layers)")
    p.add_argument("--device", default="cpu",
                   help="torch device (default cpu; with several processes each takes its own GPU)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="the pipeline's dtype (default float32)")
    p.add_argument("--batch-size", type=_positive_int("--batch-size"), default=2,
                   help="candidates per scoring pass (default 2; memory only, never changes a score)")
    p.add_argument("--save-videos", action="store_true", help="write DIR/videos/{prompt}-{seed}.mp4 (VBench's naming)")
    p.add_argument("--steps", type=_positive_int("--steps"), default=None,
                   help="denoising steps (default: the pipeline's)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the pipeline's)")
    for flag in ("--height", "--width", "--num-frames"):
        p.add_argument(flag, type=_positive_int(flag), default=None, help="the video's size (default: the pipeline's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=study, candidates=None, k=None, drop_prob=None)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        # bad settings (k, drop_prob, layers), an unknown prompt word, a missing checkpoint
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
