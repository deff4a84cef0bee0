"""Figure 2: tokens per second against tokens, seconds of audio per second against seconds."""

from __future__ import annotations

import pandas as pd

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


def fig_throughput(df: pd.DataFrame, env: Env) -> Plot:
    table_rows = df
    df, idle = split_idle(df)
    rows, sizes = an.slices(df), size_order(df)
    title = "Throughput vs sequence length"
    metrics = (
        ("tokens", "tokens_per_s", "tokens per second", "tokens per sequence"),
        ("seconds", "audio_s_per_s", "seconds of audio per second", "seconds of audio per sequence"),
    )
    fig, axes = new_figure(2 * len(rows), max(1, len(sizes)), env, title)
    legend = Legend(idle)
    for i, (where, part) in enumerate(rows):
        for k, (x, y, ylabel, xlabel) in enumerate(metrics):
            for j, size in enumerate(sizes or ["-"]):
                ax = axes[2 * i + k, j]
                p = part[(part["size"] == size) & part[x].notna()]
                draw_lines(ax, p, x, y, legend)
                finish_panel(ax, p, x, y, legend)
                panel_title(ax, size, where)
                ax.set_xlabel(xlabel)
                if j == 0:
                    ax.set_ylabel(ylabel)
    legend.draw(fig)
    caption = (
        "Throughput (batch x tokens / median, and batch x seconds of audio / median) against sequence "
        "length, one column per model size. At equal audio AST processes about 2.4x the tokens of "
        "A-RWKV. " + NOT_OK_NOTE
    )
    return Plot(
        "fig2_throughput", title, caption, fig, table_of(table_rows, [*BASE_COLS, "tokens_per_s", "audio_s_per_s"])
    )
