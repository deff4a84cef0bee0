"""The report's figures: one module per figure over the shared layout of :mod:`.layout`.

Each ``fig_*`` takes the tidy results table, the :class:`~wkvbench.report.load.Env` and
optionally the long table, and returns a :class:`~.layout.Plot` (figure, title, caption and the
table of what it drew). :func:`draw_all` renders :data:`FIGURES` (every op but ``network``) and
:data:`NETWORK_FIGURES` (the ``network`` rows) to ``OUT/figures``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib
import pandas as pd

from wkvbench.report.figures.accuracy import fig_accuracy
from wkvbench.report.figures.bandwidth import fig_bandwidth
from wkvbench.report.figures.first_call import fig_first_call
from wkvbench.report.figures.grad_accuracy import fig_grad_accuracy
from wkvbench.report.figures.latency import fig_latency
from wkvbench.report.figures.layout import RC, Plot, save_plot, split_idle
from wkvbench.report.figures.memory import fig_memory
from wkvbench.report.figures.model_size import fig_model_size
from wkvbench.report.figures.network import (
    fig_network_params,
    fig_network_speedup,
    fig_network_throughput,
    kernel_rows,
)
from wkvbench.report.figures.speedup import fig_speedup
from wkvbench.report.figures.throughput import fig_throughput
from wkvbench.report.figures.training_memory import fig_training_memory
from wkvbench.report.load import Env
from wkvbench.report.metrics import long_table

#: (name, draw(df, env, long) -> Plot), in report order.
FIGURES: tuple[tuple[str, Callable[[pd.DataFrame, Env, pd.DataFrame], Plot]], ...] = (
    ("fig1_latency", fig_latency),
    ("fig2_throughput", fig_throughput),
    ("fig3_speedup_audio", lambda df, env, long: fig_speedup(df, env, "audio")),
    ("fig3_speedup_tokens", lambda df, env, long: fig_speedup(df, env, "tokens")),
    ("fig4_model_size", lambda df, env, long: fig_model_size(df, env)),
    ("fig5_memory", fig_memory),
    ("fig6_accuracy", fig_accuracy),
    ("fig7_bandwidth", fig_bandwidth),
    ("fig8_first_call", lambda df, env, long: fig_first_call(df, env)),
    ("fig9_grad_accuracy", fig_grad_accuracy),
    ("fig13_training_memory", fig_training_memory),
)
#: Whole networks (op ``network``): drawn from the full table, each selects the network rows.
NETWORK_FIGURES: tuple[tuple[str, Callable[[pd.DataFrame, Env, pd.DataFrame], Plot]], ...] = (
    ("fig10_network_throughput", fig_network_throughput),
    ("fig11_network_speedup", fig_network_speedup),
    ("fig12_network_params", fig_network_params),
)

__all__ = [
    "FIGURES",
    "NETWORK_FIGURES",
    "Plot",
    "draw_all",
    "fig_accuracy",
    "fig_bandwidth",
    "fig_first_call",
    "fig_grad_accuracy",
    "fig_latency",
    "fig_memory",
    "fig_model_size",
    "fig_speedup",
    "fig_throughput",
    "fig_training_memory",
    "split_idle",
]


def draw_all(df: pd.DataFrame, env: Env, out_dir: Path, formats=("png", "svg")) -> list[Plot]:
    """Render every figure into ``out_dir`` (PNG, SVG and the CSV of its table); returns the plots."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kernels = kernel_rows(df)
    long = long_table(kernels, env)
    plots = []
    with matplotlib.rc_context(RC):
        for _, make in FIGURES:
            plot = make(kernels, env, long)
            save_plot(plot, out_dir, formats)
            plots.append(plot)
        for _, make in NETWORK_FIGURES:
            plot = make(df, env, None)
            save_plot(plot, out_dir, formats)
            plots.append(plot)
    return plots
