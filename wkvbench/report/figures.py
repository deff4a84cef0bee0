"""The report's figures, drawn with matplotlib's object API (no pyplot state; Agg/SVG canvases).

Each ``fig_*`` function takes the tidy results table (:func:`wkvbench.report.load.tidy`) and
the :class:`~wkvbench.report.load.Env`, and returns a :class:`Plot`: the matplotlib figure, its
title and caption, and the table of exactly what it drew (written beside the PNG/SVG as CSV and
shown in the HTML report). :func:`draw_all` renders every figure to ``OUT/figures``.

Conventions kept by every figure:

* one colour + marker + line style per implementation (:mod:`wkvbench.report.style`);
* cells that are not ``ok`` are never dropped: they are drawn as hollow markers in a band at
  the top of their panel, at their x position, with the status written beside the first of a
  run (``OOM``, ``failed``, ``wrong``, ``timeout``, ``skipped``);
* a panel with nothing to draw says why, instead of disappearing;
* every figure carries a footer: device, driver, commit, date.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from wkvbench.report import analysis as an  # noqa: E402
from wkvbench.report.load import SIZES, Env  # noqa: E402
from wkvbench.report.style import (  # noqa: E402
    OP_LABEL,
    STATUS_LABEL,
    fmt_ms,
    impl_label,
    op_sort_key,
    style_for,
)

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
class _Legend:
    """Collects one legend entry per implementation (and extras) across a figure's panels.

    ``idle`` (from :func:`split_idle`) lists implementations skipped in every cell of the run:
    they get a legend entry with the reason instead of a band of markers in every panel.
    """

    def __init__(self, idle: pd.DataFrame | None = None):
        self.entries: dict[str, object] = {}
        self.idle = idle if idle is not None else pd.DataFrame(columns=["op", "impl", "note"])

    def impl(self, op: str, impl: str) -> str:
        label = impl_label(op, impl)
        if label not in self.entries:
            self.entries[label] = Line2D([], [], markersize=5, **style_for(op, impl).kwargs())
        return label

    def extra(self, label: str, handle) -> None:
        self.entries.setdefault(label, handle)

    def not_ok(self) -> None:
        self.extra("not ok (status beside)", Line2D([], [], marker="o", mfc="none", color="#555555", ls="none"))

    def draw(self, fig: Figure) -> None:
        if not self.entries:
            return
        impls = {k: v for k, v in self.entries.items() if any(k.startswith(p) for p in OP_LABEL.values())}
        order = sorted(impls, key=lambda k: (op_sort_key(_op_of(k)), k))
        order += [k for k in self.entries if k not in impls]
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


def _op_of(label: str) -> str:
    for op, name in OP_LABEL.items():
        if label.startswith(name + " "):
            return op
    return label


def _new_figure(
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


def _unmeasured(env: Env, title: str, text: str) -> tuple[Figure, np.ndarray]:
    """A one-panel figure that says what the run did not measure."""
    fig, axes = _new_figure(1, 1, env, title, h=1.4)
    _empty(axes[0, 0], text)
    return fig, axes


def _empty(ax, text: str) -> None:
    """A panel with nothing to draw: no axes, just the reason."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, color="#666666", transform=ax.transAxes)


