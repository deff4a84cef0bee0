"""Figure 9: the worst gradient's relative L2 error against float64 autograd, per op and dtype.

Drawn from the training cells (modes ``bwd`` and ``fwd_bwd``): each holds the error of its worst
gradient tensor (``grad_rel_err``, named in ``grad_worst``), checked against the gradient bar of
docs/spec.md section 5. Faceted by op (rows) and dtype (columns), a row of panels per mode,
the worst over models, batches and variants at each token count; wrong cells are drawn, the bar
is a dashed line and the goal a dotted one. A run without training cells gets a note instead.
"""

from __future__ import annotations

from matplotlib.lines import Line2D

from wkvbench.report.figures.accuracy import draw_bars_and_wrong
from wkvbench.report.figures.layout import NOT_OK_NOTE
from wkvbench.report.figures.metric import MetricFigure, Panel, Panels

ERR_FLOOR = 1e-12


def _goal(dtype: str) -> float | None:
    try:
        import torch

        from wkvbench.gradcheck import GRAD_GOAL

        return GRAD_GOAL.get(getattr(torch, dtype))
    except (ImportError, AttributeError):
        return None


def _bars_and_wrong(ax, panel: Panel) -> list[float]:
    """The gradient bars the panel's cells were held to, the goal, and 'wrong' beside wrong cells."""
    if panel.rows.empty:
        return []
    bars = sorted(set(panel.rows["bar"].dropna()))
    return draw_bars_and_wrong(ax, panel, bars, _goal(panel.where.get("dtype", "")))


fig_grad_accuracy = MetricFigure(
    "fig9_grad_accuracy",
    "Training accuracy: worst gradient's relative L2 error vs float64 autograd",
    "Relative L2 error of the worst gradient tensor (its name is in the table's grad_worst column) "
    "against autograd through the float64 reference, same inputs and output gradient (docs/spec.md "
    "section 5), worst over models, batches and input variants at each token count, per training mode, "
    "implementation and I/O dtype. Dashed: the gradient bar; dotted: the goal. "
    f"Errors below {ERR_FLOOR:.0e} are drawn at {ERR_FLOOR:.0e}. " + NOT_OK_NOTE,
    panels=(Panels("grad_rel_err", "worst gradient relative L2", floor=ERR_FLOOR),),
    rows=("op",),
    cols=("dtype",),
    slice_by=("mode",),
    reduce="max",
    table=("grad_rel_err",),
    missing="No training cells (modes bwd, fwd_bwd) in this run: no gradient errors to draw.",
    marks=_bars_and_wrong,
    legend=(
        ("gradient bar (docs/spec.md section 5)", lambda: Line2D([], [], color="black", ls="--", lw=1)),
        ("goal", lambda: Line2D([], [], color="#777777", ls=":", lw=0.8)),
    ),
)
