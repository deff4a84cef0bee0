"""``wkvbench report RUN_DIR [-o OUT_DIR]``: figures, ``report.html`` and ``report.md`` from a run.

Reads only the run's ``results.csv``, ``samples.jsonl`` and ``env.json``
(:mod:`wkvbench.report.load`); writes ``OUT_DIR/figures/fig*.{png,svg,csv}``,
``OUT_DIR/report.html`` (self-contained) and ``OUT_DIR/report.md``. ``OUT_DIR`` defaults to
``RUN_DIR/report``. Several run directories, or one holding rows of several GPU models (a
``wkvbench merge``), give one report per GPU model and an ``index.md``
(:mod:`wkvbench.report.machines`). The committed example was built this way::

    wkvbench run reports/example-cpu/suite.toml --out runs/example-cpu
    wkvbench report runs/example-cpu -o reports/example-cpu
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wkvbench.report import analysis as an
from wkvbench.report.load import load_run
from wkvbench.report.render import Report, write


def build_report(run_dir, out_dir=None, title: str | None = None, formats=("png", "svg")) -> Report:
    """Load ``run_dir``, draw every figure and write both reports into ``out_dir``; returns the Report."""
    from wkvbench.report.figures import draw_all  # matplotlib only when a report is drawn
    from wkvbench.report.figures.measurement import measurement_plots

    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    df = run.results
    table, where = an.headline(df)
    counts = {s: int((df["status"] == s).sum()) for s in ("ok", "wrong", "failed", "oom", "timeout", "skipped")}
    rep = Report(
        title=title or f"wkvbench report: {run.env.suite or run.path.resolve().name}",
        run_dir=str(run.path),
        env=run.env,
        headline=table,
        where=where,
        verification=an.verification(df),
        not_ok=an.not_ok(df),
        counts=counts,
    )
    rep.plots = draw_all(df, run.env, out / "figures", formats=formats)
    rep.plots += measurement_plots(run.path, df, run.env, out / "figures", formats)  # roofline, kernels, quality
    write(rep, out)
    return rep


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
    from wkvbench.report.machines import build_faceted, gpu_models

    if len(runs) > 1 or len(gpu_models(runs[0])) > 1:  # several machines: a report per GPU model
        out = Path(args.out) if args.out else Path(runs[0]) / "report"
        try:
            made = build_faceted(runs, out, title=args.title, formats=("png",) if args.no_svg else ("png", "svg"))
        except ValueError as exc:
            print(f"wkvbench report: {exc}", file=sys.stderr)
            return 2
        for model, d in made.items():
            print(f"{model}: {d / 'report.html'}")
        print(f"wrote {out / 'index.md'} ({len(made)} GPU model(s))")
        return 0
    args.run_dir = runs[0]
    try:
        rep = build_report(
            args.run_dir, args.out, title=args.title, formats=("png",) if args.no_svg else ("png", "svg")
        )
    except ValueError as exc:
        print(f"wkvbench report: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name != "matplotlib":
            raise
        print("wkvbench report: needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.run_dir) / "report"
    print(f"wrote {out / 'report.html'}, {out / 'report.md'} and {len(rep.plots)} figures in {out / 'figures'}")
    from wkvbench.report.render import headline_sentence

    print(headline_sentence(rep.headline, rep.where))
    return 0
