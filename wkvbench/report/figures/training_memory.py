"""Figure 13: training memory of the Bi-WKV7 implementations at equal tokens.

Bytes saved for the backward (``saved_bytes``, any device) and the allocator's peak (GPU runs)
of the ``bwd``/``fwd_bwd`` cells; what is counted: docs/notes/report.md.
"""

from __future__ import annotations

import pandas as pd

from wkvbench.report.figures.layout import NOT_OK_NOTE, Plot
from wkvbench.report.figures.memory import gpu_memory_line
from wkvbench.report.figures.metric import MetricFigure, Panels, plot_metric
from wkvbench.report.load import Env
from wkvbench.report.metrics import long_table
from wkvbench.schema import TRAINING_MODES

_SPEC = MetricFigure(
    "fig13_training_memory",
    "Bi-WKV7 training memory vs sequence length",
    "Training cells (bwd, fwd_bwd) of Bi-WKV7: top, the bytes each implementation's forward keeps "
    "for its backward beyond the inputs (autograd's saved tensors, measured at the timed shape on any "
    "device); bottom, the CUDA allocator's peak during the timed calls (GPU runs). Fused kernels save "
    "state checkpoints of both directions; audiorwkv_catflip also keeps the inputs' flipped copies; "
    "fla_chunk runs each direction separately. " + NOT_OK_NOTE,
    panels=(
        Panels("saved_memory", "saved for backward (MiB)", scale=2**20),
        Panels("peak_memory", "peak allocated memory (MiB)", scale=2**20),
    ),
    missing="No Bi-WKV7 training cells (modes bwd, fwd_bwd) with memory figures in this run.",
    decorate=gpu_memory_line,
)


def fig_training_memory(df: pd.DataFrame, env: Env, long: pd.DataFrame | None = None) -> Plot:
    """Figure 13 from the tidy results (only the ``bi_wkv7`` training cells are drawn)."""
    long = long_table(df, env) if long is None else long
    return plot_metric(_SPEC, df, env, long[(long["op"] == "bi_wkv7") & long["mode"].isin(TRAINING_MODES)])
