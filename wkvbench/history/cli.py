"""``wkvbench history add|show|report|check``: per-commit history of suite runs.

* ``add RUN... [--db PATH] [--commit SHA]``: import runs (plain, merged, submitted with shards)
  into the store (default ``runs/history.sqlite``); adding a run again changes nothing;
* ``show [--op --impl --model --tokens --mode ...]``: a table per cell across commits, newest last;
* ``report -o DIR``: ``DIR/index.html``, the self-contained dashboard;
* ``check --base REF --head REF``: exit 1 on a regression beyond the noise (cells listed), the
  verdicts of ``wkvbench compare``; exit 2 when the store or a ref cannot be used.
"""

from __future__ import annotations

import argparse
import sys

from wkvbench import schema
from wkvbench.history import steps as st
from wkvbench.history.store import DEFAULT_DB, Store

FILTERS = ("op", "impl", "model", "batch", "tokens", "dtype", "device", "variant", "mode")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="history_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=str(DEFAULT_DB), help=f"history store (default {DEFAULT_DB})")
    p = sub.add_parser("add", parents=[common], help="import run directories into the store")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directory (plain, merged, or with shards/)")
    p.add_argument("--commit", default=None, help="commit of the runs (overrides env.json; needed when it has none)")
    show = p = sub.add_parser("show", parents=[common], help="a table per cell across commits, newest last")
    for col in FILTERS:
        p.add_argument(f"--{col}", type=_csv, default=None, help=f"only these {col} values (comma-separated)")
    p.add_argument("--gpu", type=_csv, default=None, help="only these GPU (or CPU) models")
    p = sub.add_parser("report", parents=[common], help="self-contained HTML dashboard")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="where to write index.html")
    for q in (show, p):
        q.add_argument("--alpha", type=float, default=st.ALPHA, help=f"BH level over cells (default {st.ALPHA})")
        q.add_argument(
            "--min-effect", type=float, default=st.MIN_EFFECT, help=f"smallest step (default {st.MIN_EFFECT})"
        )
    p = sub.add_parser("check", parents=[common], help="CI gate: exit 1 on a regression from base to head")
    p.add_argument("--base", required=True, help="baseline commit (stored commit, prefix, or git ref)")
    p.add_argument("--head", required=True, help="commit checked against the baseline")
    p.add_argument("--threshold", type=float, default=0.05, help="relative change that counts (default 0.05)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per cell (default 2000)")
    p.add_argument("--all", action="store_true", help="list SAME cells too")


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def _add(args) -> int:
    from wkvbench.history.ingest import read_run

    with Store(args.db) as store:
        for run in args.runs:
            for rec in read_run(run, commit=args.commit):
                new, cells = store.add(rec)
                state = "added" if new else ("already stored" if not cells else "gained cells")
                what = f"commit {rec.commit[:10]}, {rec.gpu}, {rec.date}, env {rec.digest}"
                print(f"{run}: {state}: {what}, {cells} cells")
                if rec.dirty:
                    print(f"warning: {run} was measured with uncommitted changes (shown as {rec.commit[:10]}+)")
        runs, cells = store.counts()
    print(f"{args.db}: {runs} runs, {cells} cells")
    return 0


def _show(args) -> int:
    from wkvbench.history import series as se

    with Store(args.db, create=False) as store:
        df = store.frame()
    df = se.select(df, gpu=args.gpu, **{c: getattr(args, c) for c in FILTERS})
    if df.empty:
        print("(no stored cell matches)")
        return 0
    lns = se.lines(df, se.commit_order(df))
    found = st.find_steps(lns, alpha=args.alpha, min_effect=args.min_effect)
    steps = {(s.key, s.gpu, s.index): s for s in found}
    for (key, gpu), pts in lns.items():
        print(" / ".join(f"{c}={v}" for c, v in zip(schema.KEY, key, strict=True)) + f"  on {gpu}")
        rows = [["commit", "date", "env", "status", "median ms", "95% CI", "n", "runs", "step"]]
        for i, p in enumerate(pts):
            s = steps.get((key, gpu, i))
            env = p.digest + (" (new env)" if i and p.segment != pts[i - 1].segment else "")
            rows.append(
                [
                    p.commit[:10] + ("+" if p.dirty else ""),
                    p.date[:19],
                    env,
                    p.status,
                    _fmt(p.median_ms) if p.ok else "-",
                    f"[{_fmt(p.ci_lo)}, {_fmt(p.ci_hi)}]" if p.ci_lo is not None and p.ok else "-",
                    str(p.samples.size),
                    str(p.runs),
                    f"{s.kind} {s.change:+.1%} ({s.commit_range})" if s else "",
                ]
            )
        print(_table(rows))
        print()
    return 0


def _report(args) -> int:
    from wkvbench.history.dashboard import write

    with Store(args.db, create=False) as store:
        df = store.frame()
    page = write(df, args.out, alpha=args.alpha, min_effect=args.min_effect)
    print(f"wrote {page}")
    return 0


def _check(args) -> int:
    from wkvbench.history import check as ck
    from wkvbench.report.compare import display_table, summary_lines

    with Store(args.db, create=False) as store:
        df = store.frame()
        commits = store.commits()
    base = ck.resolve(args.base, commits, "--base")
    head = ck.resolve(args.head, commits, "--head")
    res = ck.check(df, base, head, threshold=args.threshold, resamples=args.resamples)
    for (gpu, digest), who in res.only.items():
        print(f"warning: environment {digest} on {gpu}: only {who[:10]} was measured there; not compared")
    if not res.comparisons:
        print(f"history check: {base[:10]} and {head[:10]} share no environment: nothing to compare", file=sys.stderr)
        return 2
    for (gpu, digest), cmp in res.comparisons.items():
        print(f"== {gpu}, environment {digest}: {head[:10]} (B) against {base[:10]} (A)")
        table = display_table(cmp, everything=args.all)
        if table.empty:
            print("(no cells to show)")
        else:
            body = [[str(v) for v in r] for r in table.itertuples(index=False)]
            print(_table([list(map(str, table.columns)), *body]))
        for line in summary_lines(cmp, base[:10], head[:10]):
            print(line)
        print()
    if res.regressed:
        print(f"history check: REGRESSION from {base[:10]} to {head[:10]}", file=sys.stderr)
        return 1
    print(f"history check: no regression from {base[:10]} to {head[:10]}")
    return 0


def main(args: argparse.Namespace) -> int:
    actions = {"add": _add, "show": _show, "report": _report, "check": _check}
    try:
        return actions[args.history_command](args)
    except ValueError as exc:
        print(f"wkvbench history {args.history_command}: {exc}", file=sys.stderr)
        return 2
