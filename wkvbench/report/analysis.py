"""The numbers behind the figures and the headline: pandas group-bys over the tidy results table.

Speed-ups only from two ``ok`` cells, nothing compared across timing modes, baselines by the
policy of :mod:`wkvbench.report.baselines`, equal-audio and equal-tokens matching, crossed
quantile bands: the rules are in docs/notes/report.md ("Rules").
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from wkvbench import schema
from wkvbench.presets import find_preset, network_label
from wkvbench.report.baselines import BASELINES, SUBJECT_OP, Baseline, candidates, headline_subjects

NETWORK_OP = "network"
#: ``precision``, ``checkpoint``: network cells under autocast, or checkpointed, are never pooled with (nor
#: compared as) pure or plain ones.
SLICE = ("device", "dtype", "batch", "variant", "mode", "precision", "checkpoint")
CASE = ("model", "batch", "tokens", "dtype", "device", "variant", "mode", "precision", "checkpoint")
#: Key columns a table made without them reads with these values (wkvbench.schema.KEY_DEFAULTS).
_SLICE_DEFAULTS = {"precision": "pure", "checkpoint": "none"}
#: Timing modes in display order (docs/spec.md section 1).
MODE_ORDER = ("fwd", "fwd_bwd", "bwd")
MODE_LABEL = {"fwd": "inference (fwd)", "bwd": "backward only (bwd)", "fwd_bwd": "training (fwd_bwd)"}
#: Relative tolerance when matching cells of two models on seconds (equal audio) or tokens.
MATCH_TOL = {"audio": 0.02, "tokens": 0.01}
VIEW_X = {"audio": "seconds", "tokens": "tokens"}
#: AudioRWKV (arXiv 2509.02167): 13.3x faster than AST at ~5 min 28 s of audio.
PAPER_SPEEDUP = 13.3
PAPER_SECONDS = 328.0
DURATIONS = (10.0, 60.0, 328.0)
#: Order used to summarise several non-ok statuses into one.
SEVERITY = ("oom", "failed", "timeout", "wrong", "skipped")
DTYPE_ORDER = ("bfloat16", "float16", "float32", "float64")
_DEVICE_ORDER = ("cuda", "cpu")


# ----------------------------------------------------------------------------- slices
def keyed(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the ``precision`` and ``checkpoint`` columns (``pure``, ``none`` where a table made
    without them has none)."""
    missing = {c: v for c, v in _SLICE_DEFAULTS.items() if c not in df.columns}
    return df.assign(**missing) if missing else df


def order_key(col: str, v) -> tuple:
    """Sort key of a slice value: CUDA before CPU, bf16 > fp16 > fp32 > fp64, the realistic variant first."""
    if col == "dtype":
        return (DTYPE_ORDER.index(v) if v in DTYPE_ORDER else 9, str(v))
    if col == "device":
        return (_DEVICE_ORDER.index(v) if v in _DEVICE_ORDER else 9, str(v))
    if col == "variant":
        return (0 if v == "realistic" else 1, str(v))
    if col == "mode":
        return (MODE_ORDER.index(v) if v in MODE_ORDER else 9, str(v))
    if col == "checkpoint":
        return (0 if v == "none" else 1, str(v))
    if col == "precision":  # networks as their authors run them (the GPU targets are stated under autocast)
        return (0 if v == "autocast" else 1, str(v))
    return (0, v)


def slice_label(values: dict) -> str:
    parts = []
    for col, v in values.items():
        if col == "checkpoint":
            parts.append("no checkpointing" if v == "none" else f"checkpoint={v}")
            continue
        if col == "precision":
            parts.append("autocast" if v == "autocast" else f"{v} precision")
            continue
        parts.append(f"batch {v}" if col == "batch" else MODE_LABEL.get(v, v) if col == "mode" else str(v))
    return ", ".join(parts)


def slices(df: pd.DataFrame, cols=SLICE) -> list[tuple[dict, pd.DataFrame]]:
    """Split on the slice columns that vary; each part's dict names only those (empty if none vary)."""
    df = keyed(df)
    varying = [c for c in cols if df[c].nunique() > 1]
    if not varying or df.empty:
        return [({}, df)]
    parts = [
        (dict(zip(varying, k if isinstance(k, tuple) else (k,), strict=True)), g)
        for k, g in df.groupby(varying, sort=False)
    ]
    return sorted(parts, key=lambda p: tuple(order_key(c, p[0][c]) for c in varying))


