"""Figure 6: relative L2 error against the float64 reference, per op and dtype, with the bar and the goal."""

from __future__ import annotations

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
    empty_panel,
    finish_panel,
    new_figure,
    split_idle,
    table_of,
)
from wkvbench.report.load import Env
from wkvbench.report.style import OP_LABEL, op_sort_key, style_for


def _tolerance(dtype: str) -> tuple[float | None, float | None]:
    try:
        import torch

        from wkvbench.accuracy import GOAL, TOLERANCE

        dt = getattr(torch, dtype)
        return TOLERANCE.get(dt), GOAL.get(dt)
    except (ImportError, AttributeError):
        return None, None


ERR_FLOOR = 1e-12


def fig_accuracy(df: pd.DataFrame, env: Env) -> Plot:
    table_rows = df
    df, idle = split_idle(df)
    ops = sorted(df["op"].unique(), key=op_sort_key)
    dtypes = [d for d in an.DTYPE_ORDER if d in set(df["dtype"])] + sorted(set(df["dtype"]) - set(an.DTYPE_ORDER))
    title = "Accuracy: relative L2 error vs the float64 reference"
    fig, axes = new_figure(max(1, len(ops)), max(1, len(dtypes)), env, title)
    legend = Legend(idle)
    shown = []
    for i, op in enumerate(ops):
        for j, dtype in enumerate(dtypes):
            ax = axes[i, j]
            p = df[(df["op"] == op) & (df["dtype"] == dtype)]
            ax.set_title(f"{OP_LABEL.get(op, op)}, {dtype}")
            ax.set_xlabel("tokens per sequence")
            if j == 0:
                ax.set_ylabel("relative L2 error")
            if p.empty:
                empty_panel(ax, "no cells")
                continue
            has_err = p["rel_err"].notna() & np.isfinite(p["rel_err"]) & p["status"].isin(["ok", "wrong"])
            # worst error over models, batches and variants at each token count
            err = p[has_err].assign(err=p["rel_err"].clip(lower=ERR_FLOOR))
            worst = err.sort_values("err").groupby(["op", "impl", "tokens"], sort=False).tail(1)
            worst = worst.assign(ok=True)
            draw_lines(ax, worst, "tokens", "err", legend)
            for r in worst[worst["status"] == "wrong"].itertuples():
                ax.annotate(
                    "wrong",
                    (r.tokens, r.err),
                    xytext=(4, 3),
                    textcoords="offset points",
                    fontsize=6.5,
                    color=style_for(r.op, r.impl).colour,
                )
            combined = pd.concat([worst, p[~has_err].assign(ok=False)])
            tol, goal = _tolerance(dtype)
            tols = sorted(set(p["tol"].dropna())) or ([tol] if tol else [])
            for t in tols:
                ax.axhline(t, color="black", lw=1.0, ls="--", zorder=4)
                ax.text(0.01, t, f" bar {t:.0e}", transform=ax.get_yaxis_transform(), fontsize=6.5, va="bottom")
            if goal:
                ax.axhline(goal, color="#777777", lw=0.8, ls=":", zorder=4)
            finish_panel(ax, combined, "tokens", "err", legend, include_y=[*tols, *([goal] if goal else [])])
            shown.append(combined)
    legend.extra("accuracy bar (CONTRACT 5)", Line2D([], [], color="black", ls="--", lw=1))
    legend.extra("goal", Line2D([], [], color="#777777", ls=":", lw=0.8))
    legend.draw(fig)
    idle_rows = table_rows.merge(idle[["op", "impl"]], on=["op", "impl"])
    table = pd.concat([*shown, idle_rows]) if shown else idle_rows
    table = table_of(table, [*BASE_COLS, "rel_err", "max_abs_err", "tol"])
    caption = (
        "Relative L2 error against the float64 reference (CONTRACT section 5), worst over models, batches "
        "and input variants at each token count, per implementation and I/O dtype. Dashed: the bar an "
        "implementation must meet (float32 on TF32 tensor cores is held to bfloat16's); dotted: the goal. "
        "Implementations with the same error draw on top of each other (the table has every value). "
        f"Errors below {ERR_FLOOR:.0e} are drawn at {ERR_FLOOR:.0e}. " + NOT_OK_NOTE
    )
    return Plot("fig6_accuracy", title, caption, fig, table)
