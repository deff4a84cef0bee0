"""The history store: one SQLite file of runs and their cells, versioned by ``PRAGMA user_version``.

Tables (version :data:`VERSION`):

* ``runs``: one row per imported run (per GPU model of a merged run), unique on (commit, GPU
  model, date, environment digest): adding a run twice changes nothing;
* ``cells``: one row per (run, cell key), the key as canonical JSON of
  :func:`wkvbench.schema.key_of` (read back through ``key_of``, so key columns added later get
  their defaults), with status, note, the row's median/p20/p80/min, the raw samples (JSON) and a
  distribution-free 95% interval of the median.

:data:`MIGRATIONS` takes a store from version ``i`` to ``i + 1``; a new store runs them all, so
every version's layout is built by the same code that migrates it.
"""

from __future__ import annotations

import json
import math
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from wkvbench import schema

DEFAULT_DB = Path("runs") / "history.sqlite"


def median_interval(samples, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Distribution-free interval of the median from order statistics (binomial); None below 6 samples.

    The interval ``[x_(k), x_(n-k+1)]`` with the largest ``k`` whose coverage
    ``1 - 2 P(Binom(n, 1/2) < k)`` is at least ``confidence``.
    """
    x = np.sort(np.asarray(samples, dtype=float))
    n = x.size
    alpha = (1 - confidence) / 2
    k, tail = 0, 0.0  # tail = P(Binom(n, 1/2) < k + 1) after the step
    while True:
        tail += math.comb(n, k) / 2**n
        if tail > alpha:
            break
        k += 1
    if k == 0:
        return None, None
    return float(x[k - 1]), float(x[n - k])


def _v1(conn: sqlite3.Connection) -> None:
    conn.executescript(
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            commit_sha TEXT NOT NULL,
            dirty INTEGER NOT NULL,
            date TEXT NOT NULL,
            gpu TEXT NOT NULL,
            digest TEXT NOT NULL,
            env TEXT NOT NULL,
            source TEXT NOT NULL,
            added TEXT NOT NULL,
            UNIQUE (commit_sha, gpu, date, digest)
        );
        CREATE TABLE cells (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            cell TEXT NOT NULL,
            status TEXT NOT NULL,
            note TEXT,
            median_ms REAL,
            p20_ms REAL,
            p80_ms REAL,
            min_ms REAL,
            n_samples INTEGER,
            samples TEXT,
            PRIMARY KEY (run_id, cell)
        );
        """
    )


def _v2(conn: sqlite3.Connection) -> None:
    """Version 2: the run's own report (``runs.report``) and the median's interval (filled from the samples)."""
    conn.execute("ALTER TABLE runs ADD COLUMN report TEXT")
    conn.execute("ALTER TABLE cells ADD COLUMN ci_lo REAL")
    conn.execute("ALTER TABLE cells ADD COLUMN ci_hi REAL")
    rows = conn.execute("SELECT run_id, cell, samples FROM cells").fetchall()
    for run_id, cell, samples in rows:
        lo, hi = median_interval(json.loads(samples or "[]"))
        conn.execute("UPDATE cells SET ci_lo = ?, ci_hi = ? WHERE run_id = ? AND cell = ?", (lo, hi, run_id, cell))


#: MIGRATIONS[i] takes a store from version i to i + 1.
MIGRATIONS = (_v1, _v2)
VERSION = len(MIGRATIONS)


def cell_json(key: tuple) -> str:
    """The stored form of a cell key (canonical JSON object in :data:`wkvbench.schema.KEY` order)."""
    return json.dumps(dict(zip(schema.KEY, key, strict=True)))


def cell_key(text: str) -> tuple:
    """The key of a stored cell, as :func:`wkvbench.schema.key_of` builds it today."""
    return schema.key_of(json.loads(text))


