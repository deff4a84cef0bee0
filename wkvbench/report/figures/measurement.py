"""Measurement figures: the roofline, the per-kernel breakdown (``kernels.jsonl``) and noise/throttle marks.

* :func:`fig_roofline`: achieved FLOP/s against arithmetic intensity per cell, with the device's
  FP32 peak (vendor datasheet, :data:`PEAK_FP32_TFLOPS`; none for a CPU) and the run's measured
  copy bandwidth as roofs; its table has ``pct_roofline``. Counted FLOPs and bytes are used where
  the run counted them (``counted_flops``, ``counted_bytes``), the op record's formulas otherwise
  (column ``work_from``).
* :func:`fig_kernel_breakdown`: a stacked bar per implementation and case from the profile pass
  (``wkvbench run --profile 1``): the kernels (GPU) or operators (CPU) one call runs.
* :func:`fig_quality`: each cell's ``rel_ci`` against the ``max_noise`` target, throttled cells
  marked; its table lists the cells flagged.

:func:`measurement_plots` draws the three for :func:`wkvbench.report.build.build_report`.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from wkvbench.harness.rundir import KERNELS_FILE, read_kernels  # noqa: F401 (KERNELS_FILE: the file read here)
from wkvbench.presets import network_label
from wkvbench.report.figures.layout import Plot, empty_panel, save_plot
from wkvbench.report.load import Env
from wkvbench.report.style import op_label, style_for

#: FP32 (non-tensor-core) peak of known GPUs, TFLOP/s, from NVIDIA's datasheets, matched by name.
PEAK_FP32_TFLOPS = {
    "H200": 67.0,
    "H100 SXM": 67.0,
    "H100 80GB HBM3": 67.0,
    "H100 PCIe": 51.0,
    "H100": 51.0,
    "A100": 19.5,
    "L40S": 91.6,
    "L4": 30.3,
    "RTX 4090": 82.6,
}
#: The figures :func:`measurement_plots` draws, in order.
MEASUREMENT_FIGURES = ("fig14_roofline", "fig15_kernel_breakdown", "fig16_quality")
#: Kernels drawn per bar; the rest are summed as "other".
TOP_KERNELS = 6


def peak_tflops(gpu: str | None) -> float | None:
    """The FP32 peak of a GPU by name (longest matching key), or None (unknown, or a CPU)."""
    if not gpu:
        return None
    hits = [k for k in PEAK_FP32_TFLOPS if k.lower() in gpu.lower()]
    return PEAK_FP32_TFLOPS[max(hits, key=len)] if hits else None


def _figure(title: str, env: Env, height: float = 4.2) -> tuple[Figure, object]:
    fig = Figure(figsize=(8.6, height), layout="constrained", dpi=110)
    fig.get_layout_engine().set(rect=(0, 0.26 / height, 1, 1 - 0.26 / height))
    fig.text(0.005, 0.004, env.footer(), fontsize=6.5, color="#444444", ha="left", va="bottom")
    fig.suptitle(title, fontsize=10.5, fontweight="bold", x=0.01, ha="left")
    return fig, fig.subplots()


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(df[name], errors="coerce") if name in df else pd.Series(np.nan, index=df.index)


# ----------------------------------------------------------------------------- roofline
def roofline_table(df: pd.DataFrame, env: Env) -> pd.DataFrame:
    """One row per timed cell: intensity, achieved FLOP/s, the roof there and ``pct_roofline``."""
    ok = df[(df["status"] == "ok") & _col(df, "median_ms").gt(0)].copy()
    cf, cb = _col(ok, "counted_flops"), _col(ok, "counted_bytes")
    ok["flops_from"] = np.where(cf.gt(0), "counted", "formula")
    ok["bytes_from"] = np.where(cb.gt(0), "counted", "formula")
    ok["flops_used"] = cf.where(cf.gt(0), _col(ok, "flops"))
    ok["bytes_used"] = cb.where(cb.gt(0), _col(ok, "bytes_moved"))
    ok = ok[ok["flops_used"].gt(0) & ok["bytes_used"].gt(0)]
    ok["intensity"] = ok["flops_used"] / ok["bytes_used"]
    ok["achieved_tflops"] = ok["flops_used"] / (_col(ok, "median_ms") / 1e3) / 1e12
    ok = ok[np.isfinite(ok["intensity"]) & ok["achieved_tflops"].gt(0)]
    bw = env.copy_bandwidth_gbs
    peak = peak_tflops(env.gpu)
    roof = ok["intensity"] * (bw or np.nan) / 1e3  # GB/s * FLOP/B -> TFLOP/s
    if peak:
        roof = roof.clip(upper=peak)
    ok["roof_tflops"] = roof
    ok["pct_roofline"] = 100 * ok["achieved_tflops"] / roof
    unit = pd.Series([_token_heads(r) for _, r in ok.iterrows()], index=ok.index, dtype=float)
    ok["min_bytes_per_token_head"] = _col(ok, "bytes_moved") / unit
    ok["bytes_per_token_head"] = _col(ok, "counted_bytes") / unit
    cols = ["op", "impl", "model", "batch", "tokens", "dtype", "mode", "flops_from", "bytes_from"]
    cols += ["intensity", "achieved_tflops"]
    cols += ["roof_tflops", "pct_roofline", "min_bytes_per_token_head", "bytes_per_token_head"]
    return ok[cols].reset_index(drop=True)


def _token_heads(row) -> float:
    """The number of (token, head) pairs of a row's shape (``B*T*D`` for the scan), NaN if unknown."""
    from wkvbench.counting import per_token_head

    try:
        shape = json.loads(row.get("shape") or "{}")
        return float(per_token_head(row["op"], shape))
    except (ValueError, KeyError, TypeError):
        return float("nan")


