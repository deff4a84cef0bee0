"""Figure 1: median latency against tokens, log-log, with the slope at the longest sequences."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from wkvbench.report import analysis as an
from wkvbench.report.figures.layout import (
    BASE_COLS,
    NOT_OK_NOTE,
    Legend,
    Plot,
    draw_lines,
    finish_panel,
    new_figure,
    panel_title,
    size_order,
    split_idle,
    table_of,
)
from wkvbench.report.load import Env
from wkvbench.report.style import op_sort_key


def fig_latency(df: pd.DataFrame, env: Env) -> Plot:
    table_rows = df
    df, idle = split_idle(df)
    rows, sizes = an.slices(df), size_order(df)
    title = "Latency vs tokens (log-log)"
    fig, axes = new_figure(len(rows), max(1, len(sizes)), env, title)
    legend = Legend(idle)
    slopes = []
    for i, (where, part) in enumerate(rows):
        for j, size in enumerate(sizes or ["-"]):
            ax = axes[i, j]
            p = part[part["size"] == size]
            draw_lines(ax, p, "tokens", "median_ms", legend, "p20_ms", "p80_ms")
            ok = finish_panel(ax, p, "tokens", "median_ms", legend)
            per_op: dict[str, list[float]] = {}
            for (op, impl), g in ok.groupby(["op", "impl"]):
                s = an.loglog_slope(g["tokens"], g["median_ms"])
                slopes.append({"op": op, "impl": impl, "size": size, **where, "slope": s})
                if np.isfinite(s):
                    per_op.setdefault(op, []).append(s)
            if not ok.empty:
                _guides(ax)
            panel_title(ax, size, where)
            _slope_line(ax, per_op)
            ax.set_xlabel("tokens per sequence")
            if j == 0:
                ax.set_ylabel("median latency (ms)")
    legend.extra("guide: slope 1 (linear) / 2 (quadratic)", Line2D([], [], color="#999999", ls=":", lw=1))
    legend.draw(fig)
    table = table_of(table_rows, [*BASE_COLS, "median_ms", "p20_ms", "p80_ms"])
    slope_df = pd.DataFrame(slopes)
    if not slope_df.empty:
        table = table.merge(
            slope_df[["op", "impl", "size", *where.keys(), "slope"]].drop_duplicates(),
            on=["op", "impl", "size", *where.keys()],
            how="left",
        )
    caption = (
        "Median latency per call against tokens per sequence, p20-p80 band shaded, one panel per model "
        "size. Under each title: the log-log slope between the two longest sequences of each line (range over the "
        "implementations of an op; per line in the table): about 1 for a linear-time scan, about 2 for "
        "attention once its T^2 term dominates (below that, fixed launch costs pull every slope under 1). "
        "Dotted grey guides have slopes 1 and 2. " + NOT_OK_NOTE
    )
    return Plot("fig1_latency", title, caption, fig, table)


def _guides(ax) -> None:
    """Dotted slope-1 and slope-2 guide lines from the lower-left corner of the panel."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    lx0, lx1, ly0, ly1 = math.log10(x0), math.log10(x1), math.log10(y0), math.log10(y1)
    start_x = lx0 + 0.04 * (lx1 - lx0)
    start_y = ly0 + 0.03 * (ly1 - ly0)
    for p, lab in ((1, "∝T"), (2, "∝T²")):
        xs = np.linspace(start_x, lx1, 20)
        ys = start_y + p * (xs - start_x)
        ax.plot(10**xs, 10**ys, color="#aaaaaa", ls=":", lw=1, zorder=1, scalex=False, scaley=False)
        # label the guide halfway up the panel (or at its right end if it stays lower)
        x_lab = min(lx1 - 0.03 * (lx1 - lx0), start_x + 0.45 * (ly1 - ly0) / p)
        ax.text(
            10**x_lab,
            10 ** (start_y + p * (x_lab - start_x)),
            lab,
            fontsize=7,
            color="#888888",
            ha="right",
            va="bottom",
        )


def _slope_line(ax, per_op: dict[str, list[float]]) -> None:
    """Under the panel title: the log-log slope between the two longest sequences, per op (range over impls)."""
    if not per_op:
        return
    short = {"bi_wkv7": "Bi-WKV7", "attention": "attn", "bi_selective_scan": "scan"}
    parts = []
    for op in sorted(per_op, key=op_sort_key):
        lo, hi = min(per_op[op]), max(per_op[op])
        parts.append(f"{short.get(op, op)} {lo:.2f}" + (f"-{hi:.2f}" if hi - lo >= 0.005 else ""))
    ax.text(0.5, 1.015, "slope at longest T: " + ", ".join(parts), transform=ax.transAxes, ha="center",
            va="bottom", fontsize=6.5, color="#333333")  # fmt: skip
    ax.set_title(ax.get_title(), pad=13)
