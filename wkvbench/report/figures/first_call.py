"""Figure 8: each implementation's first call in its worker process against its steady-state latency.

A first call compiles or loads kernels only where none of the same kind were built before in
that process (one worker serves a whole sweep; disk caches persist): ``cells_compiled`` counts
the cells whose first call grew the backends' kernel caches (results column ``compiled``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from wkvbench.report.figures.layout import (
    Plot,
    empty_panel,
)
from wkvbench.report.load import Env
from wkvbench.report.style import fmt_ms, impl_label, op_sort_key, style_for


def fig_first_call(df: pd.DataFrame, env: Env) -> Plot:
    title = "First call in the worker (compile/load where `compiled`) per implementation"
    groups = []
    for (op, impl), g in df.groupby(["op", "impl"]):
        fc = g["first_call_ms"].dropna()
        fc = fc[fc > 0]
        steady = g.loc[g["ok"], "median_ms"]
        backend = next((b for b in g["backend"] if b), "")
        statuses = ", ".join(f"{n} {s}" for s, n in g.loc[g["status"] != "ok", "status"].value_counts().items())
        groups.append(
            {
                "op": op,
                "impl": impl,
                "backend": backend,
                "cells": len(g),
                "cells_timed": len(fc),
                "cells_compiled": int((g["compiled"] == 1).sum()) if "compiled" in g else 0,
                "first_call_median_ms": fc.median() if len(fc) else np.nan,
                "first_call_min_ms": fc.min() if len(fc) else np.nan,
                "first_call_max_ms": fc.max() if len(fc) else np.nan,
                "steady_median_ms": steady.median() if len(steady) else np.nan,
                "not_ok": statuses,
            }
        )
    table = pd.DataFrame(groups)
    if not table.empty:
        table = table.sort_values(
            ["op", "impl"], key=lambda s: s.map(lambda v: op_sort_key(v) if s.name == "op" else v)
        )
        table = table.iloc[::-1].reset_index(drop=True)  # first op at the top of the chart
    n = max(1, len(table))
    height = 0.32 * n + 1.7
    fig = Figure(figsize=(8.6, height), layout="constrained", dpi=110)
    fig.get_layout_engine().set(rect=(0, 0.26 / height, 1, 1 - 0.26 / height))
    fig.text(0.005, 0.004, env.footer(), fontsize=6.5, color="#444444", ha="left", va="bottom")
    fig.suptitle(title, fontsize=10.5, fontweight="bold", x=0.01, ha="left")
    ax = fig.subplots()
    if table.empty:
        empty_panel(ax, "no cells")
    else:
        hatch = {"bi_wkv7": "", "attention": "///", "bi_selective_scan": "..."}
        y = np.arange(len(table))
        has = table["first_call_median_ms"].notna()
        for k, r in table.iterrows():
            st = style_for(r["op"], r["impl"])
            if has[k]:
                ax.barh(
                    k,
                    r["first_call_median_ms"],
                    color=st.colour,
                    alpha=0.85,
                    hatch=hatch.get(r["op"], "xx"),
                    edgecolor="black",
                    linewidth=0.5,
                    zorder=3,
                )
                ax.plot([r["first_call_min_ms"], r["first_call_max_ms"]], [k, k], color="black", lw=0.9, zorder=4)
                if np.isfinite(r["steady_median_ms"]):
                    ax.plot(r["steady_median_ms"], k, marker="|", ms=10, mew=2, color="black", zorder=5)
                ax.annotate(
                    f"{fmt_ms(r['first_call_median_ms'])} ms",
                    (r["first_call_max_ms"], k),
                    xytext=(4, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=6.5,
                )
        ax.set_xscale("log")
        lo = np.nanmin(table[["first_call_min_ms", "steady_median_ms"]].to_numpy(dtype=float)) if has.any() else 1
        hi = np.nanmax(table["first_call_max_ms"].to_numpy(dtype=float)) if has.any() else 10
        ax.set_xlim(lo / 3, hi * 8)
        for k, r in table.iterrows():
            if not has[k]:
                ax.text(
                    0.02,
                    k,
                    f"no first call timed ({r['not_ok'] or 'no data'})",
                    transform=ax.get_yaxis_transform(),
                    va="center",
                    fontsize=7,
                    color="#666666",
                )
        ax.set_yticks(y, [f"{impl_label(r.op, r.impl)} [{r.backend or '?'}]" for r in table.itertuples()])
        ax.set_xlabel("first call (ms, compile/JIT included; bar: median over cells, line: min-max)")
        ax.grid(axis="y", visible=False)
        handles = [
            Patch(facecolor="#bbbbbb", edgecolor="black"),
            Line2D([], [], color="black", lw=0.9),
            Line2D([], [], marker="|", ms=9, mew=2, color="black", ls="none"),
        ]
        labels = ["first call, median over cells", "first call, min to max", "steady-state median latency"]
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=7, frameon=False)
        ax.set_ylim(-0.6, len(table) - 0.4)
    caption = (
        "Time of the very first call of each implementation on each cell (compilation, autotuning and "
        "caching included), median over its cells with the min-max range, against its steady-state median "
        "latency (black tick). Implementations that never completed a first call are listed with their "
        "statuses."
    )
    return Plot("fig8_first_call", title, caption, fig, table.iloc[::-1].reset_index(drop=True))
