"""Figure 7: achieved bandwidth as a fraction of the measured copy bandwidth (the memory roofline)."""

from __future__ import annotations

from matplotlib.ticker import FuncFormatter

from wkvbench.report.figures.layout import NOT_OK_NOTE
from wkvbench.report.figures.metric import MetricFigure, Panel, Panels
from wkvbench.report.load import Env


def copy_bandwidth_line(ax, panel: Panel) -> None:
    """The roofline: a line at 100% of the copy bandwidth, and the y-axis in percent."""
    if not panel.drawn.empty:
        ax.axhline(1.0, color="black", lw=1.0)
        ax.text(0.01, 1.0, " copy bandwidth", transform=ax.get_yaxis_transform(), fontsize=6.5, va="bottom")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0%}" if v >= 0.01 else f"{v:.1%}"))


def _caption(env: Env) -> str:
    bw = f"{env.copy_bandwidth_gbs:.0f} GB/s" if env.copy_bandwidth_gbs else "as recorded per row"
    return (
        "The op's minimum bytes (inputs read once, output written once) over the median time, as a fraction "
        f"of the device-to-device copy bandwidth measured at the start of the run ({bw}): the memory "
        "roofline. Attention's minimum bytes grow like T while its work grows like T^2, so its fraction "
        "falls with length (it is compute-bound). " + NOT_OK_NOTE
    )


fig_bandwidth = MetricFigure(
    "fig7_bandwidth",
    "Achieved bandwidth as a fraction of measured copy bandwidth",
    _caption,
    panels=(Panels("bandwidth_fraction", "fraction of copy bandwidth"),),
    table=("bandwidth", "bandwidth_fraction", "latency"),
    missing="no bandwidth figures: the run recorded neither bytes moved nor a copy bandwidth",
    marks=lambda ax, panel: (1.0,),  # the y-range always shows the roofline
    decorate=copy_bandwidth_line,
)
