"""The ``wkvbench report RUN_DIR... [-o OUT_DIR]`` command: one report, or one per GPU model.

One run directory of one GPU model gives one report (:func:`wkvbench.report.build.build_report`);
several run directories, or one holding rows of several GPU models (a ``wkvbench merge``), give
one report per GPU model and an ``index.md`` (:func:`wkvbench.report.machines.build_faceted`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wkvbench.report.build import build_report
from wkvbench.report.machines import build_faceted, gpu_models
from wkvbench.report.render import sentences


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        nargs="+",
        help="a run directory (results.csv, env.json, samples.jsonl); several, or one holding several GPU "
        "models: one report per GPU model and an index.md",
    )
    parser.add_argument("-o", "--out", metavar="OUT_DIR", default=None, help="where to write (default RUN_DIR/report)")
    parser.add_argument("--title", default=None, help="report title (default: the run directory's name)")
    parser.add_argument("--no-svg", action="store_true", help="write PNG figures only")


def main(args: argparse.Namespace) -> int:
    runs = args.run_dir if isinstance(args.run_dir, list) else [args.run_dir]
    formats = ("png",) if args.no_svg else ("png", "svg")
    if len(runs) > 1 or len(gpu_models(runs[0])) > 1:  # several machines: a report per GPU model
        out = Path(args.out) if args.out else Path(runs[0]) / "report"
        try:
            made = build_faceted(runs, out, title=args.title, formats=formats)
        except ValueError as exc:
            print(f"wkvbench report: {exc}", file=sys.stderr)
            return 2
        for model, d in made.items():
            print(f"{model}: {d / 'report.html'}")
        print(f"wrote {out / 'index.md'} ({len(made)} GPU model(s))")
        return 0
    run_dir = runs[0]
    try:
        rep = build_report(run_dir, args.out, title=args.title, formats=formats)
    except ValueError as exc:
        print(f"wkvbench report: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name != "matplotlib":
            raise
        print("wkvbench report: needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(run_dir) / "report"
    print(f"wrote {out / 'report.html'}, {out / 'report.md'} and {len(rep.plots)} figures in {out / 'figures'}")
    print(sentences(rep))
    return 0
