"""Shared layout of the report's figures: the grid, axes, legend, footer, not-ok band and saving.

Every figure module builds on these, so the conventions hold everywhere:

* one colour + marker + line style per implementation (:mod:`wkvbench.report.style`);
* cells that are not ``ok`` are never dropped: they are drawn as hollow markers in a band at
  the top of their panel, at their x position, with the status written beside the first of a
  run (``OOM``, ``failed``, ``wrong``, ``timeout``, ``skipped``);
* a panel with nothing to draw says why, instead of disappearing;
* every figure carries a footer: device, driver, commit, date.

Matplotlib's object API only (no pyplot state; Agg/SVG canvases).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from wkvbench.report.load import SIZES, Env  # noqa: E402
from wkvbench.report.style import STATUS_LABEL, impl_label, op_sort_key, style_for  # noqa: E402

RC = {
    "font.size": 8.5,
    "axes.titlesize": 9,
    "axes.labelsize": 8.5,
    "legend.fontsize": 8,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.4,
    "lines.markersize": 4.5,
    "svg.hashsalt": "wkvbench",  # stable element ids: the SVG only changes when the figure does
    "svg.fonttype": "none",  # text stays text: smaller files, searchable, crisp at any zoom
}
BAND_STEP = 0.075  # axes fraction between rows of not-ok markers
NOT_OK_NOTE = (
    "Hollow markers in the band at the top of a panel are cells that are not ok (the status is written "
    "beside them); they have no valid timing and are never used for a speed-up."
)


@dataclass
class Plot:
    """One rendered figure and the table of what it shows."""

    name: str
    title: str
    caption: str
    figure: Figure
    table: pd.DataFrame
    files: list[Path] = field(default_factory=list)


# ----------------------------------------------------------------------------- layout helpers
class Legend:
    """Collects one legend entry per implementation (and extras) across a figure's panels.

    ``idle`` (from :func:`split_idle`) lists implementations skipped in every cell of the run:
    they get a legend entry with the reason instead of a band of markers in every panel.
    """

    def __init__(self, idle: pd.DataFrame | None = None):
        self.entries: dict[str, object] = {}
        self._op: dict[str, str] = {}  # an implementation's entry -> its op
        self.idle = idle if idle is not None else pd.DataFrame(columns=["op", "impl", "note"])

    def impl(self, op: str, impl: str, label: str | None = None) -> str:
        """The entry of ``impl`` of ``op`` (its style), shown as ``label`` (default: its registered label)."""
        label = label or impl_label(op, impl)
        if label not in self.entries:
            self.entries[label] = Line2D([], [], markersize=5, **style_for(op, impl).kwargs())
            self._op[label] = op
        return label

    def extra(self, label: str, handle) -> None:
        self.entries.setdefault(label, handle)

    def not_ok(self) -> None:
        self.extra("not ok (status beside)", Line2D([], [], marker="o", mfc="none", color="#555555", ls="none"))

    def draw(self, fig: Figure) -> None:
        if not self.entries:
            return
        order = sorted(self._op, key=lambda k: (op_sort_key(self._op[k]), k))
        order += [k for k in self.entries if k not in self._op]
        handles = [self.entries[k] for k in order]
        if not self.idle.empty:
            order.append("skipped in every cell:")
            handles.append(Line2D([], [], ls="none"))
            for r in self.idle.sort_values(["op", "impl"], key=_op_then_name).itertuples():
                st = style_for(r.op, r.impl)
                handles.append(Line2D([], [], marker=st.marker, mfc="white", mec=st.colour, ls="none"))
                order.append(f"{impl_label(r.op, r.impl)}: {_short_note(r.note)}")
        fig.legend(handles, order, loc="outside right upper", frameon=False)


def _op_then_name(s: pd.Series) -> pd.Series:
    return s.map(op_sort_key) if s.name == "op" else s


def _short_note(note: str, width: int = 42) -> str:
    note = " ".join(str(note or "no reason given").split())
    return note if len(note) <= width else note[: width - 1] + "…"


def split_idle(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows of implementations that ran somewhere, one row per implementation skipped in every cell).

    The second frame has ``op, impl, note`` (the most common reason).
    """
    if df.empty:
        return df, pd.DataFrame(columns=["op", "impl", "note"])
    all_skipped = df.groupby(["op", "impl"])["status"].transform(lambda st: bool((st == "skipped").all()))
    idle_rows = df[all_skipped.astype(bool)]
    idle = (
        idle_rows.groupby(["op", "impl"], as_index=False)["note"]
        .agg(lambda n: n.mode().iloc[0] if len(n.mode()) else "")
        .reset_index(drop=True)
    )
    return df[~all_skipped.astype(bool)], idle


