"""Command line.

    python -m anse_lib demo
    python -m anse_lib select --prompt "a big red circle moving left" --candidates 10
    python -m anse_lib select --prompt "..." --model /path/to/local/diffusers/checkpoint

A bad argument, prompt or setting ends with one line ``error: ...`` on stderr and exit
status 2, not a traceback. (``demo`` has no ``--model``: it scores its videos with
ToyBench, which only understands toy-world prompts.)
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


def _load(model: str | None):
    from .toyworld.pipeline import DEFAULT_MODEL_DIR, load_toy_pipeline

    if model is None or model == str(DEFAULT_MODEL_DIR):
        return load_toy_pipeline()
    from pathlib import Path

    from diffusers import DiffusionPipeline

    if not Path(model).is_dir():
        raise ValueError(f"--model {model!r} is not a folder; give a local diffusers checkpoint "
                         "(nothing is downloaded)")
    pipe = DiffusionPipeline.from_pretrained(model, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def demo(args) -> int:
    from .demo import run_demo

    pipe = _load(None)
    print("ANSE demo on the shipped toy model")
    run_demo(pipe, num_candidates=args.candidates, k=args.k, drop_prob=args.drop_prob, layers=args.layers,
             **({"folder": args.figures} if args.figures else {}))
    return 0


def select(args) -> int:
    from .demo import select_command

    pipe = _load(args.model)
    from .toyworld import ToyVideoPipeline, parse_prompt

    if isinstance(pipe, ToyVideoPipeline):
        parse_prompt(args.prompt)  # an unknown word is an error before any work is done
    select_command(pipe, args.prompt, num_candidates=args.candidates, k=args.k, drop_prob=args.drop_prob,
                   layers=args.layers, batch_size=args.batch_size, seed=args.seed, out_name=args.out,
                   steps=args.steps, guidance=args.guidance, **({"folder": args.figures} if args.figures else {}))
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
        p.add_argument("--candidates", type=_positive_int("--candidates"), default=10,
                       help="M, number of candidate seeds (default 10)")
        p.add_argument("-k", type=int, default=10, help="K, Bernoulli mask samples (default 10)")
        p.add_argument("--drop-prob", type=float, default=0.2, help="probability of dropping an entry (default 0.2)")
        p.add_argument("--layers", type=_layers, default=None,
                       help="depth d, comma-separated layer indices, or 'all' (default: the toy model's calibrated "
                            "d*, all layers for other models)")
        p.add_argument("--figures", default=None, help="folder for the figures (default: figures/)")

    # no --model: the demo scores videos with ToyBench, which only understands toy-world prompts
    p = sub.add_parser("demo", help="the end-to-end demo on the shipped toy model")
    common(p)
    p.set_defaults(func=demo)
    p = sub.add_parser("select", help="score candidate seeds for one prompt and generate the winner")
    common(p)
    p.add_argument("--model", default=None, help="local diffusers checkpoint folder (default: the shipped toy model)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--batch-size", type=_positive_int("--batch-size"), default=2,
                   help="candidates per forward pass (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generator drawing the candidate seeds")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the pipeline's)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the pipeline's)")
    p.add_argument("--out", default="select", help="name prefix of the figures written to figures/")
    p.set_defaults(func=select)
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        # bad settings (k, drop_prob, layers), an unknown prompt word, a missing checkpoint
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
