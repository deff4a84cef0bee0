"""``wkvbench history report -o DIR``: the history as one self-contained ``index.html``.

A chart per cell family (the cell key without ``impl``, on one GPU model; one line per
implementation, :mod:`wkvbench.history.svg`), the detected steps with their commit ranges, and
the runs with links to their own ``report.html`` where it exists when the page is written. Rendered with jinja2 from
``templates/dashboard.html.j2``; the page loads nothing (no scripts, fonts or remote files).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from wkvbench import schema
from wkvbench.history import series as se
from wkvbench.history import steps as st
from wkvbench.history.svg import chart

IMPL = schema.KEY.index("impl")
FAMILY_COLUMNS = tuple(c for c in schema.KEY if c != "impl")


def family_title(key: tuple, gpu: str) -> str:
    k = dict(zip(schema.KEY, key, strict=True))
    return (
        f"{k['op']} {k['model']} B={k['batch']} T={k['tokens']} {k['dtype']} {k['mode']} "
        f"{k['variant']} on {k['device']} ({gpu})"
    )


def _rel(target: str | None, out: Path) -> str | None:
    if not isinstance(target, str) or not target or not Path(target).is_file():
        return None
    try:
        return os.path.relpath(target, out)
    except ValueError:  # another drive
        return Path(target).resolve().as_uri()


def context(df, out: Path, alpha: float = st.ALPHA, min_effect: float = st.MIN_EFFECT) -> dict:
    """Everything the template shows, from :meth:`Store.frame` rows."""
    order = se.commit_order(df) if not df.empty else []
    lns = se.lines(df, order)
    found = st.find_steps(lns, alpha=alpha, min_effect=min_effect)
    by_line: dict[tuple, list] = {}
    for s in found:
        by_line.setdefault((s.key, s.gpu), []).append(s)
    families: dict[tuple, dict] = {}
    for (key, gpu), pts in lns.items():
        fam = (tuple(v for i, v in enumerate(key) if i != IMPL), gpu)
        f = families.setdefault(fam, {"title": family_title(key, gpu), "series": {}, "steps": []})
        f["series"][key[IMPL]] = pts
        f["steps"] += by_line.get((key, gpu), [])
    rank = {c: i for i, c in enumerate(order)}
    charts = []
    for f in families.values():
        commits = sorted({p.commit for pts in f["series"].values() for p in pts}, key=lambda c: rank.get(c, 0))
        svg = chart(commits, f["series"], f["steps"], lambda p: _rel(p.reports[-1] if p.reports else None, out))
        charts.append({"title": f["title"], "svg": svg, "steps": f["steps"]})
    runs = (
        df.drop_duplicates("run_id")[["run_id", "commit_sha", "dirty", "date", "gpu", "digest", "source", "report"]]
        if not df.empty
        else df
    )
    run_rows = [
        {
            "commit": r["commit_sha"],
            "dirty": bool(r["dirty"]),
            "date": r["date"],
            "gpu": r["gpu"],
            "digest": r["digest"],
            "source": r["source"],
            "report": _rel(r["report"], out),
            "cells": int((df["run_id"] == r["run_id"]).sum()),
        }
        for _, r in runs.iterrows()
    ]
    envs = {}
    for _, r in df.drop_duplicates("digest").iterrows() if not df.empty else []:
        envs[r["digest"]] = ", ".join(f"{k} {v}" for k, v in r["env"].items() if v)
    return {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "charts": charts,
        "steps": found,
        "runs": run_rows,
        "envs": envs,
        "commits": order,
        "alpha": alpha,
        "min_effect": min_effect,
        "key_columns": FAMILY_COLUMNS,
    }


def render(ctx: dict) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("dashboard.html.j2").render(**ctx)


def write(df, out_dir, alpha: float = st.ALPHA, min_effect: float = st.MIN_EFFECT) -> Path:
    """Write ``out_dir/index.html``; returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    page.write_text(render(context(df, out.resolve(), alpha, min_effect)), encoding="utf-8")
    return page
