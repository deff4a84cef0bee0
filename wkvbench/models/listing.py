"""``wkvbench models``: every network preset, its op, parameter count and tokens at a duration.

docs/spec.md sections 6 and 8. Counts come from the networks themselves (built on the meta
device: no memory, no initialisation), so they include the positional embedding for the duration.
"""

from __future__ import annotations

import argparse
import json

from wkvbench.models.factory import frames_for, op_for, param_count, tokens_for
from wkvbench.presets import PRESETS


def rows(seconds: float) -> list[dict]:
    """One dict per preset: name, family, op, width, depth, parameters and tokens at ``seconds``."""
    frames_for(seconds)
    out = []
    for preset in PRESETS.values():
        out.append(
            {
                "preset": preset.name,
                "family": preset.family,
                "op": op_for(preset),
                "width": preset.width,
                "depth": preset.depth,
                "params": param_count(preset, seconds),
                "seconds": seconds,
                "tokens": tokens_for(preset, seconds),
            }
        )
    return out


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=10.24, help="audio duration for the token count (default 10.24)")
    p.add_argument("--json", action="store_true", help="print JSON")


def main(args: argparse.Namespace) -> int:
    try:
        table = rows(args.seconds)
    except ValueError as exc:
        print(f"wkvbench models: {exc}")
        return 2
    if args.json:
        print(json.dumps(table, indent=1))
        return 0
    print(f"networks at {args.seconds:g} s of audio ({frames_for(args.seconds)} frames)")
    print(f"{'preset':<10} {'op':<18} {'width':>5} {'depth':>5} {'params':>12} {'tokens':>7}")
    for r in table:
        print(
            f"{r['preset']:<10} {r['op']:<18} {r['width']:>5} {r['depth']:>5} "
            f"{r['params'] / 1e6:>11.2f}M {r['tokens']:>7}"
        )
    return 0