def primary_slice(df: pd.DataFrame) -> dict:
    """The slice of the headline: CUDA if measured, batch 1 (else the smallest), bf16 > fp16 > fp32,
    inference (``fwd``) when measured, else training; autocast when measured (networks), without activation
    checkpointing when measured."""
    rows = df[df["op"] == SUBJECT_OP] if (df["op"] == SUBJECT_OP).any() else df
    if rows.empty:
        return {}
    out = {}
    cols = ("device", "dtype", "variant", "mode")
    for col, default in _SLICE_DEFAULTS.items():  # named only where a run has autocast or checkpointing
        if col in rows and set(rows[col]) != {default}:
            cols += (col,)
    for col in cols:
        out[col] = min(rows[col].unique(), key=lambda v, c=col: order_key(c, v))
        rows = rows[rows[col] == out[col]]
    batches = sorted(rows["batch"].unique())
    out["batch"] = 1 if 1 in batches else int(batches[0])
    return out


def select(df: pd.DataFrame, where: dict) -> pd.DataFrame:
    mask = pd.Series(True, index=df.index)
    for col, v in where.items():
        mask &= df[col] == v
    return df[mask]


# ----------------------------------------------------------------------------- baselines
def best_per_case(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per case: the fastest ok implementation, or (no ok one) the most severe failure."""
    rows = keyed(rows)
    if rows.empty:
        return rows.copy()
    ok = rows[rows["ok"]]
    best = ok.loc[ok.groupby(list(CASE), sort=False)["median_ms"].idxmin()] if not ok.empty else ok
    rest = rows[~rows.set_index(list(CASE)).index.isin(best.set_index(list(CASE)).index)]
    if not rest.empty:
        rank = rest["status"].map(lambda s: SEVERITY.index(s) if s in SEVERITY else len(SEVERITY))
        rest = rest.assign(_rank=rank).sort_values("_rank").groupby(list(CASE), sort=False).head(1)
        rest = rest.drop(columns="_rank")
    return pd.concat([best, rest]).sort_values(list(CASE)).reset_index(drop=True)


def baseline_rows(df: pd.DataFrame, baseline: Baseline) -> pd.DataFrame:
    """The baseline per case (best ok impl among those it accepts), at the preferred family."""
    rows = candidates(keyed(df), baseline)
    if rows.empty:
        return rows.copy()
    # per size, keep the preferred family when it was measured at that size
    pref = rows.groupby("size")["family"].transform(lambda f: (f == baseline.family).any())
    rows = rows[~pref | (rows["family"] == baseline.family)]
    return best_per_case(rows)


def _match(left: pd.DataFrame, right: pd.DataFrame, view: str, interpolate: bool = True) -> pd.DataFrame:
    """Pair each left row with a right row of the same size and slice on the view's axis.

    The nearest right row within :data:`MATCH_TOL` is taken. Left rows with none, when
    ``interpolate``, get a baseline interpolated log-log between the two right rows that bracket
    them, when both are ok (``base_interp`` True); a bracket with a non-ok side gives no match.
    """
    x = VIEW_X[view]
    keys = ["size", *SLICE]
    cols = [*keys, "model", "impl", "status", "tokens", "seconds", "median_ms", "p20_ms", "p80_ms", "ok"]
    r = right[cols].rename(columns={c: f"base_{c}" for c in cols if c not in keys})
    left = left.assign(_row=np.arange(len(left)))
    m = left.merge(r, on=keys, how="inner")
    if not m.empty:
        dist = np.abs(np.log(m[x].astype(float) / m[f"base_{x}"].astype(float)))
        m = m.assign(_dist=dist)
        m = m[m["_dist"] <= math.log1p(MATCH_TOL[view])]
        m = m.sort_values(["_row", "_dist"]).groupby("_row", sort=False).head(1).drop(columns="_dist")
    m = m.assign(base_interp=False)
    if interpolate:
        rest = left[~left["_row"].isin(m["_row"])]
        extra = _interpolated(rest, r, x, keys)
        if not extra.empty:
            m = pd.concat([m, extra], ignore_index=True)
    m = m.astype({"base_ok": bool, "base_interp": bool, "ok": bool})
    return m.drop(columns="_row")


def _interpolated(left: pd.DataFrame, r: pd.DataFrame, x: str, keys: list[str]) -> pd.DataFrame:
    bx = f"base_{x}"
    out = []
    for k, lg in left.groupby(keys, sort=False):
        rg = r
        for col, v in zip(keys, k, strict=True):
            rg = rg[rg[col] == v]
        rg = rg.sort_values(bx)
        xs = rg[bx].to_numpy(dtype=float)
        for _, row in lg.iterrows():
            i = int(np.searchsorted(xs, row[x]))
            if i == 0 or i >= len(xs):
                continue
            lo, hi = rg.iloc[i - 1], rg.iloc[i]
            if not (lo["base_ok"] and hi["base_ok"]):
                continue
            t = math.log(row[x] / lo[bx]) / math.log(hi[bx] / lo[bx])
            rec = row.to_dict()
            for c in ("base_median_ms", "base_p20_ms", "base_p80_ms"):
                rec[c] = math.exp((1 - t) * math.log(lo[c]) + t * math.log(hi[c]))
            for c in ("base_tokens", "base_seconds"):
                rec[c] = row[c.removeprefix("base_")]
            same = lo["base_impl"] == hi["base_impl"]
            rec.update(
                base_model=lo["base_model"],
                base_impl=lo["base_impl"] if same else f"{lo['base_impl']}/{hi['base_impl']}",
                base_status="ok",
                base_ok=True,
                base_interp=True,
            )
            out.append(rec)
    return pd.DataFrame(out)


def speedups(df: pd.DataFrame, view: str, baselines=BASELINES) -> pd.DataFrame:
    """Every :data:`~wkvbench.report.baselines.SUBJECT_OP` cell (any status) against every baseline it matches.

    ``speedup = base_median / median`` (and its p20-p80 band) only where both cells are ok.
    """
    if view not in VIEW_X:
        raise ValueError(f"view: expected 'audio' or 'tokens', got {view!r}")
    df = keyed(df)
    wkv = df[df["op"] == SUBJECT_OP]
    parts = []
    for bl in baselines:
        m = _match(wkv, baseline_rows(df, bl), view)
        if m.empty:
            continue
        both = m["ok"] & m["base_ok"]
        m = m.assign(
            view=view,
            baseline=bl.name,
            baseline_label=bl.label,
            speedup=(m["base_median_ms"] / m["median_ms"]).where(both),
            speedup_lo=(m["base_p20_ms"] / m["p80_ms"]).where(both),
            speedup_hi=(m["base_p80_ms"] / m["p20_ms"]).where(both),
        )
        parts.append(m)
    cols = [
        "view",
        "baseline",
        "baseline_label",
        "size",
        *SLICE,
        "model",
        "impl",
        "status",
        "tokens",
        "seconds",
        "median_ms",
        "p20_ms",
        "p80_ms",
        "base_model",
        "base_impl",
        "base_status",
        "base_tokens",
        "base_seconds",
        "base_median_ms",
        "base_p20_ms",
        "base_p80_ms",
        "base_interp",
        "speedup",
        "speedup_lo",
        "speedup_hi",
        "ok",
        "base_ok",
    ]
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True)[cols]


# ----------------------------------------------------------------------------- headline
def headline_model(df: pd.DataFrame) -> str | None:
    """A-RWKV-B if measured, else the widest A-RWKV preset, else any bi_wkv7 model."""
    models = list(df.loc[df["op"] == SUBJECT_OP, "model"].unique())
    if not models:
        return None
    if "A-RWKV-B" in models:
        return "A-RWKV-B"
    known = [p for p in map(find_preset, models) if p is not None]
    return max(known, key=lambda p: p.width).name if known else sorted(models)[-1]


def headline(df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Per duration of the headline model in the primary slice: best Bi-WKV7 against each baseline.

    Returns the table (numeric; statuses where a side is not ok) and the slice used.
    """
    df = keyed(df)
    where = primary_slice(df)
    model = headline_model(df)
    cols = ["seconds", "model", "tokens", "best_impl", "best_status", "best_ms"]
    for bl in BASELINES:
        cols += [
            f"{bl.name}_impl",
            f"{bl.name}_model",
            f"{bl.name}_tokens",
            f"{bl.name}_status",
            f"{bl.name}_ms",
            f"{bl.name}_speedup",
        ]
    if model is None:
        return pd.DataFrame(columns=cols), where
    part = select(df, where)
    wkv = part[(part["op"] == SUBJECT_OP) & (part["model"] == model)]
    best = best_per_case(headline_subjects(wkv))
    out = best[["seconds", "model", "tokens", "impl", "status", "median_ms", "ok", "size", *SLICE]].rename(
        columns={"impl": "best_impl", "status": "best_status", "median_ms": "best_ms"}
    )
    out["best_ms"] = out["best_ms"].where(out["ok"])
    for bl in BASELINES:
        # a baseline "as run" at its own dtype and precision is looked up outside the headline's ones
        base_where = {k: v for k, v in where.items() if not (bl.dtype and k in ("dtype", "precision"))}
        base = baseline_rows(select(df, base_where), bl)
        m = _match(best, base, "audio", interpolate=False) if not base.empty else pd.DataFrame()
        names = {
            "base_impl": "impl",
            "base_model": "model",
            "base_tokens": "tokens",
            "base_status": "status",
            "base_median_ms": "ms",
        }
        if m.empty:
            for v in names.values():
                out[f"{bl.name}_{v}"] = np.nan if v in ("ms", "tokens") else ""
            out[f"{bl.name}_speedup"] = np.nan
            continue
        m = m.set_index("tokens")
        for src, v in names.items():
            out[f"{bl.name}_{v}"] = out["tokens"].map(m[src])
        base_ok = out["tokens"].map(m["base_ok"]).fillna(False).astype(bool)
        out[f"{bl.name}_ms"] = out[f"{bl.name}_ms"].where(base_ok)
        out[f"{bl.name}_speedup"] = (out[f"{bl.name}_ms"] / out["best_ms"]).where(base_ok & out["ok"])
        for v in ("impl", "model", "status"):
            out[f"{bl.name}_{v}"] = out[f"{bl.name}_{v}"].fillna("")
    return out.sort_values("seconds")[cols].reset_index(drop=True), where


def headline_row(table: pd.DataFrame) -> pd.Series | None:
    """The duration the headline sentence quotes: the paper's 328 s if measured, else the longest."""
    if table.empty:
        return None
    near = table[np.abs(np.log(table["seconds"] / PAPER_SECONDS)) <= math.log1p(MATCH_TOL["audio"])]
    if not near.empty:
        return near.iloc[0]
    ok = table[table["best_ms"].notna()]
    return (ok if not ok.empty else table).iloc[-1]


# ----------------------------------------------------------------------------- other views
def at_durations(df: pd.DataFrame, targets=DURATIONS, factor: float = 1.3) -> pd.DataFrame:
    """Per target duration, each (op, impl, model, slice) cell whose ``seconds`` is nearest, within ``factor``."""
    df = keyed(df)
    rows = df[df["seconds"].notna() & (df["seconds"] > 0)]
    parts = []
    group = ["op", "impl", "model", *SLICE]
    for target in targets:
        d = np.abs(np.log(rows["seconds"] / target))
        near = rows.assign(_d=d)[d <= math.log(factor)]
        if near.empty:
            continue
        near = near.sort_values("_d").groupby(group, sort=False).head(1).drop(columns="_d")
        parts.append(near.assign(target_s=target))
    if not parts:
        return df.iloc[0:0].assign(target_s=pd.Series(dtype=float))
    return pd.concat(parts, ignore_index=True)


def derived(df: pd.DataFrame, copy_bandwidth_gbs: float | None = None) -> pd.DataFrame:
    """The derived columns (:data:`wkvbench.schema.DERIVED_COLUMNS`) of every row: the recorded value,
    or where the row left it empty, what :func:`wkvbench.schema.derive` gives from the row's measured
    columns (``copy_bandwidth_gbs``: the run's copy probe, for ``pct_copy_bw``). NaN where neither has one.
    """
    records = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in
               df.to_dict("records")]  # fmt: skip
    fresh = pd.DataFrame(
        [schema.derive(r, copy_bandwidth_gbs=copy_bandwidth_gbs) for r in records],
        index=df.index,
        columns=list(schema.DERIVED_COLUMNS),
        dtype=float,
    )
    recorded = df.reindex(columns=list(schema.DERIVED_COLUMNS)).astype(float)
    return recorded.where(recorded.notna(), fresh)


