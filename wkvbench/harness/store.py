"""The run directory's files: ``results.csv`` (one row per cell) and ``samples.jsonl`` (raw samples).

Both are appended and flushed (``fsync``) as each cell finishes, so a SIGINT, a SIGKILL or a
power cut loses at most the cell being measured. A line cut short by a kill is dropped when the
file is next opened. Rows are identified by their key (``wkvbench.schema.key_of``): ``--resume``
skips cells whose key is already present, and a plain re-run into the same directory first
removes the rows of the cells it is about to measure, so a cell never appears twice. Rows come
back typed (``wkvbench.schema.parse_row``: integers, floats, None for empty cells, text), the
same whether they were just appended or read from disk.

``samples.jsonl`` holds one JSON object per timed cell: the KEY fields, ``samples_ms`` (in the
order taken), ``round_sizes``, ``first_call_ms``, ``est_ms`` and the GPU snapshots taken before
and after the cell (``gpu_before`` / ``gpu_after``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from wkvbench.harness import rundir
from wkvbench.harness.rundir import RunDirError, fmt, write_atomic
from wkvbench.schema import COLUMNS, KEY, key_of, parse_row

__all__ = ["RunStore", "StoreError", "fmt", "key_of", "write_atomic"]


class StoreError(RunDirError):
    """A run directory that cannot be appended to (schema mismatch, unreadable file)."""


def _norm(key) -> tuple:
    """A key tuple in ``KEY`` order, typed like ``schema.key`` (so ("1", ...) finds (1, ...)).

    A key written before later key columns existed (shorter, e.g. without ``mode``) gets their
    defaults (``schema.KEY_DEFAULTS``)."""
    key = tuple(key)
    if len(key) > len(KEY):
        raise ValueError(f"key: {len(key)} values, but a cell key has {len(KEY)} ({', '.join(KEY)})")
    return key_of(dict(zip(KEY, key, strict=False)))


class RunStore:
    """Appends rows and samples to a run directory; knows which cells are already there."""

    def __init__(self, run_dir: str | os.PathLike, log=None):
        self.dir = Path(run_dir)
        self.results = self.dir / rundir.RESULTS_FILE
        self.samples = self.dir / rundir.SAMPLES_FILE
        self.log = log or (lambda msg: None)
        self.rows: dict[tuple, dict] = {}
        self.sampled: set[tuple] = set()  # keys with a samples record
        self.dir.mkdir(parents=True, exist_ok=True)
        self._load()

    # ------------------------------------------------------------------ reading
    def _load(self) -> None:
        for path, what in ((self.results, "row"), (self.samples, "samples record")):
            if rundir.repair_tail(path):
                self.log(f"wkvbench: {path}: removed 1 incomplete {what} (a last line cut short by a stopped writer)")
        if not self.results.exists() or self.results.stat().st_size == 0:
            write_atomic(self.results, rundir.csv_line(COLUMNS))
            return
        try:
            rows = rundir.read_results(self.dir)
        except RunDirError as exc:
            raise StoreError(f"{exc}; use a new --out directory") from None
        for row in rows:
            self.rows[key_of(row)] = row  # a later row for the same key wins
        try:
            self.sampled = {key_of(r) for r in rundir.read_samples(self.dir)}
        except RunDirError as exc:
            raise StoreError(f"{exc}; repair or remove that line") from None

    def has(self, key: tuple) -> bool:
        return _norm(key) in self.rows

    def has_samples(self, key: tuple) -> bool:
        return _norm(key) in self.sampled

    def get(self, key: tuple) -> dict | None:
        """The typed row of ``key`` (``wkvbench.schema.key``), or None."""
        return self.rows.get(_norm(key))

    def read_samples(self) -> list[dict]:
        return rundir.read_samples(self.dir)

    # ------------------------------------------------------------------ writing
    def append_row(self, row: dict) -> None:
        """Write one complete row (missing columns empty) and flush it to disk."""
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise KeyError(f"row: columns not in the schema: {sorted(unknown)}")
        values = [fmt(row.get(c)) for c in COLUMNS]
        rundir.append_line(self.results, rundir.csv_line(values))
        self.rows[key_of(row)] = parse_row(dict(zip(COLUMNS, values, strict=True)))  # as read back

    def append_samples(self, record: dict) -> None:
        rundir.append_line(self.samples, json.dumps(record, separators=(",", ":"), default=str) + "\n")
        self.sampled.add(key_of(record))

    def drop(self, keys) -> int:
        """Remove the rows (and sample records) of ``keys``; return how many rows went."""
        keys = {_norm(k) for k in keys} & set(self.rows)
        if not keys:
            return 0
        for k in keys:
            del self.rows[k]
        self.sampled -= keys
        text = rundir.csv_line(COLUMNS) + "".join(
            rundir.csv_line(row.get(c) for c in COLUMNS) for row in self.rows.values()
        )
        write_atomic(self.results, text)
        if self.samples.exists():
            kept = [r for r in self.read_samples() if key_of(r) not in keys]
            write_atomic(self.samples, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in kept))
        return len(keys)
