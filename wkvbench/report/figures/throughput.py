"""Figure 2: tokens per second against tokens, and seconds of audio per second against seconds.

The whole figure is a :class:`~.metric.MetricFigure` spec: two rows of panels, one metric each.
"""

from __future__ import annotations

from wkvbench.report.figures.layout import NOT_OK_NOTE
from wkvbench.report.figures.metric import MetricFigure, Panels

fig_throughput = MetricFigure(
    "fig2_throughput",
    "Throughput vs sequence length",
    "Throughput (batch x tokens / median, and batch x seconds of audio / median) against sequence "
    "length, one column per model size. At equal audio AST processes about 2.4x the tokens of "
    "A-RWKV. " + NOT_OK_NOTE,
    panels=(
        Panels("tokens_per_s", "tokens per second"),
        Panels("audio_s_per_s", "seconds of audio per second", x="seconds", xlabel="seconds of audio per sequence"),
    ),
)
