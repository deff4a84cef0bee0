"""Figure 7: achieved bandwidth as a fraction of the measured copy bandwidth (the memory roofline)."""

from __future__ import annotations

import pandas as pd
from matplotlib.ticker import FuncFormatter

from wkvbench.report import analysis as an
from wkvbench.report.figures.layout import (
    BASE_COLS,
    NOT_OK_NOTE,
    Plot,
    per_token_panels,
    split_idle,
    table_of,
)
from wkvbench.report.load import Env


def fig_bandwidth(df: pd.DataFrame, env: Env) -> Plot:
    table_rows = df
    df, idle = split_idle(df)
    title = "Achieved bandwidth as a fraction of measured copy bandwidth"

    def copy_bandwidth_line(ax, p):
        if not p[p["ok"]].empty:
            ax.axhline(1.0, color="black", lw=1.0)
            ax.text(0.01, 1.0, " copy bandwidth", transform=ax.get_yaxis_transform(), fontsize=6.5, va="bottom")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0%}" if v >= 0.01 else f"{v:.1%}"))

    fig = per_token_panels(
        df.assign(bw_frac=an.bandwidth_fraction(df, env.copy_bandwidth_gbs)),
        idle,
        env,
        title,
        "bw_frac",
        "fraction of copy bandwidth",
        "no bandwidth figures: the run recorded neither bytes moved nor a copy bandwidth",
        copy_bandwidth_line,
        include_y=[1.0],
    )
    bw = f"{env.copy_bandwidth_gbs:.0f} GB/s" if env.copy_bandwidth_gbs else "as recorded per row"
    caption = (
        "The op's minimum bytes (inputs read once, output written once) over the median time, as a fraction "
        f"of the device-to-device copy bandwidth measured at the start of the run ({bw}): the memory "
        "roofline. Attention's minimum bytes grow like T while its work grows like T^2, so its fraction "
        "falls with length (it is compute-bound). " + NOT_OK_NOTE
    )
    return Plot(
        "fig7_bandwidth",
        title,
        caption,
        fig,
        table_of(
            table_rows.assign(bw_frac=an.bandwidth_fraction(table_rows, env.copy_bandwidth_gbs)),
            [*BASE_COLS, "gbs", "bw_frac", "median_ms"],
        ),
    )
