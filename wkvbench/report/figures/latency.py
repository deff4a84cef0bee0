"""Figure 1: median latency against tokens, log-log, with the slope at the longest sequences.

A :class:`~.metric.MetricFigure` (latency with its p20-p80 band) whose ``decorate`` hook adds
slope-1/2 guides and, under each panel title, the log-log slope between the two longest
sequences per op; the slopes join the figure's table.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from wkvbench.report import analysis as an
from wkvbench.report.figures.layout import NOT_OK_NOTE, Plot
from wkvbench.report.figures.metric import MetricFigure, Panel, Panels, plot_metric
from wkvbench.report.load import Env
from wkvbench.report.style import op_sort_key

LATENCY = MetricFigure(
    "fig1_latency",
    "Latency vs tokens (log-log)",
    "Median latency per call against tokens per sequence, p20-p80 band shaded, one panel per model "
    "size. Under each title: the log-log slope between the two longest sequences of each line (range over the "
    "implementations of an op; per line in the table): about 1 for a linear-time scan, about 2 for "
    "attention once its T^2 term dominates (below that, fixed launch costs pull every slope under 1). "
    "Dotted grey guides have slopes 1 and 2. " + NOT_OK_NOTE,
    panels=(Panels("latency", "median latency (ms)", band=True),),
    legend=(("guide: slope 1 (linear) / 2 (quadratic)", lambda: Line2D([], [], color="#999999", ls=":", lw=1)),),
)


def fig_latency(df: pd.DataFrame, env: Env, long: pd.DataFrame | None = None) -> Plot:
    slopes: list[dict] = []

    def slopes_and_guides(ax, panel: Panel) -> None:
        per_op: dict[str, list[float]] = {}
        for (op, impl), g in panel.drawn.groupby(["op", "impl"]):
            s = an.loglog_slope(g["tokens"], g["y"])
            slopes.append({"op": op, "impl": impl, **panel.where, "slope": s})
            if np.isfinite(s):
                per_op.setdefault(op, []).append(s)
        if not panel.drawn.empty:
            _guides(ax)
        _slope_line(ax, per_op)

    plot = plot_metric(replace(LATENCY, decorate=slopes_and_guides), df, env, long)
    if slopes:
        slope_df = pd.DataFrame(slopes).drop_duplicates()
        on = [c for c in slope_df.columns if c != "slope"]
        plot.table = plot.table.merge(slope_df, on=on, how="left")
    return plot


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
