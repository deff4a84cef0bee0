"""Figure 9: the worst gradient's relative L2 error against float64 autograd, per op and dtype.

Drawn from the training cells (modes ``bwd`` and ``fwd_bwd``): each holds the error of its worst
gradient tensor (``grad_rel_err``, named in ``grad_worst``), checked against the gradient bar of
docs/spec.md section 5. Faceted by op (rows) and dtype (columns), a row of panels per mode,
the worst over models, batches and variants at each token count; wrong cells are drawn, the bar
is a dashed line and the goal a dotted one. A run without training cells gets a note instead.
"""

from __future__ import annotations

from wkvbench.report.figures.accuracy import draw_bars_and_wrong, error_figure
from wkvbench.report.figures.metric import Panel


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


fig_grad_accuracy = error_figure(
    "fig9_grad_accuracy",
    "Training accuracy: worst gradient's relative L2 error vs float64 autograd",
    "Relative L2 error of the worst gradient tensor (its name is in the table's grad_worst column) "
    "against autograd through the float64 reference, same inputs and output gradient (docs/spec.md "
    "section 5), worst over models, batches and input variants at each token count, per training mode, "
    "implementation and I/O dtype. Dashed: the gradient bar; dotted: the goal.",
    "grad_rel_err",
    "worst gradient relative L2",
    "gradient bar (docs/spec.md section 5)",
    slice_by=("mode",),
    table=("grad_rel_err",),
    missing="No training cells (modes bwd, fwd_bwd) in this run: no gradient errors to draw.",
    marks=_bars_and_wrong,
)