def new_figure(
    nrows: int, ncols: int, env: Env, title: str, w: float = 3.6, h: float = 2.7
) -> tuple[Figure, np.ndarray]:
    height = nrows * h + 0.75
    # the legend sits outside on the right; keep room for it beside a left-aligned title
    fig = Figure(figsize=(max(ncols * w + 2.6, 0.09 * len(title) + 2.9), height), layout="constrained", dpi=110)
    foot = 0.26 / height
    fig.get_layout_engine().set(rect=(0, foot, 1, 1 - foot), h_pad=0.06, w_pad=0.06)
    fig.text(0.005, 0.004, env.footer(), fontsize=6.5, color="#444444", ha="left", va="bottom")
    fig.suptitle(title, fontsize=10.5, fontweight="bold", x=0.01, ha="left")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def unmeasured(env: Env, title: str, text: str) -> tuple[Figure, np.ndarray]:
    """A one-panel figure that says what the run did not measure."""
    fig, axes = new_figure(1, 1, env, title, h=1.4)
    empty_panel(axes[0, 0], text)
    return fig, axes


def empty_panel(ax, text: str) -> None:
    """A panel with nothing to draw: no axes, just the reason."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, color="#666666", transform=ax.transAxes)


def _x_frac(ax, xv: float) -> float:
    """Where ``xv`` lies across the panel (0 left edge, 1 right edge)."""
    lo, hi = ax.get_xlim()
    if ax.get_xscale() == "log":
        return (math.log10(xv) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    return (xv - lo) / (hi - lo)


def set_xlim(ax, xs, log: bool, right_pad: float = 0.08) -> None:
    xs = np.asarray([x for x in xs if x is not None and np.isfinite(x) and (x > 0 or not log)], dtype=float)
    if xs.size == 0:
        return
    lo, hi = xs.min(), xs.max()
    if log:
        span = max(math.log10(hi / lo), 0.3)
        ax.set_xscale("log")
        ax.set_xlim(lo / 10 ** (0.06 * span), hi * 10 ** (right_pad * span + 0.02))
        # plain labels (200, 500, 2k, 10k) at 1-2-5 or 1-3 steps over short ranges; minor ticks unlabelled
        subs = (1.0, 2.0, 5.0) if span < 1.6 else (1.0, 3.0) if span < 3.2 else (1.0,)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.xaxis.set_major_formatter(FuncFormatter(_plain))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        span = max(hi - lo, 1.0)
        ax.set_xlim(lo - 0.06 * span, hi + right_pad * span)


def _plain(v, _pos=None) -> str:
    return f"{v / 1000:g}k" if v >= 1000 else f"{v:g}"


def headroom(ax, n_band_rows: int, log: bool) -> None:
    """Stretch the y-range so data stays below the band of not-ok markers."""
    if n_band_rows == 0:
        return
    frac = 1 - (BAND_STEP * n_band_rows + 0.05)
    lo, hi = ax.get_ylim()
    if log:
        llo, lhi = math.log10(lo), math.log10(hi)
        ax.set_ylim(lo, 10 ** (llo + (lhi - llo) / frac))
    else:
        ax.set_ylim(lo, lo + (hi - lo) / frac)


def mark_not_ok(
    ax, bad: pd.DataFrame, x: str, legend: Legend, label_col: str = "status", rank0: int = 0, legend_col: str = ""
) -> int:
    """Hollow markers in a band at the top of the panel for cells that are not ok; returns rows used.

    ``legend_col``: a column naming each implementation's legend entry (a network: "AST-B (torch_eager)")."""
    if bad.empty:
        return 0
    trans = ax.get_xaxis_transform()
    keys = sorted({(r.op, r.impl) for r in bad.itertuples()}, key=lambda k: (op_sort_key(k[0]), k[1]))
    for rank, (op, impl) in enumerate(keys, start=rank0):
        y = 0.955 - BAND_STEP * rank
        st = style_for(op, impl)
        g = bad[(bad["op"] == op) & (bad["impl"] == impl)].sort_values(x)
        ax.scatter(
            g[x],
            np.full(len(g), y),
            transform=trans,
            marker=st.marker,
            facecolors="white",
            edgecolors=st.colour,
            linewidths=1.1,
            s=26,
            zorder=6,
            clip_on=False,
        )
        prev = None
        for xv, lab in zip(g[x], g[label_col], strict=True):
            if lab != prev:  # label the first of a run of equal statuses; text kept inside the panel
                left = _x_frac(ax, xv) > 0.75
                ax.annotate(
                    lab,
                    (xv, y),
                    xycoords=trans,
                    xytext=(-5 if left else 5, -0.5),
                    textcoords="offset points",
                    fontsize=6.5,
                    va="center",
                    ha="right" if left else "left",
                    color=st.colour,
                    zorder=7,
                )
            prev = lab
        legend.impl(op, impl, str(g[legend_col].iloc[0]) if legend_col else None)
    legend.not_ok()
    return len(keys)


