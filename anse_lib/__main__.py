"""Command line: ``python -m anse_lib demo``."""
from __future__ import annotations

import argparse
import sys


def demo(args) -> int:
    """BANSA on synthetic attention maps: a peaked, a medium and a diffuse map, scored with K masks."""
    import torch

    from .bansa import attention_entropy, bansa_chunked
    from .synthetic import attention_map

    print("ANSE demo: BANSA of synthetic attention maps (4 heads, 256 queries x 256 keys, K=10, drop_prob=0.2)")
    print(f"{'map':>10} {'entropy (nats)':>15} {'BANSA (nats)':>13}")
    for name, temp in [("peaked", 0.2), ("medium", 1.0), ("diffuse", 5.0)]:
        attn = attention_map(256, 256, temperature=temp, heads=4, generator=torch.Generator().manual_seed(0))
        score = bansa_chunked(probs=attn[None], k=10, drop_prob=0.2, seed=0).score.mean().item()
        print(f"{name:>10} {attention_entropy(attn).mean().item():15.4f} {score:13.4f}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m anse_lib", description="ANSE/BANSA workbook tools")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the end-to-end demo").set_defaults(func=demo)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
