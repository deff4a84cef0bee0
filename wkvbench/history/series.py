"""Stored cells as history lines: per cell and GPU model, one point per (commit, environment).

A **line** is one cell key on one GPU model. Its **points** are the commits it was measured at,
oldest first (commit order: the earliest date each commit was measured anywhere in the store);
runs of one commit in one environment are pooled (samples of the ok runs together; the status is
the latest run's). A change of environment digest (driver, CUDA, torch, triton, clocks, power
limit; :data:`wkvbench.history.ingest.ENV_FIELDS`) between consecutive points starts a new
**segment**: points of different segments are never compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from wkvbench.history.store import median_interval


@dataclass
class Point:
    """One commit of one line in one environment."""

    commit: str
    dirty: bool
    date: str
    digest: str
    env: dict
    status: str
    note: str
    samples: np.ndarray
    median_ms: float | None
    p20_ms: float | None
    p80_ms: float | None
    ci_lo: float | None
    ci_hi: float | None
    runs: int
    reports: list[str] = field(default_factory=list)
    segment: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.median_ms is not None and self.median_ms > 0


def _nan_none(v):
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def _point(rows: pd.DataFrame) -> Point:
    rows = rows.sort_values(["date", "run_id"])
    last = rows.iloc[-1]
    ok = rows[rows["status"] == "ok"]
    pooled = np.concatenate([s for s in ok["samples"]]) if len(ok) else np.empty(0)
    if pooled.size:
        med, p20, p80 = (float(v) for v in np.quantile(pooled, [0.5, 0.2, 0.8]))
        lo, hi = median_interval(pooled)
    else:
        med = _nan_none(ok["median_ms"].median()) if len(ok) else None
        p20 = _nan_none(ok["p20_ms"].median()) if len(ok) else None
        p80 = _nan_none(ok["p80_ms"].median()) if len(ok) else None
        lo = hi = None
    return Point(
        commit=last["commit_sha"],
        dirty=bool(rows["dirty"].any()),
        date=str(rows["date"].min()),
        digest=last["digest"],
        env=last["env"],
        status=last["status"],
        note=last["note"] or "",
        samples=pooled,
        median_ms=med,
        p20_ms=p20,
        p80_ms=p80,
        ci_lo=lo,
        ci_hi=hi,
        runs=len(rows),
        reports=list(dict.fromkeys(r for r in rows["report"] if isinstance(r, str) and r)),
    )


def commit_order(df: pd.DataFrame) -> list[str]:
    """Commits oldest first: by the earliest date each was measured, ties by name."""
    first = df.groupby("commit_sha")["date"].min().reset_index()
    return list(first.sort_values(["date", "commit_sha"])["commit_sha"])


def lines(df: pd.DataFrame, order: list[str] | None = None) -> dict[tuple, list[Point]]:
    """``{(cell key, gpu): [Point, ...]}`` from :meth:`Store.frame` rows, each line oldest first with segments set."""
    if df.empty:
        return {}
    order = order or commit_order(df)
    rank = {c: i for i, c in enumerate(order)}
    out: dict[tuple, list[Point]] = {}
    for (_, gpu), rows in df.groupby(["cell", "gpu"], sort=False):
        key = rows["key"].iloc[0]
        pts = [_point(g) for _, g in rows.groupby(["commit_sha", "digest"], sort=False)]
        pts.sort(key=lambda p: (rank.get(p.commit, len(rank)), p.date))
        seg = 0
        for i, p in enumerate(pts):
            if i and p.digest != pts[i - 1].digest:
                seg += 1
            p.segment = seg
        out[(key, gpu)] = pts
    return dict(sorted(out.items(), key=lambda kv: (tuple(map(str, kv[0][0])), kv[0][1])))


def select(df: pd.DataFrame, **filters) -> pd.DataFrame:
    """Rows whose key columns (or ``gpu``) match every filter given (None: any); values may be lists."""
    keep = np.ones(len(df), dtype=bool)
    for col, want in filters.items():
        if want is None:
            continue
        if col not in df.columns:
            raise ValueError(f"{col}: not a key column or gpu")
        want = want if isinstance(want, (list, tuple, set)) else [want]
        keep &= df[col].astype(str).isin([str(w) for w in want]).to_numpy()
    return df[keep]
