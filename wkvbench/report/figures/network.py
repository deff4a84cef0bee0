"""The network-level figures (fig10-fig12): whole models processing audio (op ``network``).

Every network is named by network and mixer ("AST-B (sdpa_flash)", :func:`wkvbench.presets.network_label`)
in lines, legends, labels and tables. The speed-up figure compares each ``network`` row as its model's
token mixer (:func:`as_mixers`) in the styles of the kernel figures. What each figure shows:
docs/notes/report.md; the paper's claims behind them: docs/spec.md section 8.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from wkvbench.presets import network_label
from wkvbench.report import analysis as an
from wkvbench.report.figures.layout import (
    NOT_OK_NOTE,
    Plot,
    finish_panel,
    new_figure,
    split_idle,
    unmeasured,
)
from wkvbench.report.figures.model_size import duration_panels, label_throughput
from wkvbench.report.figures.speedup import fig_speedup
from wkvbench.report.load import Env
from wkvbench.report.style import style_for

NETWORK_OP = an.NETWORK_OP
as_mixers = an.as_mixers


def kernel_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Every row but the ``network`` ones (the kernel-level figures' input)."""
    return df[df["op"] != NETWORK_OP]


#: The AudioRWKV paper's network-level claim: A-RWKV-B at least 13.3x AST-B at ~5 min 28 s (327.68 s).
PAPER_SPEEDUP, PAPER_SECONDS = 13.3, 327.68
_STYLE = {"a-rwkv": "-", "ast": "--", "aum": "-."}


def network_lines(df: pd.DataFrame) -> pd.DataFrame:
    """The ok ``network`` rows with their line name ("A-RWKV-S (triton_chunked)", plus the precision when
    it is autocast and the activation checkpointing when there is one), their panel (batch, mode; and dtype
    when the run has several) and peak memory in MiB."""
    net = df[(df["op"] == NETWORK_OP) & df["ok"]].copy()
    net["mode"] = net["mode"].fillna("fwd").replace("", "fwd") if "mode" in net else "fwd"
    if net.empty:
        return net.assign(line=[], panel=[], peak_mib=[])
    prec = net["precision"] if "precision" in net else pd.Series("pure", index=net.index)
    prec = prec.fillna("pure").replace("", "pure")
    names = [network_label(m, i) for m, i in zip(net["model"], net["impl"], strict=True)]
    net["line"] = [n if p == "pure" else f"{n} {p}" for n, p in zip(names, prec, strict=True)]
    if "checkpoint" in net:
        ckpt = net["checkpoint"].fillna("none").replace("", "none")
        net["line"] = [n if c == "none" else f"{n} checkpoint={c}" for n, c in zip(net["line"], ckpt, strict=True)]
    net["panel"] = [f"B={b} {m or 'fwd'}" for b, m in zip(net["batch"], net["mode"].fillna("fwd"), strict=True)]
    if "dtype" in net and net["dtype"].nunique() > 1:  # one dtype per panel
        net["panel"] = net["panel"] + " " + net["dtype"].astype(str)
    peak = net["peak_mem_bytes"] if "peak_mem_bytes" in net else pd.Series(np.nan, index=net.index)
    net["peak_mib"] = pd.to_numeric(peak, errors="coerce") / 2**20
    return net


def _panels(net: pd.DataFrame) -> list[str]:
    """Panels in order: per batch, inference beside training."""
    order = {"fwd": 0, "fwd_bwd": 1, "bwd": 2}
    keys = {
        p: (b, order.get(m, 9)) for p, b, m in zip(net["panel"], net["batch"], net["mode"].fillna("fwd"), strict=True)
    }
    return sorted(keys, key=keys.get)


def fig_network_throughput(df: pd.DataFrame, env: Env, long=None) -> Plot:
    """Every network on one axis: seconds of audio per second (top) and peak memory (bottom) against
    duration, one column per batch size and mode (inference beside training)."""
    net = network_lines(df)
    title = "Whole networks: throughput vs duration"
    panels = _panels(net) if not net.empty else []
    if not panels:
        fig, axes = unmeasured(env, title, "no ok network cells")
    else:
        fig, axes = new_figure(2, len(panels), env, title, w=4.2, h=3.0)
    for j, panel in enumerate(panels):
        p = net[net["panel"] == panel]
        for line, g in p.groupby("line", sort=True):
            g = g.sort_values("seconds")
            style = _STYLE.get(str(g["family"].iloc[0]), ":") if "family" in g else "-"
            axes[0, j].plot(g["seconds"], g["audio_s_per_s"], style, marker="o", ms=3, label=line)
            if g["peak_mib"].notna().any():
                axes[1, j].plot(g["seconds"], g["peak_mib"], style, marker="o", ms=3, label=line)
        _paper_star(axes[0, j], p)
        if not p["peak_mib"].notna().any():
            axes[1, j].text(0.5, 0.5, "no peak memory (measured on CUDA only)", ha="center", va="center",
                            fontsize=8, color="#666666", transform=axes[1, j].transAxes)  # fmt: skip
        axes[0, j].set_title(panel.replace("fwd_bwd", "training step").replace(" fwd", " inference"))
        axes[0, j].set_ylabel("seconds of audio per second")
        axes[1, j].set_ylabel("peak allocated memory (MiB)")
        axes[1, j].set_xlabel("seconds of audio per sequence")
        for ax in axes[:, j]:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
        axes[0, j].legend(fontsize=6)
    caption = (
        "Whole networks (op 'network'; each line a network and its token mixer, e.g. 'A-RWKV-S (triton_chunked)'; "
        "Bi-WKV7 networks solid, AST dashed, Audio Mamba dash-dot): seconds of audio processed per second "
        "(batch x seconds / median) and peak allocated memory (weights, input, activations; training also "
        "gradients) against the duration, every network in one panel per batch size and mode, inference beside "
        f"training. The star marks the AudioRWKV paper's claim, A-RWKV-B at {PAPER_SPEEDUP}x AST-B's throughput "
        f"at {PAPER_SECONDS} s, placed at {PAPER_SPEEDUP}x the best AST-B line measured there. " + NOT_OK_NOTE
    )
    cols = ["panel", "line", "model", "impl", "batch", "mode", "seconds", "audio_s_per_s", "peak_mib"]
    table = net[[c for c in cols if c in net]].sort_values(["panel", "line", "seconds"]).reset_index(drop=True)
    return Plot("fig10_network_throughput", title, caption, fig, table.replace({np.nan: None}))