def bandwidth_fraction(df: pd.DataFrame, copy_gbs: float | None) -> pd.Series:
    """Achieved GB/s over the measured copy bandwidth (the roofline), per ok row; NaN where unknown.

    The row's ``pct_copy_bw`` / 100, or where it is empty, :func:`derived`'s from ``env.json``'s
    ``copy_bandwidth_gbs`` (``copy_gbs``).
    """
    return (derived(df, copy_gbs)["pct_copy_bw"] / 100.0).where(df["ok"])


def verification(df: pd.DataFrame) -> pd.DataFrame:
    """Per (op, impl, dtype): cells by status, worst error of the ok cells and of all cells, the bar,
    and the median coefficient of variation of the ok cells' samples (how noisy the timings were)."""
    rows = []
    for (op, impl, dtype), g in named(df).groupby(["op", "impl", "dtype"], sort=True):
        counts = g["status"].value_counts()
        ok = g[g["status"] == "ok"]
        rows.append({
            "op": op, "impl": impl, "dtype": dtype, "cells": len(g),
            **{s: int(counts.get(s, 0)) for s in schema.STATUSES},
            "max_rel_err_ok": ok["rel_err"].max(), "max_rel_err_all": g["rel_err"].max(), "tol": g["tol"].max(),
            "cv_median": ok["cv"].median(),
        })  # fmt: skip
    cols = ["op", "impl", "dtype", "cells", *schema.STATUSES, "max_rel_err_ok", "max_rel_err_all", "tol", "cv_median"]
    return pd.DataFrame(rows, columns=cols)


