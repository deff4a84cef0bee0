"""Figure 5: peak allocated memory against tokens, with the GPU's memory where the lines reach it."""

from __future__ import annotations

from wkvbench.report.figures.layout import NOT_OK_NOTE
from wkvbench.report.figures.metric import MetricFigure, Panel, Panels


def gpu_memory_line(ax, panel: Panel) -> None:
    """A dashed line at the GPU's memory, when the panel's y-range reaches it."""
    total = panel.env.gpu_mem_bytes
    if total and not panel.drawn.empty:
        cap = total / panel.spec.scale
        if ax.get_ylim()[1] >= cap:
            ax.axhline(cap, color="black", lw=0.8, ls="--")
            ax.text(0.02, cap, f" GPU memory {total / 2**30:.0f} GiB", fontsize=6.5, va="bottom",
                    transform=ax.get_yaxis_transform())  # fmt: skip


fig_memory = MetricFigure(
    "fig5_memory",
    "Peak memory vs sequence length",
    "torch.cuda.max_memory_allocated during each cell (reset per cell), against tokens. "
    "OOM cells are drawn where they happened, in the band at the top. " + NOT_OK_NOTE,
    panels=(Panels("peak_memory", "peak allocated memory (MiB)", scale=2**20),),
    missing="peak memory was not measured (no CUDA allocator on a CPU run)",
    decorate=gpu_memory_line,
)