def fig_roofline(df: pd.DataFrame, env: Env, long=None) -> Plot:
    title = "Roofline: achieved FLOP/s against arithmetic intensity"
    table = roofline_table(df, env)
    fig, ax = _figure(title, env)
    bw, peak = env.copy_bandwidth_gbs, peak_tflops(env.gpu)
    if table.empty:
        empty_panel(ax, "no timed cells with FLOPs and bytes")
    else:
        for (op, impl), g in table.groupby(["op", "impl"]):
            st = style_for(op, impl)
            marker = np.where(g["bytes_from"] == "counted", "o", "x")
            for m in ("o", "x"):
                sel = g[marker == m]
                if len(sel):
                    label = f"{op_label(op)} {impl}" if m == "o" or not (marker == "o").any() else None
                    ax.scatter(sel["intensity"], sel["achieved_tflops"], color=st.colour, marker=m, s=22, label=label)
        lo, hi = table["intensity"].min() / 3, table["intensity"].max() * 3
        xs = np.geomspace(lo, hi, 100)
        if bw:
            roof = xs * bw / 1e3
            if peak:
                roof = np.minimum(roof, peak)
            ax.plot(
                xs,
                roof,
                color="black",
                lw=1.2,
                label=f"roof: copy {bw:.0f} GB/s" + (f", peak {peak} TF" if peak else ""),
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity (FLOP per byte)")
        ax.set_ylabel("achieved TFLOP/s")
        ax.legend(fontsize=6.5, loc="lower right", frameon=False)
    peak_txt = f"the FP32 peak of {env.gpu} ({peak} TFLOP/s, datasheet)" if peak else "no compute roof (unknown peak)"
    caption = (
        "Each timed cell's FLOPs over its median time against FLOPs per byte. Dots use counted bytes "
        "(PyTorch: every op's traffic; Triton in the interpreter: global loads and stores), crosses the op "
        "record's minimum bytes; FLOPs are counted for PyTorch implementations, the formula's otherwise "
        "(flops_from, bytes_from in the table). Roofs: the copy bandwidth measured at the start of the run and "
        f"{peak_txt}. "
        "pct_roofline in the table is achieved over the roof at the cell's intensity; above 100% the counted "
        "traffic was served from caches (a working set smaller than the cache), not from memory. The table also "
        "sets counted bytes per (token, head) beside the minimum (each input read once, the output written once)."
    )
    return Plot("fig14_roofline", title, caption, fig, table)


# ----------------------------------------------------------------------------- kernel breakdown
def kernel_table(records: list[dict], top: int = TOP_KERNELS) -> pd.DataFrame:
    """Long table: one row per (cell, kernel) with the ``top`` largest kernels and "other"."""
    rows = []
    for rec in records:
        impl = rec.get("impl")
        if rec.get("op") == "network" and rec.get("model"):  # a network by its name: "AST-B (sdpa_flash)"
            impl = network_label(str(rec["model"]), str(impl))
        label = f"{impl} T={rec.get('tokens')} {rec.get('mode', 'fwd')}"
        ks = sorted(rec.get("kernels") or [], key=lambda k: -float(k.get("us_per_call") or 0))
        head, rest = ks[:top], ks[top:]
        for k in head:
            rows.append({"op": rec.get("op"), "cell": label, "kernel": k["name"], "us_per_call": k["us_per_call"]})
        if rest:
            us = sum(float(k.get("us_per_call") or 0) for k in rest)
            rows.append({"op": rec.get("op"), "cell": label, "kernel": "other", "us_per_call": us})
    return pd.DataFrame(rows, columns=["op", "cell", "kernel", "us_per_call"])


def fig_kernel_breakdown(records: list[dict], env: Env) -> Plot:
    title = "Per-kernel breakdown of one call (profile pass)"
    table = kernel_table(records)
    cells = list(dict.fromkeys(table["cell"]))
    fig, ax = _figure(title, env, height=max(2.4, 0.3 * len(cells) + 1.8))
    if table.empty:
        empty_panel(ax, "no profile pass in this run (wkvbench run --profile 1)")
    else:
        colours = {}
        palette = [matplotlib.colormaps["tab20"](i) for i in range(20)]
        left = dict.fromkeys(cells, 0.0)
        for r in table.itertuples():
            c = colours.setdefault(r.kernel, "#bbbbbb" if r.kernel == "other" else palette[len(colours) % 20])
            y = cells.index(r.cell)
            seen = r.kernel in {t.get_label() for t in ax.patches}
            ax.barh(
                y,
                r.us_per_call,
                left=left[r.cell],
                color=c,
                edgecolor="black",
                lw=0.4,
                label=None if seen else r.kernel,
            )
            left[r.cell] += r.us_per_call
        ax.set_yticks(range(len(cells)), cells, fontsize=7)
        ax.set_xlabel("microseconds per call")
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles, strict=True))
        ax.legend(
            uniq.values(),
            [k[:40] for k in uniq],
            fontsize=6,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.28),
            ncol=3,
            frameon=False,
        )
    caption = (
        "torch.profiler over a few calls of each cell, per call: GPU kernels by their device time on a GPU, "
        f"operators by their self time on a CPU; the {TOP_KERNELS} largest per cell, the rest as 'other'."
    )
    return Plot("fig15_kernel_breakdown", title, caption, fig, table)


