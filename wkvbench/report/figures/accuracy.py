"""Figure 6: relative L2 error against the float64 reference, per op and dtype, with the bar and the goal.

A :class:`~.metric.MetricFigure` faceted by op (rows) and dtype (columns), the worst error over
models, batches and variants at each token count; wrong cells are drawn (their error is the
point), the bar each cell was held to and the goal are lines.
"""

from __future__ import annotations

from matplotlib.lines import Line2D

from wkvbench.report.figures.layout import NOT_OK_NOTE
from wkvbench.report.figures.metric import MetricFigure, Panel, Panels
from wkvbench.report.style import style_for

ERR_FLOOR = 1e-12


def _tolerance(dtype: str) -> tuple[float | None, float | None]:
    try:
        import torch

        from wkvbench.accuracy import GOAL, TOLERANCE

        dt = getattr(torch, dtype)
        return TOLERANCE.get(dt), GOAL.get(dt)
    except (ImportError, AttributeError):
        return None, None


def _bars(panel: Panel) -> tuple[list[float], float | None]:
    """The bars the panel's cells were held to (else the dtype's), and the dtype's goal."""
    tol, goal = _tolerance(panel.where.get("dtype", ""))
    bars = sorted(set(panel.rows["bar"].dropna())) or ([tol] if tol else [])
    return bars, goal


def _bars_and_wrong(ax, panel: Panel) -> list[float]:
    """Bar and goal lines, 'wrong' beside wrong cells; returns the lines' values (the y-range shows them)."""
    if panel.rows.empty:
        return []
    return draw_bars_and_wrong(ax, panel, *_bars(panel))


def draw_bars_and_wrong(ax, panel: Panel, bars: list[float], goal: float | None) -> list[float]:
    """Dashed lines at ``bars``, a dotted one at ``goal``, 'wrong' beside the panel's wrong cells.

    Returns the lines' values (the y-range shows them). Shared by the forward and gradient
    accuracy figures.
    """
    for t in bars:
        ax.axhline(t, color="black", lw=1.0, ls="--", zorder=4)
        ax.text(0.01, t, f" bar {t:.0e}", transform=ax.get_yaxis_transform(), fontsize=6.5, va="bottom")
    if goal:
        ax.axhline(goal, color="#777777", lw=0.8, ls=":", zorder=4)
    for r in panel.drawn[panel.drawn["status"] == "wrong"].itertuples():
        colour = style_for(r.op, r.impl).colour
        ax.annotate("wrong", (r.tokens, r.y), xytext=(4, 3), textcoords="offset points", fontsize=6.5, color=colour)
    return [*bars, *([goal] if goal else [])]


def error_figure(name: str, title: str, caption: str, column: str, ylabel: str, bar: str, **kw) -> MetricFigure:
    """A worst-error figure: ``column`` faceted by op (rows) and dtype (columns), the max at each token
    count, errors below ``ERR_FLOOR`` drawn at it, the legend naming the dashed ``bar`` and the dotted goal.

    ``kw`` goes to :class:`~.metric.MetricFigure` (slice_by, table, marks, missing). Shared by the
    forward and gradient accuracy figures.
    """
    return MetricFigure(
        name,
        title,
        f"{caption} Errors below {ERR_FLOOR:.0e} are drawn at {ERR_FLOOR:.0e}. " + NOT_OK_NOTE,
        panels=(Panels(column, ylabel, floor=ERR_FLOOR),),
        rows=("op",),
        cols=("dtype",),
        reduce="max",
        legend=(
            (bar, lambda: Line2D([], [], color="black", ls="--", lw=1)),
            ("goal", lambda: Line2D([], [], color="#777777", ls=":", lw=0.8)),
        ),
        **kw,
    )


fig_accuracy = error_figure(
    "fig6_accuracy",
    "Accuracy: relative L2 error vs the float64 reference",
    "Relative L2 error against the float64 reference (docs/spec.md section 5), worst over models, batches "
    "and input variants at each token count, per implementation and I/O dtype. Dashed: the bar an "
    "implementation must meet (float32 on TF32 tensor cores is held to bfloat16's); dotted: the goal. "
    "Implementations with the same error draw on top of each other (the table has every value).",
    "rel_err",
    "relative L2 error",
    "accuracy bar (spec section 5)",
    slice_by=(),
    table=("rel_err", "max_abs_err"),
    marks=_bars_and_wrong,
)