class Store:
    """An open history store (created and migrated to :data:`VERSION` on open)."""

    def __init__(self, path=DEFAULT_DB, create: bool = True):
        if not isinstance(path, (str, Path)):
            raise TypeError(f"db: expected a path, got {type(path).__name__}")
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise ValueError(f"db: {self.path} does not exist (add runs first: wkvbench history add RUN)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path)
        self.migrate()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Bring the store to :data:`VERSION`, one migration at a time, each in its own transaction."""
        have = self.version
        if have > VERSION:
            raise ValueError(f"db: {self.path} has schema version {have}, newer than this wkvbench's {VERSION}")
        for v in range(have, VERSION):
            with self.conn:
                MIGRATIONS[v](self.conn)
                self.conn.execute(f"PRAGMA user_version = {v + 1}")

    def add(self, rec) -> tuple[bool, int]:
        """Import a :class:`~wkvbench.history.ingest.RunRecord`; (run was new, cells added)."""
        with self.conn:
            ident = (rec.commit, rec.gpu, rec.date, rec.digest)
            found = self.conn.execute(
                "SELECT id FROM runs WHERE commit_sha = ? AND gpu = ? AND date = ? AND digest = ?", ident
            ).fetchone()
            new = found is None
            if new:
                cur = self.conn.execute(
                    "INSERT INTO runs (commit_sha, dirty, date, gpu, digest, env, source, added, report) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        rec.commit,
                        int(rec.dirty),
                        rec.date,
                        rec.gpu,
                        rec.digest,
                        json.dumps(rec.env, sort_keys=True),
                        rec.source,
                        datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        rec.report,
                    ),
                )
                run_id = cur.lastrowid
            else:
                run_id = found[0]
            before = self.conn.total_changes
            for c in rec.cells:
                lo, hi = median_interval(c["samples"])
                self.conn.execute(
                    "INSERT OR IGNORE INTO cells (run_id, cell, status, note, median_ms, p20_ms, p80_ms, min_ms, "
                    "n_samples, samples, ci_lo, ci_hi) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        cell_json(c["key"]),
                        c["status"],
                        c["note"],
                        c["median_ms"],
                        c["p20_ms"],
                        c["p80_ms"],
                        c["min_ms"],
                        c["n_samples"],
                        json.dumps(c["samples"]),
                        lo,
                        hi,
                    ),
                )
            return new, self.conn.total_changes - before

    def counts(self) -> tuple[int, int]:
        """(runs, cells) in the store."""
        runs = self.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        cells = self.conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
        return int(runs), int(cells)

    def commits(self) -> list[str]:
        """Every stored commit, oldest first (by the earliest date it was measured)."""
        q = "SELECT commit_sha, MIN(date) AS d FROM runs GROUP BY commit_sha ORDER BY d, commit_sha"
        rows = self.conn.execute(q)
        return [r[0] for r in rows]

    def frame(self) -> pd.DataFrame:
        """Every stored cell with its run's fields: one row per (run, cell), key columns expanded."""
        q = (
            "SELECT r.id AS run_id, r.commit_sha AS commit_sha, r.dirty, r.date, r.gpu, r.digest, r.env, r.source, "
            "r.report, c.cell, c.status, c.note, c.median_ms, c.p20_ms, c.p80_ms, c.min_ms, c.n_samples, c.samples, "
            "c.ci_lo, c.ci_hi FROM cells c JOIN runs r ON r.id = c.run_id ORDER BY r.date, r.id"
        )
        df = pd.read_sql_query(q, self.conn)
        keys = [cell_key(t) for t in df["cell"]]
        for i, col in enumerate(schema.KEY):
            df[col] = [k[i] for k in keys]
        df["key"] = keys
        df["cell"] = [cell_json(k) for k in keys]  # today's key form, whatever version stored it
        df["samples"] = [np.asarray(json.loads(s or "[]"), dtype=float) for s in df["samples"]]
        df["env"] = [json.loads(e) for e in df["env"]]
        df["dirty"] = df["dirty"].astype(bool)
        df["report"] = pd.Series([r if isinstance(r, str) and r else None for r in df["report"]], dtype=object)
        df["note"] = [r if isinstance(r, str) else "" for r in df["note"]]
        return df