def not_ok(df: pd.DataFrame) -> pd.DataFrame:
    """Every cell that is not ok, with its reason."""
    cols = ["op", "impl", "model", "batch", "tokens", "seconds", "dtype", "device", "variant", "mode", "status", "note"]
    return (
        named(df).loc[df["status"] != "ok", cols].sort_values(["op", "impl", "model", "tokens"]).reset_index(drop=True)
    )


def named(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with network rows' ``impl`` shown as the network they are (:func:`presets.network_label`:
    "A-RWKV-T (torch_chunked)"), so tables never pool two networks that share a mixer."""
    net = df["op"] == NETWORK_OP
    if not net.any():
        return df
    out = df.copy()
    out.loc[net, "impl"] = [network_label(m, i) for m, i in zip(df.loc[net, "model"], df.loc[net, "impl"], strict=True)]
    return out


# ----------------------------------------------------------------------------- whole networks
def as_mixers(df: pd.DataFrame) -> pd.DataFrame:
    """The ``network`` rows, each relabelled with its model's mixer op (rows of unknown models dropped):
    the speed-up and headline machinery then compares networks as it compares their mixers. Whatever
    shows such a row names it by network (:func:`presets.network_label` of ``model`` and ``impl``)."""
    net = df[df["op"] == NETWORK_OP]
    mixer = net["model"].map(lambda m: getattr(find_preset(m), "family_record", None))
    mixer = mixer.map(lambda f: f.mixer_op if f is not None else "")
    return net[mixer != ""].assign(op=mixer[mixer != ""])


def network_headline(df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """:func:`headline` over the whole networks (:func:`as_mixers`): per duration the A-RWKV network
    (A-RWKV-B if measured) with its fastest ok mixer against AST-B and AuM of the same size with
    each baseline's mixers. Empty table and slice when the run has no network rows."""
    return headline(as_mixers(df))


def loglog_slope(x, y, tail: int = 2) -> float:
    """Least-squares slope of log y on log x over the ``tail`` largest x (NaN with < 2 points)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[keep], y[keep]
    if len(np.unique(x)) < 2:
        return math.nan
    order = np.argsort(x)[-max(2, tail) :]
    return float(np.polyfit(np.log(x[order]), np.log(y[order]), 1)[0])
