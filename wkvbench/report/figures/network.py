"""The network-level figures (fig10-fig12): whole models processing audio (op ``network``).

Each ``network`` row is drawn as its model's token mixer (:func:`as_mixers`), in the styles of
the kernel figures. What each figure shows: docs/notes/report.md; the paper's claims behind
them: docs/spec.md section 8.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from wkvbench.presets import find_preset
from wkvbench.report import analysis as an
from wkvbench.report.figures.layout import NOT_OK_NOTE, Plot, draw_lines, finish_panel, split_idle
from wkvbench.report.figures.metric import MetricFigure, Panels
from wkvbench.report.figures.model_size import duration_panels, label_throughput
from wkvbench.report.figures.speedup import fig_speedup
from wkvbench.report.load import Env

NETWORK_OP = "network"


def as_mixers(df: pd.DataFrame) -> pd.DataFrame:
    """The ``network`` rows, each relabelled with its model's mixer op (rows of unknown models dropped)."""
    net = df[df["op"] == NETWORK_OP]
    mixer = net["model"].map(lambda m: getattr(find_preset(m), "family_record", None))
    mixer = mixer.map(lambda f: f.mixer_op if f is not None else "")
    return net[mixer != ""].assign(op=mixer[mixer != ""])


def kernel_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Every row but the ``network`` ones (the kernel-level figures' input)."""
    return df[df["op"] != NETWORK_OP]


_throughput = MetricFigure(
    "fig10_network_throughput",
    "Whole networks: throughput vs duration",
    "Whole networks (A-RWKV-T/S/B, AST-B, AuM-T/S/B; op 'network') forward on a spectrogram: seconds of audio "
    "processed per second (batch x seconds / median) and peak allocated memory (weights, input and "
    "activations) against the duration, one column per model size; each line is the network with that "
    "token mixer (line style: Bi-WKV7 solid, attention dashed, Mamba scan dash-dot). " + NOT_OK_NOTE,
    panels=(
        Panels("audio_s_per_s", "seconds of audio per second", x="seconds", xlabel="seconds of audio per sequence"),
        Panels("peak_memory", "peak allocated memory (MiB)", x="seconds", xlabel="seconds of audio", scale=2**20),
    ),
)


def fig_network_throughput(df: pd.DataFrame, env: Env, long=None) -> Plot:
    return _throughput(as_mixers(df), env)


def fig_network_speedup(df: pd.DataFrame, env: Env, long=None) -> Plot:
    plot = fig_speedup(as_mixers(df), env, "audio", level="network")
    return plot


def param_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, duration near 10/60/328 s, slice): parameters and the best ok throughput."""
    from wkvbench.models import param_count

    net = as_mixers(df)
    net = net[net["ok"]]
    near = an.at_durations(net) if not net.empty else net
    if near.empty and not net.empty:  # nothing near 10/60/328 s (a short CPU run): the longest duration
        longest = net["seconds"].max()
        near = net[net["seconds"] == longest].assign(target_s=longest)
    if near.empty:
        return pd.DataFrame(columns=["target_s", "model", "op", "params", "seconds", "impl", "audio_s_per_s"])
    keys = ["target_s", "model", *an.SLICE, "seconds"]
    best = near.sort_values("audio_s_per_s").groupby(keys, sort=False).tail(1)
    best = best.assign(params=[param_count(m, s) for m, s in zip(best["model"], best["seconds"], strict=True)])
    cols = [
        "target_s",
        "model",
        "family",
        "op",
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
        p = table[table["target_s"] == t]
        where = an.primary_slice(p)  # one slice per panel: the run's main one
        p = an.select(p, where).assign(ok=True, x=lambda d: d["params"] / 1e6)
        draw_lines(ax, p.assign(impl="best"), "x", "audio_s_per_s", legend)
        for _, r in p.iterrows():
            ax.annotate(r["model"], (r["x"], r["audio_s_per_s"]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
        finish_panel(ax, p, "x", "audio_s_per_s", legend)
        ax.set_title(f"~{t:g} s of audio" + (f"\n{an.slice_label(where)}" if where else ""))
        label_throughput(ax, j, "parameters (millions)")
    legend.draw(fig)
    caption = (
        "Each network's best ok mixer at the measured duration nearest 10 s, 60 s and 328 s: seconds of audio "
        "per second against parameters (counted from the network at that duration; the positional embedding "
        "grows with it). The AudioRWKV paper's parity claim compares A-RWKV-S with AuM-B (about a quarter of "
        "the parameters). Lines join one family's sizes within a slice."
    )
    table = table.replace({np.nan: None})
    return Plot("fig12_network_params", title, caption, fig, table)
