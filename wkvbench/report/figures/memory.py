"""Figure 5: peak allocated memory against tokens."""

from __future__ import annotations

import pandas as pd

from wkvbench.report.figures.layout import (
    BASE_COLS,
    NOT_OK_NOTE,
    Plot,
    per_token_panels,
    split_idle,
    table_of,
)
from wkvbench.report.load import Env


def fig_memory(df: pd.DataFrame, env: Env) -> Plot:
    table_rows = df
    df, idle = split_idle(df)
    title = "Peak memory vs sequence length"

    def gpu_memory_line(ax, p):
        if env.gpu_mem_bytes and not p[p["ok"]].empty:
            cap = env.gpu_mem_bytes / 2**20
            if ax.get_ylim()[1] >= cap:
                ax.axhline(cap, color="black", lw=0.8, ls="--")
                ax.text(
                    0.02,
                    cap,
                    f" GPU memory {env.gpu_mem_bytes / 2**30:.0f} GiB",
                    fontsize=6.5,
                    va="bottom",
                    transform=ax.get_yaxis_transform(),
                )

    fig = per_token_panels(
        df.assign(peak_mib=df["peak_mem_bytes"] / 2**20),
        idle,
        env,
        title,
        "peak_mib",
        "peak allocated memory (MiB)",
        "peak memory was not measured (no CUDA allocator on a CPU run)",
        gpu_memory_line,
    )
    caption = (
        "torch.cuda.max_memory_allocated during each cell (reset per cell), against tokens. "
        "OOM cells are drawn where they happened, in the band at the top. " + NOT_OK_NOTE
    )
    return Plot("fig5_memory", title, caption, fig, table_of(table_rows, [*BASE_COLS, "peak_mem_bytes"]))
