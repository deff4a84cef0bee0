"""``wkvbench status RUN``: how far a run is -- cells done, failed and pending, per shard.

A run directory made by ``wkvbench run`` is one line; one made by ``wkvbench submit`` has a line
per shard (``shards/K-of-N``), including shards that have not started. *done* counts rows whose
status is ``ok`` or ``skipped``, *failed* the rows ``wrong``, ``failed``, ``oom`` or ``timeout``,
and *pending* the cells the run planned (its ``plan.json``) that have no row yet.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wkvbench.harness import rundir
from wkvbench.harness.rundir import RunDirError
from wkvbench.schema import key_of

DONE = ("ok", "skipped")


def shard_counts(path) -> dict:
    """{"planned", "done", "failed", "pending", "rows"} of one run directory (None where unknown).

    A damaged ``results.csv`` or ``plan.json`` is a :class:`~wkvbench.harness.rundir.RunDirError`."""
    path = Path(path)
    rows = rundir.read_results(path, strict_version=False)
    present = {key_of(r): r["status"] for r in rows}
    planned = rundir.planned_keys(path)
    scope = present if planned is None else {k: present[k] for k in planned if k in present}
    return {
        "planned": None if planned is None else len(planned),
        "done": sum(1 for s in scope.values() if s in DONE),
        "failed": sum(1 for s in scope.values() if s not in DONE),
        "pending": None if planned is None else len(planned) - len(scope),
        "rows": len(rows),
    }


def run_status(run) -> list[tuple[str, Path]]:
    """(label, run directory) for each shard of a submitted run, or for the run itself."""
    run = Path(run)
    sub = rundir.read_submit(run)
    if sub is not None:
        n = sub["jobs"]
        return [(f"{k}/{n}", rundir.shard_dir(run, k, n)) for k in range(1, n + 1)]
    return [(run.name, run)]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run directory (from run or submit)")


def main(args: argparse.Namespace) -> int:
    run = Path(args.run)
    if not run.is_dir():
        print(f"wkvbench status: RUN: {run} is not a directory", file=sys.stderr)
        return 2
    lines = [("shard", "planned", "done", "failed", "pending")]
    total = {"planned": 0, "done": 0, "failed": 0, "pending": 0}
    damaged = []
    try:
        shards = run_status(run)
    except RunDirError as exc:
        print(f"wkvbench status: {exc}", file=sys.stderr)
        return 1
    for label, where in shards:
        rundir.say_in_progress(where)
        try:
            c = shard_counts(where)
        except RunDirError as exc:
            damaged.append(str(exc))
            lines.append((label, "?", "?", "?", "unreadable"))
            continue
        if c["planned"] is None and c["rows"] == 0:
            lines.append((label, "-", "0", "0", "not started"))
            continue
        lines.append((label, *("?" if c[k] is None else str(c[k]) for k in ("planned", "done", "failed", "pending"))))
        for k in total:
            total[k] += c[k] or 0
    if len(lines) > 2:
        lines.append(("all", *(str(total[k]) for k in ("planned", "done", "failed", "pending"))))
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    for msg in damaged:
        print(f"wkvbench status: cannot count: {msg}", file=sys.stderr)
    return 1 if damaged else 0
