"""Figure 3: speed-up of every Bi-WKV7 implementation over the baselines, at equal audio or equal tokens.

``level="network"`` draws the same comparison for whole networks (rows of op ``network`` relabelled
with their mixer op, :func:`wkvbench.report.analysis.as_mixers`): A-RWKV over AST-B and AuM, with the
AudioRWKV paper's 13.3x (a model-level figure) as a star; every line, panel and table row names the
networks ("A-RWKV-B (triton_chunked)" over "AST-B (sdpa_flash)", :func:`wkvbench.presets.network_label`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator

from wkvbench.presets import PRESETS, network_label
from wkvbench.report import analysis as an
from wkvbench.report.baselines import BASELINES, SUBJECT_OP
from wkvbench.report.figures.layout import (
    NOT_OK_NOTE,
    Legend,
    Plot,
    empty_panel,
    headroom,
    log_y,
    mark_not_ok,
    new_figure,
    set_xlim,
    size_order,
    split_idle,
    status_text,
)
from wkvbench.report.load import Env
from wkvbench.report.style import STATUS_LABEL, style_for


def fig_speedup(df: pd.DataFrame, env: Env, view: str, level: str = "kernel") -> Plot:
    df, idle = split_idle(df)
    sp = an.speedups(df, view)
    x = an.VIEW_X[view]
    wkv = df[df["op"] == SUBJECT_OP]
    panels = [(where, size) for where, part in an.slices(wkv) for size in size_order(part)]
    baselines = [bl for bl in BASELINES if (sp["baseline"] == bl.name).any()]
    name = {"audio": "equal audio", "tokens": "equal tokens"}[view]
    network = level == "network"
    title = f"Speed-up of Bi-WKV7 over attention and the Mamba scan ({name})"
    if network:
        title = f"Whole networks: speed-up of A-RWKV over AST-B and AuM ({name})"
    fig, axes = new_figure(max(1, len(panels)), max(1, len(baselines)), env, title)
    legend = Legend(idle)
    if not panels or not baselines:
        empty_panel(
            axes[0, 0],
            "no Bi-WKV7 cells"
            if not panels
            else f"no attention or Mamba-scan cells\nmatch the Bi-WKV7 cells at equal {view}",
        )
    for i, (where, size) in enumerate(panels):
        for j, bl in enumerate(baselines):
            ax = axes[i, j]
            p = an.select(sp[(sp["baseline"] == bl.name) & (sp["size"] == size)], where)
            vs = f"{_base_network(bl, size)} with {bl.label}" if network else bl.label
            ax.set_title(f"vs {vs}, size {size}" + (f"\n{an.slice_label(where)}" if where else ""))
            if p.empty:
                empty_panel(
                    ax, f"no {bl.label} cells\nat size {size}" + (f" ({an.slice_label(where)})" if where else "")
                )
                continue
            ax.set_xlabel("seconds of audio" if view == "audio" else "tokens per sequence")
            if j == 0:
                ax.set_ylabel(f"speed-up (x, higher = {'A-RWKV' if network else 'Bi-WKV7'} faster)")
            paper = network and view == "audio" and bl.op == "attention"
            _speedup_panel(ax, p, x, bl, paper=paper, legend=legend, network=network)
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
        (
            "Whole networks (op 'network'): each line is an A-RWKV network with its Bi-WKV7 mixer, named "
            "'A-RWKV-B (triton_chunked)'; each baseline the AST-B or AuM network of the same size with that "
            "baseline's mixers (the table's network and base_network columns name both). "
            if network
            else ""
        )
        + f"Baseline median / Bi-WKV7 median for every Bi-WKV7 implementation, cells matched on the {match} "
        "and the same model size, batch, dtype and device; shaded: the p20-p80 band (baseline p20 / "
        "Bi-WKV7 p80 to baseline p80 / Bi-WKV7 p20). Above the black 1x line Bi-WKV7 is faster. "
        "Baselines: AST attention as written (torch_eager), the fastest ok SDPA backend, the fastest ok "
        "Mamba bidirectional scan. Where the baseline was not measured at that point, its latency is "
        "interpolated log-log between the two ok cells around it (hollow markers); never extrapolated. "
        + (
            "The star marks the AudioRWKV paper's 13.3x over AST at ~5 min 28 s (a model-level figure). "
            if view == "audio" and network
            else "Kernels only: the paper's 13.3x is a model-level figure (fig11_network_speedup). "
            if view == "audio"
            else ""
        )
        + NOT_OK_NOTE
        + " 'baseline OOM' etc. marks a case whose baseline had no valid timing."
    )
    table = sp.drop(columns=["ok", "base_ok"])
    if network:
        table.insert(0, "base_network", _labels(table, "base_model", "base_impl"))
        table.insert(0, "network", _labels(table, "model", "impl"))
    return Plot("fig11_network_speedup" if network else f"fig3_speedup_{view}", title, caption, fig, table)


def _labels(df: pd.DataFrame, model: str, impl: str) -> list[str]:
    """The network label of each row's ``model`` and ``impl`` columns ('' where a side is missing)."""
    return [
        network_label(m, i) if isinstance(m, str) and m and isinstance(i, str) and i else ""
        for m, i in zip(df[model], df[impl], strict=True)
    ]