# ----------------------------------------------------------------------------- noise and throttling
def max_noise_of(env: Env) -> float:
    """The run's ``max_noise`` target (its suite's run settings), 0.01 if not recorded."""
    suite = (env.raw or {}).get("suite")
    run = (suite.get("run") if isinstance(suite, dict) else None) or {}
    try:
        return float(run.get("max_noise", 0.01))
    except (TypeError, ValueError):
        return 0.01


def flagged_cells(df: pd.DataFrame, env: Env) -> pd.DataFrame:
    """Timed cells whose rel_ci is above the target or that were sampled under throttling."""
    target = max_noise_of(env)
    ok = df[df["status"] == "ok"].copy()
    ok["rel_ci"], ok["throttled_frac"] = _col(ok, "rel_ci"), _col(ok, "throttled_frac")
    noisy = ok["rel_ci"].gt(target) if target > 0 else pd.Series(False, index=ok.index)
    hot = ok["throttled_frac"].gt(0)
    ok["flag"] = np.where(noisy & hot, "noisy, throttled", np.where(noisy, "noisy", np.where(hot, "throttled", "")))
    cols = ["op", "impl", "model", "batch", "tokens", "dtype", "mode", "median_ms", "rel_ci", "throttled_frac", "flag"]
    return ok.loc[ok["flag"] != "", cols].reset_index(drop=True)


def fig_quality(df: pd.DataFrame, env: Env, long=None) -> Plot:
    title = "Measurement quality: confidence of each median, throttled cells"
    target = max_noise_of(env)
    ok = df[(df["status"] == "ok") & _col(df, "rel_ci").notna() & _col(df, "median_ms").gt(0)]
    fig, ax = _figure(title, env, height=3.6)
    if ok.empty:
        empty_panel(ax, "no cell recorded rel_ci")
    else:
        hot = _col(ok, "throttled_frac").gt(0)
        x, y = _col(ok, "median_ms"), _col(ok, "rel_ci").clip(lower=1e-5)  # 0 (identical samples) drawn at 1e-5
        ax.scatter(x[~hot], y[~hot], s=14, color="#4477AA", label="cell")
        if hot.any():
            ax.scatter(x[hot], y[hot], s=30, color="#EE6677", marker="^", label="sampled under throttling")
        if target > 0:
            ax.axhline(target, color="black", lw=1.0, label=f"max_noise {target:.3g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("median (ms)")
        ax.set_ylabel("rel_ci (95% half-width / median)")
        ax.legend(fontsize=7, frameon=False)
    table = flagged_cells(df, env)
    caption = (
        "Bootstrap 95% confidence half-width of each cell's median over the median, against the max_noise target "
        "at which sampling stops; cells above it ran out of budget first. Red triangles: cells with samples taken "
        f"while NVML reported power or thermal throttling. The table lists the {len(table)} flagged cells."
    )
    return Plot("fig16_quality", title, caption, fig, table)


def measurement_plots(run_dir, df: pd.DataFrame, env: Env, out_dir, formats=("png", "svg")) -> list[Plot]:
    """Draw and save the roofline, kernel breakdown and quality figures; returns them."""
    from wkvbench.report.figures.layout import RC

    plots = []
    with matplotlib.rc_context(RC):
        for plot in (
            fig_roofline(df, env),
            fig_kernel_breakdown(read_kernels(run_dir), env),
            fig_quality(df, env),
        ):
            save_plot(plot, Path(out_dir), formats)
            plots.append(plot)
    return plots