def status_text(df: pd.DataFrame) -> pd.Series:
    return df["status"].map(lambda s: STATUS_LABEL.get(s, s))


def log_y(ax, ys=()) -> None:
    """Log y axis; over less than ~1.6 decades of ``ys``, labels at 1-2-5 steps (one decade has one power of 10)."""
    ax.set_yscale("log")
    ax.yaxis.set_minor_formatter(NullFormatter())
    ys = np.asarray([v for v in ys if v is not None and np.isfinite(v) and v > 0], dtype=float)
    if ys.size and math.log10(ys.max() / ys.min()) < 1.6:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(_plain))


def draw_lines(ax, df: pd.DataFrame, x: str, y: str, legend: Legend, lo: str | None = None, hi: str | None = None):
    """One line per (op, impl) over the ok rows; a p20-p80 band when ``lo``/``hi`` are given."""
    ok = df[df["ok"] & df[y].notna() & (df[y] > 0)]
    for (op, impl), g in sorted(ok.groupby(["op", "impl"]), key=lambda kv: (op_sort_key(kv[0][0]), kv[0][1])):
        g = g.sort_values(x)
        st = style_for(op, impl)
        ax.plot(g[x], g[y], **st.kwargs(), zorder=3)
        if lo and hi and g[lo].notna().all() and g[hi].notna().all():
            ax.fill_between(g[x], g[lo], g[hi], color=st.colour, alpha=0.15, linewidth=0, zorder=2)
        legend.impl(op, impl)
    return ok


def finish_panel(
    ax,
    df: pd.DataFrame,
    x: str,
    y: str,
    legend: Legend,
    logx=True,
    logy=True,
    empty="no cells",
    right_pad: float = 0.08,
    include_y=(),
    xlim=None,
) -> pd.DataFrame:
    """Axis limits (``include_y``: values the y-range must show), the not-ok band, the empty-panel message.

    Returns the ok rows drawn.
    """
    ok = df[df["ok"] & df[y].notna() & (df[y] > 0)]
    bad = df[~df["ok"]].assign(_label=status_text(df[~df["ok"]]))
    if df.empty:
        empty_panel(ax, empty)
        return ok
    if xlim is None:
        set_xlim(ax, df[x], logx, right_pad)
    else:
        ax.set_xlim(*xlim)
    if ok.empty:
        ax.set_yticks([])
        why = "not measured here (ok cells, no values)" if df["ok"].any() else "no ok cells here"
        ax.text(0.5, 0.4, why, ha="center", va="center", fontsize=8, color="#666666", transform=ax.transAxes)
    else:
        if logy:
            log_y(ax, ok[y])
        if len(include_y):
            lo, hi = ax.get_ylim()
            pad = 1.6 if logy else 1.0
            ax.set_ylim(min(lo, min(include_y) / pad), max(hi, max(include_y) * pad))
    n = mark_not_ok(ax, bad, x, legend, label_col="_label")
    if not ok.empty:
        headroom(ax, n, logy)
    return ok


def size_order(df: pd.DataFrame) -> list[str]:
    """The model sizes present: T, S, B first, then any other (a plugin's preset), sorted."""
    present = list(df["size"].unique())
    return [s for s in SIZES if s in present] + sorted(s for s in present if s not in SIZES)


def table_of(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """The columns of ``cols`` that ``df`` has, in that order: a figure's table."""
    return df[[c for c in cols if c in df.columns]].reset_index(drop=True)


#: The case columns every figure's table starts with.
BASE_COLS = [
    *("op", "impl", "model", "size", "device", "dtype", "batch", "variant", "mode", "tokens", "seconds", "status")
]


def save_plot(plot: Plot, out_dir: Path, formats=("png", "svg")) -> None:
    """Write ``plot`` as ``out_dir/NAME.{fmt}`` for each format and its table as ``NAME.csv``."""
    for fmt in formats:
        path = out_dir / f"{plot.name}.{fmt}"
        plot.figure.savefig(
            path,
            format=fmt,
            dpi=130 if fmt == "png" else None,
            metadata={"Software": None} if fmt == "png" else {"Date": None},
        )
        plot.figure.set_layout_engine("none")  # laid out once: later formats reuse the positions
        plot.files.append(path)
    csv = out_dir / f"{plot.name}.csv"
    plot.table.to_csv(csv, index=False)
    plot.files.append(csv)