def _base_network(bl, size: str) -> str:
    """The baseline's network at ``size`` ("AST-B", "AuM-T"); the baseline's label if there is none."""
    names = [p.name for p in PRESETS.values() if p.family == bl.family and p.name.endswith(f"-{size}")]
    return names[0] if names else bl.label


def _speedup_panel(ax, p: pd.DataFrame, x: str, bl, paper: bool, legend: Legend, network: bool = False) -> None:
    ok = p[p["speedup"].notna()]
    for impl, g in ok.groupby("impl"):
        g = g.sort_values(x)
        st = style_for(SUBJECT_OP, impl)
        ax.plot(g[x], g["speedup"], **st.kwargs(), zorder=3)
        ax.fill_between(g[x], g["speedup_lo"], g["speedup_hi"], color=st.colour, alpha=0.15, lw=0, zorder=2)
        interp = g[g["base_interp"].astype(bool)]
        ax.plot(interp[x], interp["speedup"], ls="none", marker=st.marker, mfc="white", mec=st.colour, zorder=4)
        legend.impl(SUBJECT_OP, impl, network_label(g["model"].iloc[0], impl) if network else None)
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
    set_xlim(ax, xs, True, 0.1)
    log_y(ax)
    ys = [v for v in ys if np.isfinite(v) and v > 0]
    lo, hi = min(ys) / 1.5, max(ys) * 1.5
    ax.set_ylim(lo, hi)
    ax.axhline(1.0, color="black", lw=0.9, zorder=1)
    if math.log10(hi / lo) < 2.5:  # few decades: label 1-2-5 steps
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    # cells with no speed-up: the Bi-WKV7 cell or the baseline is not ok
    own = p[~p["ok"]].assign(_label=status_text(p[~p["ok"]]), op=SUBJECT_OP)
    own = own.assign(_name=_labels(own, "model", "impl")) if network else own
    named = "_name" if network else ""
    n = mark_not_ok(ax, own, x, legend, label_col="_label", legend_col=named)
    base_bad = p[p["ok"] & ~p["base_ok"].astype(bool)].drop_duplicates(["base_impl", x])
    labels = "baseline " + base_bad["base_status"].map(lambda s: STATUS_LABEL.get(s, s))
    base_bad = base_bad.assign(op=bl.op, impl=base_bad["base_impl"], _label=labels)
    base_bad = base_bad.assign(_name=_labels(base_bad, "base_model", "base_impl")) if network else base_bad
    n += mark_not_ok(ax, base_bad, x, legend, label_col="_label", rank0=n, legend_col=named)
    headroom(ax, n, True)