def _paper_star(ax, p: pd.DataFrame) -> None:
    """The 13.3x claim: a star at 13.3x the best AST-B throughput at 327.68 s, if AST-B was measured there."""
    at = p[(p["model"] == "AST-B") & ((p["seconds"] - PAPER_SECONDS).abs() < 0.01)]
    if at.empty:
        return
    y = PAPER_SPEEDUP * float(at["audio_s_per_s"].max())
    ax.plot([PAPER_SECONDS], [y], marker="*", ms=12, color="gold", mec="black", ls="none",
            label=f"paper: A-RWKV-B {PAPER_SPEEDUP}x AST-B")  # fmt: skip


def fig_network_speedup(df: pd.DataFrame, env: Env, long=None) -> Plot:
    plot = fig_speedup(as_mixers(df), env, "audio", level="network")
    return plot


#: Network family (``Family.name``) -> how its lines are named in figure 12's legend.
FAMILY_LABEL = {"a-rwkv": "A-RWKV", "ast": "AST", "aum": "AuM"}


def param_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, duration near 10/60/328 s, slice): parameters and the best ok throughput, each row
    named by its network and fastest mixer (``network``: "A-RWKV-S (triton_chunked)"); ``mixer_op`` and
    ``impl`` say which op and implementation that mixer is."""
    from wkvbench.models import param_count

    net = as_mixers(df)
    net = net[net["ok"]]
    near = an.at_durations(net) if not net.empty else net
    if near.empty and not net.empty:  # nothing near 10/60/328 s (a short CPU run): the longest duration
        longest = net["seconds"].max()
        near = net[net["seconds"] == longest].assign(target_s=longest)
    if near.empty:
        cols = ["target_s", "network", "model", "mixer_op", "params", "seconds", "impl", "audio_s_per_s"]
        return pd.DataFrame(columns=cols)
    keys = ["target_s", "model", *an.SLICE, "seconds"]
    best = near.sort_values("audio_s_per_s").groupby(keys, sort=False).tail(1)
    best = best.assign(
        params=[param_count(m, s) for m, s in zip(best["model"], best["seconds"], strict=True)],
        network=[network_label(m, i) for m, i in zip(best["model"], best["impl"], strict=True)],
        mixer_op=best["op"],
    )
    cols = [
        "target_s",
        "network",
        "model",
        "family",
        "mixer_op",
        *an.SLICE,
        "seconds",
        "params",
        "impl",
        "status",
        "median_ms",
        "audio_s_per_s",
    ]
    return best[cols].sort_values(["target_s", *an.SLICE, "params"]).reset_index(drop=True)


def fig_network_params(df: pd.DataFrame, env: Env, long=None) -> Plot:
    table = param_table(df)
    _, idle = split_idle(df)
    targets = list(dict.fromkeys(table["target_s"])) if not table.empty else []
    title = "Whole networks: throughput vs parameter count"
    fig, axes, legend = duration_panels(1, targets, idle, env, title, "no ok network cells")
    for j, t in enumerate(targets):
        ax = axes[0, j]
        p = table[table["target_s"] == t].assign(op=lambda d: d["mixer_op"])
        where = an.primary_slice(p)  # one slice per panel: the run's main one
        p = an.select(p, where).assign(ok=True, x=lambda d: d["params"] / 1e6)
        for fam, g in p.groupby("family", sort=True):  # one line per family, its sizes joined
            g = g.sort_values("x")
            st = style_for(str(g["op"].iloc[0]), "best")
            ax.plot(g["x"], g["audio_s_per_s"], **st.kwargs(), zorder=3)
            legend.impl(str(g["op"].iloc[0]), "best", f"{FAMILY_LABEL.get(fam, fam)} networks (fastest mixer each)")
        for _, r in p.iterrows():
            ax.annotate(r["network"], (r["x"], r["audio_s_per_s"]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
        finish_panel(ax, p, "x", "audio_s_per_s", legend)
        ax.set_title(f"~{t:g} s of audio" + (f"\n{an.slice_label(where)}" if where else ""))
        label_throughput(ax, j, "parameters (millions)")
    legend.draw(fig)
    caption = (
        "Each network with its fastest ok mixer (labelled 'A-RWKV-S (triton_chunked)') at the measured duration "
        "nearest 10 s, 60 s and 328 s: seconds of audio per second against parameters (counted from the network "
        "at that duration; the positional embedding grows with it). The AudioRWKV paper's parity claim compares "
        "A-RWKV-S with AuM-B (about a quarter of the parameters). Lines join one family's sizes within a slice."
    )
    table = table.replace({np.nan: None})
    return Plot("fig12_network_params", title, caption, fig, table)
