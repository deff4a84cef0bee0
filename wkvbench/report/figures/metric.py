"""One plotter for every "metric against x" figure: faceted panels, a line per implementation.

A :class:`MetricFigure` names what to draw (metric, x, facets, hooks); the plotter reads the
long table and draws panels, lines, bands, the not-ok band, legend, footer and the figure's
table the same way for every metric. Hooks and an example spec: docs/notes/report.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from wkvbench.report import analysis as an
from wkvbench.report.figures.layout import (
    BASE_COLS,
    Legend,
    Plot,
    draw_lines,
    finish_panel,
    new_figure,
    size_order,
    split_idle,
    unmeasured,
)
from wkvbench.report.load import Env
from wkvbench.report.metrics import METRICS, long_table, wide_table
from wkvbench.report.style import op_label, op_sort_key


@dataclass
class Panel:
    """What a hook sees of one panel: its facet values, its rows (``y`` in display units) and env."""

    where: dict
    rows: pd.DataFrame  # every cell of the panel, ``ok`` = the value may be drawn
    drawn: pd.DataFrame  # the rows drawn as lines (after ``reduce``)
    env: Env
    spec: Panels


@dataclass(frozen=True)
class Panels:
    """A row of panels: ``metric`` (a name in :data:`~wkvbench.report.metrics.METRICS`) against ``x``."""

    metric: str
    ylabel: str
    x: str = "tokens"
    xlabel: str = "tokens per sequence"
    scale: float = 1.0  # drawn value = value / scale (e.g. 2**20: bytes as MiB)
    band: bool = False  # shade p20-p80
    floor: float | None = None  # smaller values are drawn at the floor


def _label(col: str, v) -> str:
    if col == "size":
        return f"size {v}"
    if col == "op":
        return op_label(v)
    return f"batch {v}" if col == "batch" else str(v)


def _values(df: pd.DataFrame, col: str) -> list:
    present = list(df[col].unique())
    if col == "size":
        return size_order(df)
    if col == "op":
        return sorted(present, key=op_sort_key)
    return sorted(present, key=lambda v: an.order_key(col, v))


def _combinations(df: pd.DataFrame, cols: Sequence[str]) -> list[dict]:
    """Every combination of the facet columns' values, in display order (one empty dict for no columns)."""
    combos: list[dict] = [{}]
    for col in cols:
        combos = [{**c, col: v} for c in combos for v in (_values(df, col) or ["-"])]
    return combos


@dataclass(frozen=True)
class MetricFigure:
    """A figure of metrics against x; calling it with the tidy results draws it.

    ``rows``/``cols``: facet columns (always shown); ``slice_by``: columns split into further
    rows of panels only where they vary; ``reduce="max"``: the worst value per (op, impl, x) over
    the other cells of a panel. ``table``: the metrics the figure's CSV carries (default: those
    drawn). ``missing``: when set and no cell has a value of any drawn metric, the figure is a
    single note saying so.
    """

    name: str
    title: str
    caption: str | Callable[[Env], str]
    panels: tuple[Panels, ...]
    rows: tuple[str, ...] = ()
    cols: tuple[str, ...] = ("size",)
    slice_by: tuple[str, ...] = an.SLICE
    reduce: str | None = None
    table: tuple[str, ...] = ()
    missing: str = ""
    marks: Callable[[object, Panel], Sequence[float]] | None = None
    decorate: Callable[[object, Panel], None] | None = None
    legend: tuple[tuple[str, Callable[[], Line2D]], ...] = field(default=())

    def __post_init__(self):
        unknown = [p.metric for p in self.panels if p.metric not in METRICS]
        unknown += [m for m in self.table if m not in METRICS]
        if unknown:
            raise ValueError(f"{self.name}: unknown metric(s) {unknown}; known: {sorted(METRICS)}")
        if self.reduce not in (None, "max"):
            raise ValueError(f"{self.name}: reduce must be None or 'max', got {self.reduce!r}")

    def __call__(self, df: pd.DataFrame, env: Env, long: pd.DataFrame | None = None) -> Plot:
        return plot_metric(self, df, env, long)


def _panel_rows(part: pd.DataFrame, spec: Panels, reduce: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows for the panel with display columns ``y``/``lo``/``hi``/``ok``, the rows drawn as lines)."""
    p = part[(part["metric"] == spec.metric) & part[spec.x].notna()]
    p = p.assign(y=p["value"] / spec.scale, lo=p["p20"] / spec.scale, hi=p["p80"] / spec.scale, ok=p["valid"])
    if spec.floor is not None:
        p = p.assign(y=p["y"].clip(lower=spec.floor))
    drawn = p[p["ok"] & p["y"].notna() & np.isfinite(p["y"]) & (p["y"] > 0)]
    if reduce == "max":
        drawn = drawn.sort_values("y").groupby(["op", "impl", spec.x], sort=False).tail(1)
        p = pd.concat([drawn, p[~p["ok"]]])
    return p, drawn


def _draw_panel(ax, spec: MetricFigure, pspec: Panels, sel, where: dict, where_slice: dict, env, legend, first):
    """One panel: lines, marks, limits and not-ok band, title and labels, then the decoration."""
    rows, drawn = _panel_rows(sel, pspec, spec.reduce)
    panel = Panel({**where_slice, **where}, rows, drawn, env, pspec)
    draw_lines(ax, rows, pspec.x, "y", legend, *(("lo", "hi") if pspec.band else ()))
    include = spec.marks(ax, panel) if spec.marks else ()
    finish_panel(ax, rows, pspec.x, "y", legend, include_y=list(include))
    head = ", ".join(_label(c, v) for c, v in where.items())
    extra = an.slice_label(where_slice)
    ax.set_title(head + (f"  ({extra})" if extra else ""))
    ax.set_xlabel(pspec.xlabel)
    if first:
        ax.set_ylabel(pspec.ylabel)
    if spec.decorate is not None:
        spec.decorate(ax, panel)


def plot_metric(spec: MetricFigure, df: pd.DataFrame, env: Env, long: pd.DataFrame | None = None) -> Plot:
    """Draw ``spec`` from the tidy results ``df`` (or its long table ``long``, when already built)."""
    long = long_table(df, env) if long is None else long
    metrics = [p.metric for p in spec.panels]
    data, idle = split_idle(long[long["metric"].isin(metrics)])
    measured = bool(data["value"].notna().any())
    slices = an.slices(data, spec.slice_by) if spec.slice_by else [({}, data)]
    row_facets = _combinations(data, spec.rows)
    col_facets = _combinations(data, spec.cols)
    n_rows = len(slices) * len(row_facets) * len(spec.panels)
    if spec.missing and not measured:
        fig, axes = unmeasured(env, spec.title, spec.missing)
        slices = []
    else:
        fig, axes = new_figure(n_rows, len(col_facets), env, spec.title)
    legend = Legend(idle)
    i = 0
    for where_slice, part in slices:
        for row in row_facets:
            for pspec in spec.panels:
                for j, col in enumerate(col_facets):
                    where = {**row, **col}
                    sel = an.select(part, where) if where and not part.empty else part
                    _draw_panel(axes[i, j], spec, pspec, sel, where, where_slice, env, legend, first=j == 0)
                i += 1
    for label, handle in spec.legend:
        legend.extra(label, handle())
    legend.draw(fig)
    caption = spec.caption(env) if callable(spec.caption) else spec.caption
    table = wide_table(long, spec.table or tuple(dict.fromkeys(metrics)), BASE_COLS)
    return Plot(spec.name, spec.title, caption, fig, table)
