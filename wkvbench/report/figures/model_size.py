"""Figure 4: seconds of audio per second against model size (T/S/B) at fixed audio durations."""

from __future__ import annotations

import pandas as pd

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
from wkvbench.report.load import SIZES, Env


def duration_panels(n_rows: int, targets: list, idle, env: Env, title: str, nothing: str):
    """A figure with a column per target duration (an empty panel with a note when there is none).

    Returns ``(fig, axes, legend)``; shared by the figures drawn at fixed audio durations.
    """
    fig, axes = new_figure(n_rows, max(1, len(targets)), env, title, w=3.0)
    legend = Legend(idle)
    if not targets:
        empty_panel(axes[0, 0], f"{nothing} within 30% of 10 s, 60 s or 328 s of audio")
    return fig, axes, legend


def label_throughput(ax, col: int, xlabel: str) -> None:
    """The x label, and the throughput y label on the first column's panels."""
    ax.set_xlabel(xlabel)
    if col == 0:
        ax.set_ylabel("seconds of audio per second")


def fig_model_size(df: pd.DataFrame, env: Env) -> Plot:
    table_rows = df
    df, idle = split_idle(df)
    near = an.at_durations(df)
    targets = [t for t in an.DURATIONS if (near["target_s"] == t).any()] if not near.empty else []
    rows = an.slices(df)
    title = "Throughput vs model size at fixed audio durations"
    fig, axes, legend = duration_panels(len(rows), targets, idle, env, title, "no cells")
    pos = {s: i for i, s in enumerate(SIZES)}
    for i, (where, _) in enumerate(rows):
        for j, t in enumerate(targets):
            ax = axes[i, j]
            p = an.select(near[near["target_s"] == t], where)
            p = p[p["size"].isin(SIZES)].assign(_x=lambda d: d["size"].map(pos))
            actual = sorted({f"{s:g}" for s in p["seconds"]})
            ax.set_title(
                f"~{t:g} s of audio"
                + (f"  ({an.slice_label(where)})" if where else "")
                + (f"\nmeasured at {', '.join(actual)} s" if actual and actual != [f"{t:g}"] else "")
            )
            draw_lines(ax, p, "_x", "audio_s_per_s", legend)
            finish_panel(ax, p, "_x", "audio_s_per_s", legend, logx=False, xlim=(-0.4, len(SIZES) - 0.4))
            ax.set_xticks(range(len(SIZES)), SIZES)
            label_throughput(ax, j, "model size")
    legend.draw(fig)
    caption = (
        "Seconds of audio processed per second (batch x seconds / median) against model size "
        "(T/S/B = width 192/384/768), at the measured duration nearest 10 s, 60 s and 328 s. AST exists "
        "only at size B. " + NOT_OK_NOTE
    )
    table = table_of(
        an.at_durations(table_rows), ["target_s", *BASE_COLS, "median_ms", "audio_s_per_s", "tokens_per_s"]
    )
    return Plot("fig4_model_size", title, caption, fig, table)
