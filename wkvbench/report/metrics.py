"""The long-format table: one row per (cell, metric), built in one place from the loaded results.

A new metric is one :class:`Metric` in :data:`METRICS`; the metric figures plot this table
(:mod:`wkvbench.report.figures.metric`). Columns and the ``valid`` rule: docs/notes/report.md
("The long table and the metric figures").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from wkvbench.report import analysis as an

CASE_COLUMNS = (
    "op",
    "impl",
    "backend",
    "model",
    "family",
    "size",
    "device",
    "dtype",
    "batch",
    "variant",
    "mode",
    "tokens",
    "seconds",
)
LONG_COLUMNS = ("cell", *CASE_COLUMNS, "status", "note", "metric", "unit", "value", "p20", "p80", "bar", "valid")


@dataclass(frozen=True)
class Metric:
    """One measured quantity of a cell.

    ``column`` names the value in the results table and in a figure's table; ``derive``, when
    given, computes it from the results table and the run's :class:`~wkvbench.report.load.Env`
    instead. ``p20``/``p80`` and ``bar`` name further results columns (or None).
    """

    name: str
    unit: str
    column: str
    p20: str | None = None
    p80: str | None = None
    bar: str | None = None
    accuracy: bool = False  # valid for wrong cells too
    derive: Callable[[pd.DataFrame, object], pd.Series] | None = None

    def columns(self) -> list[str]:
        """The columns this metric fills in a figure's (wide) table."""
        return [c for c in (self.column, self.p20, self.p80, self.bar) if c]


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("latency", "ms", "median_ms", p20="p20_ms", p80="p80_ms"),
        Metric("gpu_time", "ms", "gpu_ms"),  # back-to-back calls: no host launch gap (harness.timing)
        Metric("tokens_per_s", "tokens/s", "tokens_per_s"),
        Metric("audio_s_per_s", "s of audio/s", "audio_s_per_s"),
        Metric("peak_memory", "bytes", "peak_mem_bytes"),
        Metric("saved_memory", "bytes", "saved_bytes"),  # training: saved for backward beyond the inputs
        Metric("bandwidth", "GB/s", "gbs"),
        Metric(
            "bandwidth_fraction",
            "fraction of copy bandwidth",
            "bw_frac",
            derive=lambda df, env: an.bandwidth_fraction(df, getattr(env, "copy_bandwidth_gbs", None)),
        ),
        Metric("rel_err", "relative L2", "rel_err", bar="tol", accuracy=True),
        Metric("max_abs_err", "absolute", "max_abs_err", accuracy=True),
        Metric("grad_rel_err", "relative L2", "grad_rel_err", bar="grad_tol", accuracy=True),
        Metric("first_call", "ms", "first_call_ms"),
    )
}


def _check_metrics(names) -> list[Metric]:
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"metrics: unknown {unknown}; known: {sorted(METRICS)}")
    return [METRICS[n] for n in names]


def long_table(df: pd.DataFrame, env=None, metrics=None) -> pd.DataFrame:
    """Every cell of the tidy results table ``df`` once per metric (all of :data:`METRICS` by default)."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df: expected a pandas DataFrame, got {type(df).__name__}")
    chosen = _check_metrics(list(METRICS) if metrics is None else list(metrics))
    case = df[[c for c in CASE_COLUMNS if c in df.columns] + ["status", "note"]].reset_index(drop=True)
    case.insert(0, "cell", np.arange(len(df)))
    nan = pd.Series(np.nan, index=case.index)
    parts = []
    for m in chosen:
        value = m.derive(df, env) if m.derive is not None else df[m.column]
        valid = df["status"].isin(["ok", "wrong"]) if m.accuracy else df["ok"]
        parts.append(
            case.assign(
                metric=m.name,
                unit=m.unit,
                value=pd.to_numeric(pd.Series(np.asarray(value), index=case.index), errors="coerce"),
                p20=df[m.p20].to_numpy() if m.p20 else nan,
                p80=df[m.p80].to_numpy() if m.p80 else nan,
                bar=df[m.bar].to_numpy() if m.bar else nan,
                valid=np.asarray(valid, dtype=bool),
            )
        )
    if not parts:
        return pd.DataFrame(columns=list(LONG_COLUMNS))
    return pd.concat(parts, ignore_index=True)[list(LONG_COLUMNS)]


def wide_table(long: pd.DataFrame, metrics, case=None) -> pd.DataFrame:
    """Back to one row per cell (in results order): the ``case`` columns, then each metric's columns.

    A metric's value, p20, p80 and bar go under its results-column names (``median_ms``,
    ``p20_ms``, ``p80_ms``, ...), so a figure's table reads like the results table.
    """
    chosen = _check_metrics(list(metrics))
    case = list(case) if case is not None else [*CASE_COLUMNS, "status"]
    cells = long.drop_duplicates("cell").sort_values("cell").set_index("cell")
    out = cells[[c for c in case if c in cells.columns]].copy()
    for m in chosen:  # values and quantiles first, then the bars (``... rel_err, max_abs_err, tol``)
        rows = long[long["metric"] == m.name].set_index("cell")
        for src, col in (("value", m.column), ("p20", m.p20), ("p80", m.p80)):
            if col:
                out[col] = rows[src].reindex(out.index)
    for m in chosen:
        if m.bar:
            out[m.bar] = long.loc[long["metric"] == m.name].set_index("cell")["bar"].reindex(out.index)
    return out.reset_index(drop=True)