def _x_frac(ax, xv: float) -> float:
    """Where ``xv`` lies across the panel (0 left edge, 1 right edge)."""
    lo, hi = ax.get_xlim()
    if ax.get_xscale() == "log":
        return (math.log10(xv) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    return (xv - lo) / (hi - lo)


def _set_xlim(ax, xs, log: bool, right_pad: float = 0.08) -> None:
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


def _headroom(ax, n_band_rows: int, log: bool) -> None:
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


def _mark_not_ok(ax, bad: pd.DataFrame, x: str, legend: _Legend, label_col: str = "status", rank0: int = 0) -> int:
    """Hollow markers in a band at the top of the panel for cells that are not ok; returns rows used."""
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
        legend.impl(op, impl)
    legend.not_ok()
    return len(keys)


def _status_text(df: pd.DataFrame) -> pd.Series:
    return df["status"].map(lambda s: STATUS_LABEL.get(s, s))


def _log_y(ax) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_minor_formatter(NullFormatter())


def _lines(ax, df: pd.DataFrame, x: str, y: str, legend: _Legend, lo: str | None = None, hi: str | None = None):
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


def _finish_panel(
    ax,
    df: pd.DataFrame,
    x: str,
    y: str,
    legend: _Legend,
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
    bad = df[~df["ok"]].assign(_label=_status_text(df[~df["ok"]]))
    if df.empty:
        _empty(ax, empty)
        return ok
    if xlim is None:
        _set_xlim(ax, df[x], logx, right_pad)
    else:
        ax.set_xlim(*xlim)
    if ok.empty:
        ax.set_yticks([])
        ax.text(
            0.5, 0.4, "no ok cells here", ha="center", va="center", fontsize=8, color="#666666", transform=ax.transAxes
        )
    else:
        if logy:
            _log_y(ax)
        if len(include_y):
            lo, hi = ax.get_ylim()
            pad = 1.6 if logy else 1.0
            ax.set_ylim(min(lo, min(include_y) / pad), max(hi, max(include_y) * pad))
    n = _mark_not_ok(ax, bad, x, legend, label_col="_label")
    if not ok.empty:
        _headroom(ax, n, logy)
    return ok


def _sizes(df: pd.DataFrame) -> list[str]:
    present = list(df["size"].unique())
    return [s for s in SIZES if s in present] + sorted(s for s in present if s not in SIZES)


def _panel_title(ax, size: str, where: dict) -> None:
    extra = an.slice_label(where)
    ax.set_title(f"size {size}" + (f"  ({extra})" if extra else ""))


def _table(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    return df[[c for c in cols if c in df.columns]].reset_index(drop=True)


BASE_COLS = ["op", "impl", "model", "size", "device", "dtype", "batch", "variant", "tokens", "seconds", "status"]


# ----------------------------------------------------------------------------- 1. latency
def fig_latency(df: pd.DataFrame, env: Env) -> Plot:
    table_rows = df
    df, idle = split_idle(df)
    rows, sizes = an.slices(df), _sizes(df)
    title = "Latency vs tokens (log-log)"
    fig, axes = _new_figure(len(rows), max(1, len(sizes)), env, title)
    legend = _Legend(idle)
    slopes = []
    for i, (where, part) in enumerate(rows):
        for j, size in enumerate(sizes or ["-"]):
            ax = axes[i, j]
            p = part[part["size"] == size]
            _lines(ax, p, "tokens", "median_ms", legend, "p20_ms", "p80_ms")
            ok = _finish_panel(ax, p, "tokens", "median_ms", legend)
            per_op: dict[str, list[float]] = {}
            for (op, impl), g in ok.groupby(["op", "impl"]):
                s = an.loglog_slope(g["tokens"], g["median_ms"])
                slopes.append({"op": op, "impl": impl, "size": size, **where, "slope": s})
                if np.isfinite(s):
                    per_op.setdefault(op, []).append(s)
            if not ok.empty:
                _guides(ax)
            _panel_title(ax, size, where)
            _slope_line(ax, per_op)
            ax.set_xlabel("tokens per sequence")
            if j == 0:
                ax.set_ylabel("median latency (ms)")
    legend.extra("guide: slope 1 (linear) / 2 (quadratic)", Line2D([], [], color="#999999", ls=":", lw=1))
    legend.draw(fig)
    table = _table(table_rows, [*BASE_COLS, "median_ms", "p20_ms", "p80_ms"])
    slope_df = pd.DataFrame(slopes)
    if not slope_df.empty:
        table = table.merge(
            slope_df[["op", "impl", "size", *where.keys(), "slope"]].drop_duplicates(),
            on=["op", "impl", "size", *where.keys()],
            how="left",
        )
    caption = (
        "Median latency per call against tokens per sequence, p20-p80 band shaded, one panel per model "
        "size. Under each title: the log-log slope between the two longest sequences of each line (range over the "
        "implementations of an op; per line in the table): about 1 for a linear-time scan, about 2 for "
        "attention once its T^2 term dominates (below that, fixed launch costs pull every slope under 1). "
        "Dotted grey guides have slopes 1 and 2. " + NOT_OK_NOTE
    )
    return Plot("fig1_latency", title, caption, fig, table)


def _guides(ax) -> None:
    """Dotted slope-1 and slope-2 guide lines from the lower-left corner of the panel."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    lx0, lx1, ly0, ly1 = math.log10(x0), math.log10(x1), math.log10(y0), math.log10(y1)
    start_x = lx0 + 0.04 * (lx1 - lx0)
    start_y = ly0 + 0.03 * (ly1 - ly0)
    for p, lab in ((1, "∝T"), (2, "∝T²")):
        xs = np.linspace(start_x, lx1, 20)
        ys = start_y + p * (xs - start_x)
        ax.plot(10**xs, 10**ys, color="#aaaaaa", ls=":", lw=1, zorder=1, scalex=False, scaley=False)
        # label the guide halfway up the panel (or at its right end if it stays lower)
        x_lab = min(lx1 - 0.03 * (lx1 - lx0), start_x + 0.45 * (ly1 - ly0) / p)
        ax.text(
            10**x_lab,
            10 ** (start_y + p * (x_lab - start_x)),
            lab,
            fontsize=7,
            color="#888888",
            ha="right",
            va="bottom",
        )


def _slope_line(ax, per_op: dict[str, list[float]]) -> None:
    """Under the panel title: the log-log slope between the two longest sequences, per op (range over impls)."""
    if not per_op:
        return
    short = {"bi_wkv7": "Bi-WKV7", "attention": "attn", "bi_selective_scan": "scan"}
    parts = []
    for op in sorted(per_op, key=op_sort_key):
        lo, hi = min(per_op[op]), max(per_op[op])
        parts.append(f"{short.get(op, op)} {lo:.2f}" + (f"-{hi:.2f}" if hi - lo >= 0.005 else ""))
    ax.text(0.5, 1.015, "slope at longest T: " + ", ".join(parts), transform=ax.transAxes, ha="center",
            va="bottom", fontsize=6.5, color="#333333")  # fmt: skip
    ax.set_title(ax.get_title(), pad=13)


# ----------------------------------------------------------------------------- 2. throughput
def fig_throughput(df: pd.DataFrame, env: Env) -> Plot:
    table_rows = df
    df, idle = split_idle(df)
    rows, sizes = an.slices(df), _sizes(df)
    title = "Throughput vs sequence length"
    metrics = (
        ("tokens", "tokens_per_s", "tokens per second", "tokens per sequence"),
        ("seconds", "audio_s_per_s", "seconds of audio per second", "seconds of audio per sequence"),
    )
    fig, axes = _new_figure(2 * len(rows), max(1, len(sizes)), env, title)
    legend = _Legend(idle)
    for i, (where, part) in enumerate(rows):
        for k, (x, y, ylabel, xlabel) in enumerate(metrics):
            for j, size in enumerate(sizes or ["-"]):
                ax = axes[2 * i + k, j]
                p = part[(part["size"] == size) & part[x].notna()]
                _lines(ax, p, x, y, legend)
                _finish_panel(ax, p, x, y, legend)
                _panel_title(ax, size, where)
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
        "fig2_throughput", title, caption, fig, _table(table_rows, [*BASE_COLS, "tokens_per_s", "audio_s_per_s"])
    )


# ----------------------------------------------------------------------------- 3. speed-up
def fig_speedup(df: pd.DataFrame, env: Env, view: str) -> Plot:
    df, idle = split_idle(df)
    sp = an.speedups(df, view)
    x = an.VIEW_X[view]
    wkv = df[df["op"] == "bi_wkv7"]
    panels = [(where, size) for where, part in an.slices(wkv) for size in _sizes(part)]
    baselines = [bl for bl in an.BASELINES if (sp["baseline"] == bl.name).any()]
    name = {"audio": "equal audio", "tokens": "equal tokens"}[view]
    title = f"Speed-up of Bi-WKV7 over attention and the Mamba scan ({name})"
    fig, axes = _new_figure(max(1, len(panels)), max(1, len(baselines)), env, title)
    legend = _Legend(idle)
    if not panels or not baselines:
        _empty(
            axes[0, 0],
            "no Bi-WKV7 cells"
            if not panels
            else f"no attention or Mamba-scan cells\nmatch the Bi-WKV7 cells at equal {view}",
        )
    for i, (where, size) in enumerate(panels):
        for j, bl in enumerate(baselines):
            ax = axes[i, j]
            p = an.select(sp[(sp["baseline"] == bl.name) & (sp["size"] == size)], where)
            ax.set_title(f"vs {bl.label}, size {size}" + (f"\n{an.slice_label(where)}" if where else ""))
            if p.empty:
                _empty(ax, f"no {bl.label} cells\nat size {size}" + (f" ({an.slice_label(where)})" if where else ""))
                continue
            ax.set_xlabel("seconds of audio" if view == "audio" else "tokens per sequence")
            if j == 0:
                ax.set_ylabel("speed-up (x, higher = Bi-WKV7 faster)")
            _speedup_panel(ax, p, x, bl, paper=view == "audio" and bl.op == "attention", legend=legend)
    legend.extra("1x: as fast as the baseline", Line2D([], [], color="black", lw=0.9))
    if sp["base_interp"].astype(bool).any():
        legend.extra("baseline interpolated", Line2D([], [], marker="o", mfc="white", color="#555555", ls="none"))
    legend.draw(fig)
    match = (
        "same seconds of audio (AST sees ~2.4x the tokens of A-RWKV)"
        if view == "audio"
        else "same token count (within 1%)"
    )
    caption = (
        f"Baseline median / Bi-WKV7 median for every Bi-WKV7 implementation, cells matched on the {match} "
        "and the same model size, batch, dtype and device; shaded: the p20-p80 band (baseline p20 / "
        "Bi-WKV7 p80 to baseline p80 / Bi-WKV7 p20). Above the black 1x line Bi-WKV7 is faster. "
        "Baselines: AST attention as written (torch_eager), the fastest ok SDPA backend, the fastest ok "
        "Mamba bidirectional scan. Where the baseline was not measured at that point, its latency is "
        "interpolated log-log between the two ok cells around it (hollow markers); never extrapolated. "
        + (
            "The star marks the AudioRWKV paper's 13.3x over AST at ~5 min 28 s (a model-level figure). "
            if view == "audio"
            else ""
        )
        + NOT_OK_NOTE
        + " 'baseline OOM' etc. marks a case whose baseline had no valid timing."
    )
    table = sp.drop(columns=["ok", "base_ok"])
    return Plot(f"fig3_speedup_{view}", title, caption, fig, table)


def _speedup_panel(ax, p: pd.DataFrame, x: str, bl, paper: bool, legend: _Legend) -> None:
    ok = p[p["speedup"].notna()]
    for impl, g in ok.groupby("impl"):
        g = g.sort_values(x)
        st = style_for("bi_wkv7", impl)
        ax.plot(g[x], g["speedup"], **st.kwargs(), zorder=3)
        ax.fill_between(g[x], g["speedup_lo"], g["speedup_hi"], color=st.colour, alpha=0.15, lw=0, zorder=2)
        interp = g[g["base_interp"].astype(bool)]
        ax.plot(interp[x], interp["speedup"], ls="none", marker=st.marker, mfc="white", mec=st.colour, zorder=4)
        legend.impl("bi_wkv7", impl)
    xs = list(p[x])
    ys = [*ok["speedup_lo"], *ok["speedup_hi"], 1.0]
    if paper:
        ax.plot(
            [an.PAPER_SECONDS], [an.PAPER_SPEEDUP], marker="*", ms=11, color="black", mfc="#FFD700", ls="none", zorder=5
        )
        ax.annotate(
            "paper 13.3x",
            (an.PAPER_SECONDS, an.PAPER_SPEEDUP),
            xytext=(0, 7),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=6.5,
        )
        legend.extra(
            "AudioRWKV paper: 13.3x at 328 s", Line2D([], [], marker="*", ms=9, color="black", mfc="#FFD700", ls="none")
        )
        xs.append(an.PAPER_SECONDS)
        ys.append(an.PAPER_SPEEDUP * 1.6)  # room for its label
    _set_xlim(ax, xs, True, 0.1)
    _log_y(ax)
    ys = [v for v in ys if np.isfinite(v) and v > 0]
    lo, hi = min(ys) / 1.5, max(ys) * 1.5
    ax.set_ylim(lo, hi)
    ax.axhline(1.0, color="black", lw=0.9, zorder=1)
    if math.log10(hi / lo) < 2.5:  # few decades: label 1-2-5 steps
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    # cells with no speed-up: the Bi-WKV7 cell or the baseline is not ok
    own = p[~p["ok"]].assign(_label=_status_text(p[~p["ok"]]), op="bi_wkv7")
    n = _mark_not_ok(ax, own, x, legend, label_col="_label")
    base_bad = p[p["ok"] & ~p["base_ok"].astype(bool)].drop_duplicates(["base_impl", x])
    labels = "baseline " + base_bad["base_status"].map(lambda s: STATUS_LABEL.get(s, s))
    base_bad = base_bad.assign(op=bl.op, impl=base_bad["base_impl"], _label=labels)
    n += _mark_not_ok(ax, base_bad, x, legend, label_col="_label", rank0=n)
    _headroom(ax, n, True)


# ----------------------------------------------------------------------------- 4. vs model size
def fig_model_size(df: pd.DataFrame, env: Env) -> Plot:
    table_rows = df
    df, idle = split_idle(df)
    near = an.at_durations(df)
    targets = [t for t in an.DURATIONS if (near["target_s"] == t).any()] if not near.empty else []
    rows = an.slices(df)
    title = "Throughput vs model size at fixed audio durations"
    fig, axes = _new_figure(len(rows), max(1, len(targets)), env, title, w=3.0)
    legend = _Legend(idle)
    if not targets:
        _empty(axes[0, 0], "no cells within 30% of 10 s, 60 s or 328 s of audio")
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
            _lines(ax, p, "_x", "audio_s_per_s", legend)
            _finish_panel(ax, p, "_x", "audio_s_per_s", legend, logx=False, xlim=(-0.4, len(SIZES) - 0.4))
            ax.set_xticks(range(len(SIZES)), SIZES)
            ax.set_xlabel("model size")
            if j == 0:
                ax.set_ylabel("seconds of audio per second")
    legend.draw(fig)
    caption = (
        "Seconds of audio processed per second (batch x seconds / median) against model size "
        "(T/S/B = width 192/384/768), at the measured duration nearest 10 s, 60 s and 328 s. AST exists "
        "only at size B. " + NOT_OK_NOTE
    )
    table = _table(an.at_durations(table_rows), ["target_s", *BASE_COLS, "median_ms", "audio_s_per_s", "tokens_per_s"])
    return Plot("fig4_model_size", title, caption, fig, table)


# ----------------------------------------------------------------------------- 5. memory
def _per_token_panels(d, idle, env: Env, title: str, y: str, ylabel: str, missing: str, decorate, include_y=()):
    """One panel per (slice, model size): ``y`` against tokens, then ``decorate(ax, panel_rows)``.

    When ``y`` was never measured the figure is a single note (``missing``) instead.
    """
    rows, sizes = an.slices(d), _sizes(d)
    measured = d[y].notna().any()
    fig, axes = _new_figure(len(rows), max(1, len(sizes)), env, title) if measured else _unmeasured(env, title, missing)
    legend = _Legend(idle)
    for i, (where, _) in enumerate(rows if measured else []):
        part = an.select(d, where)
        for j, size in enumerate(sizes or ["-"]):
            ax = axes[i, j]
            p = part[part["size"] == size]
            _panel_title(ax, size, where)
            _lines(ax, p, "tokens", y, legend)
            _finish_panel(ax, p, "tokens", y, legend, include_y=include_y)
            ax.set_xlabel("tokens per sequence")
            if j == 0:
                ax.set_ylabel(ylabel)
            decorate(ax, p)
    legend.draw(fig)
    return fig


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

    fig = _per_token_panels(
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
    return Plot("fig5_memory", title, caption, fig, _table(table_rows, [*BASE_COLS, "peak_mem_bytes"]))


# ----------------------------------------------------------------------------- 6. accuracy
def _tolerance(dtype: str) -> tuple[float | None, float | None]:
    try:
        import torch

        from wkvbench.accuracy import GOAL, TOLERANCE

        dt = getattr(torch, dtype)
        return TOLERANCE.get(dt), GOAL.get(dt)
    except (ImportError, AttributeError):
        return None, None


ERR_FLOOR = 1e-12


def fig_accuracy(df: pd.DataFrame, env: Env) -> Plot:
    table_rows = df
    df, idle = split_idle(df)
    ops = sorted(df["op"].unique(), key=op_sort_key)
    dtypes = [d for d in an.DTYPE_ORDER if d in set(df["dtype"])] + sorted(set(df["dtype"]) - set(an.DTYPE_ORDER))
    title = "Accuracy: relative L2 error vs the float64 reference"
    fig, axes = _new_figure(max(1, len(ops)), max(1, len(dtypes)), env, title)
    legend = _Legend(idle)
    shown = []
    for i, op in enumerate(ops):
        for j, dtype in enumerate(dtypes):
            ax = axes[i, j]
            p = df[(df["op"] == op) & (df["dtype"] == dtype)]
            ax.set_title(f"{OP_LABEL.get(op, op)}, {dtype}")
            ax.set_xlabel("tokens per sequence")
            if j == 0:
                ax.set_ylabel("relative L2 error")
            if p.empty:
                _empty(ax, "no cells")
                continue
            has_err = p["rel_err"].notna() & np.isfinite(p["rel_err"]) & p["status"].isin(["ok", "wrong"])
            # worst error over models, batches and variants at each token count
            err = p[has_err].assign(err=p["rel_err"].clip(lower=ERR_FLOOR))
            worst = err.sort_values("err").groupby(["op", "impl", "tokens"], sort=False).tail(1)
            worst = worst.assign(ok=True)
            _lines(ax, worst, "tokens", "err", legend)
            for r in worst[worst["status"] == "wrong"].itertuples():
                ax.annotate(
                    "wrong",
                    (r.tokens, r.err),
                    xytext=(4, 3),
                    textcoords="offset points",
                    fontsize=6.5,
                    color=style_for(r.op, r.impl).colour,
                )
            combined = pd.concat([worst, p[~has_err].assign(ok=False)])
            tol, goal = _tolerance(dtype)
            tols = sorted(set(p["tol"].dropna())) or ([tol] if tol else [])
            for t in tols:
                ax.axhline(t, color="black", lw=1.0, ls="--", zorder=4)
                ax.text(0.01, t, f" bar {t:.0e}", transform=ax.get_yaxis_transform(), fontsize=6.5, va="bottom")
            if goal:
                ax.axhline(goal, color="#777777", lw=0.8, ls=":", zorder=4)
            _finish_panel(ax, combined, "tokens", "err", legend, include_y=[*tols, *([goal] if goal else [])])
            shown.append(combined)
    legend.extra("accuracy bar (CONTRACT 5)", Line2D([], [], color="black", ls="--", lw=1))
    legend.extra("goal", Line2D([], [], color="#777777", ls=":", lw=0.8))
    legend.draw(fig)
    idle_rows = table_rows.merge(idle[["op", "impl"]], on=["op", "impl"])
    table = pd.concat([*shown, idle_rows]) if shown else idle_rows
    table = _table(table, [*BASE_COLS, "rel_err", "max_abs_err", "tol"])
    caption = (
        "Relative L2 error against the float64 reference (CONTRACT section 5), worst over models, batches "
        "and input variants at each token count, per implementation and I/O dtype. Dashed: the bar an "
        "implementation must meet (float32 on TF32 tensor cores is held to bfloat16's); dotted: the goal. "
        "Implementations with the same error draw on top of each other (the table has every value). "
        f"Errors below {ERR_FLOOR:.0e} are drawn at {ERR_FLOOR:.0e}. " + NOT_OK_NOTE
    )
    return Plot("fig6_accuracy", title, caption, fig, table)


# ----------------------------------------------------------------------------- 7. roofline
def fig_bandwidth(df: pd.DataFrame, env: Env) -> Plot:
    table_rows = df
    df, idle = split_idle(df)
    title = "Achieved bandwidth as a fraction of measured copy bandwidth"

    def copy_bandwidth_line(ax, p):
        if not p[p["ok"]].empty:
            ax.axhline(1.0, color="black", lw=1.0)
            ax.text(0.01, 1.0, " copy bandwidth", transform=ax.get_yaxis_transform(), fontsize=6.5, va="bottom")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0%}" if v >= 0.01 else f"{v:.1%}"))

    fig = _per_token_panels(
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
        _table(
            table_rows.assign(bw_frac=an.bandwidth_fraction(table_rows, env.copy_bandwidth_gbs)),
            [*BASE_COLS, "gbs", "bw_frac", "median_ms"],
        ),
    )


# ----------------------------------------------------------------------------- 8. first call
def fig_first_call(df: pd.DataFrame, env: Env) -> Plot:
    title = "First-call (compile) cost per implementation and backend"
    groups = []
    for (op, impl), g in df.groupby(["op", "impl"]):
        fc = g["first_call_ms"].dropna()
        fc = fc[fc > 0]
        steady = g.loc[g["ok"], "median_ms"]
        backend = next((b for b in g["backend"] if b), "")
        statuses = ", ".join(f"{n} {s}" for s, n in g.loc[g["status"] != "ok", "status"].value_counts().items())
        groups.append(
            {
                "op": op,
                "impl": impl,
                "backend": backend,
                "cells": len(g),
                "cells_timed": len(fc),
                "first_call_median_ms": fc.median() if len(fc) else np.nan,
                "first_call_min_ms": fc.min() if len(fc) else np.nan,
                "first_call_max_ms": fc.max() if len(fc) else np.nan,
                "steady_median_ms": steady.median() if len(steady) else np.nan,
                "not_ok": statuses,
            }
        )
    table = pd.DataFrame(groups)
    if not table.empty:
        table = table.sort_values(
            ["op", "impl"], key=lambda s: s.map(lambda v: op_sort_key(v) if s.name == "op" else v)
        )
        table = table.iloc[::-1].reset_index(drop=True)  # first op at the top of the chart
    n = max(1, len(table))
    height = 0.32 * n + 1.7
    fig = Figure(figsize=(8.6, height), layout="constrained", dpi=110)
    fig.get_layout_engine().set(rect=(0, 0.26 / height, 1, 1 - 0.26 / height))
    fig.text(0.005, 0.004, env.footer(), fontsize=6.5, color="#444444", ha="left", va="bottom")
    fig.suptitle(title, fontsize=10.5, fontweight="bold", x=0.01, ha="left")
    ax = fig.subplots()
    if table.empty:
        _empty(ax, "no cells")
    else:
        hatch = {"bi_wkv7": "", "attention": "///", "bi_selective_scan": "..."}
        y = np.arange(len(table))
        has = table["first_call_median_ms"].notna()
        for k, r in table.iterrows():
            st = style_for(r["op"], r["impl"])
            if has[k]:
                ax.barh(
                    k,
                    r["first_call_median_ms"],
                    color=st.colour,
                    alpha=0.85,
                    hatch=hatch.get(r["op"], "xx"),
                    edgecolor="black",
                    linewidth=0.5,
                    zorder=3,
                )
                ax.plot([r["first_call_min_ms"], r["first_call_max_ms"]], [k, k], color="black", lw=0.9, zorder=4)
                if np.isfinite(r["steady_median_ms"]):
                    ax.plot(r["steady_median_ms"], k, marker="|", ms=10, mew=2, color="black", zorder=5)
                ax.annotate(
                    f"{fmt_ms(r['first_call_median_ms'])} ms",
                    (r["first_call_max_ms"], k),
                    xytext=(4, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=6.5,
                )
        ax.set_xscale("log")
        lo = np.nanmin(table[["first_call_min_ms", "steady_median_ms"]].to_numpy(dtype=float)) if has.any() else 1
        hi = np.nanmax(table["first_call_max_ms"].to_numpy(dtype=float)) if has.any() else 10
        ax.set_xlim(lo / 3, hi * 8)
        for k, r in table.iterrows():
            if not has[k]:
                ax.text(
                    0.02,
                    k,
                    f"no first call timed ({r['not_ok'] or 'no data'})",
                    transform=ax.get_yaxis_transform(),
                    va="center",
                    fontsize=7,
                    color="#666666",
                )
        ax.set_yticks(y, [f"{OP_LABEL.get(r.op, r.op)} {r.impl} [{r.backend or '?'}]" for r in table.itertuples()])
        ax.set_xlabel("first call (ms, compile/JIT included; bar: median over cells, line: min-max)")
        ax.grid(axis="y", visible=False)
        handles = [
            Patch(facecolor="#bbbbbb", edgecolor="black"),
            Line2D([], [], color="black", lw=0.9),
            Line2D([], [], marker="|", ms=9, mew=2, color="black", ls="none"),
        ]
        labels = ["first call, median over cells", "first call, min to max", "steady-state median latency"]
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=7, frameon=False)
        ax.set_ylim(-0.6, len(table) - 0.4)
    caption = (
        "Time of the very first call of each implementation on each cell (compilation, autotuning and "
        "caching included), median over its cells with the min-max range, against its steady-state median "
        "latency (black tick). Implementations that never completed a first call are listed with their "
        "statuses."
    )
    return Plot("fig8_first_call", title, caption, fig, table.iloc[::-1].reset_index(drop=True))


# ----------------------------------------------------------------------------- all
FIGURES: tuple[tuple[str, Callable[[pd.DataFrame, Env], Plot]], ...] = (
    ("fig1_latency", fig_latency),
    ("fig2_throughput", fig_throughput),
    ("fig3_speedup_audio", lambda df, env: fig_speedup(df, env, "audio")),
    ("fig3_speedup_tokens", lambda df, env: fig_speedup(df, env, "tokens")),
    ("fig4_model_size", fig_model_size),
    ("fig5_memory", fig_memory),
    ("fig6_accuracy", fig_accuracy),
    ("fig7_bandwidth", fig_bandwidth),
    ("fig8_first_call", fig_first_call),
)


def draw_all(df: pd.DataFrame, env: Env, out_dir: Path, formats=("png", "svg")) -> list[Plot]:
    """Render every figure into ``out_dir`` (PNG, SVG and the CSV of its table); returns the plots."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = []
    with matplotlib.rc_context(RC):
        for _, make in FIGURES:
            plot = make(df, env)
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
            plots.append(plot)
    return plots
