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

import csv
import io
import json
import math
import os
from pathlib import Path

from wkvbench.schema import COLUMNS, KEY, RESULTS_FILE, SAMPLES_FILE, SCHEMA_VERSION, key_of, parse_row

__all__ = ["RunStore", "StoreError", "fmt", "key_of"]


class StoreError(ValueError):
    """A run directory that cannot be appended to (schema mismatch, unreadable file)."""


def fmt(value) -> str:
    """A CSV cell: empty for None/NaN, 7 significant digits for floats."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return format(value, ".7g")
    return str(value)


def _norm(key) -> tuple:
    """A key tuple in ``KEY`` order, typed like ``schema.key`` (so ("1", ...) finds (1, ...)).

    A key written before later key columns existed (shorter, e.g. without ``mode``) gets their
    defaults (``schema.KEY_DEFAULTS``)."""
    key = tuple(key)
    if len(key) > len(KEY):
        raise ValueError(f"key: {len(key)} values, but a cell key has {len(KEY)} ({', '.join(KEY)})")
    return key_of(dict(zip(KEY, key, strict=False)))


def _repair_tail(path: Path) -> None:
    """Cut a last line left unfinished by a killed writer."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        fh.truncate(cut)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a synced temporary file, so a reader never sees half of it."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class RunStore:
    """Appends rows and samples to a run directory; knows which cells are already there."""

    def __init__(self, run_dir: str | os.PathLike):
        self.dir = Path(run_dir)
        self.results = self.dir / RESULTS_FILE
        self.samples = self.dir / SAMPLES_FILE
        self.rows: dict[tuple, dict] = {}
        self.dir.mkdir(parents=True, exist_ok=True)
        self._load()

    # ------------------------------------------------------------------ reading
    def _load(self) -> None:
        _repair_tail(self.results)
        _repair_tail(self.samples)
        if not self.results.exists() or self.results.stat().st_size == 0:
            with open(self.results, "w", encoding="utf-8", newline="") as fh:
                csv.writer(fh).writerow(COLUMNS)
            return
        with open(self.results, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise StoreError(
                    f"{self.results}: columns differ from this wkvbench's schema (version {SCHEMA_VERSION}); "
                    "use a new --out directory"
                )
            for raw in reader:
                try:
                    row = parse_row(raw)
                except ValueError as exc:
                    raise StoreError(f"{self.results}: {exc}") from None
                if row.get("schema_version") != SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.results}: row with schema_version {raw.get('schema_version')!r}, "
                        f"expected {SCHEMA_VERSION}; use a new --out directory"
                    )
                self.rows[key_of(row)] = row  # a later row for the same key wins

    def has(self, key: tuple) -> bool:
        return _norm(key) in self.rows

    def get(self, key: tuple) -> dict | None:
        """The typed row of ``key`` (``wkvbench.schema.key``), or None."""
        return self.rows.get(_norm(key))

    def read_samples(self) -> list[dict]:
        if not self.samples.exists():
            return []
        with open(self.samples, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    # ------------------------------------------------------------------ writing
    def append_row(self, row: dict) -> None:
        """Write one complete row (missing columns empty) and flush it to disk."""
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise KeyError(f"row: columns not in the schema: {sorted(unknown)}")
        values = [fmt(row.get(c)) for c in COLUMNS]
        buf = io.StringIO()
        csv.writer(buf).writerow(values)
        with open(self.results, "a", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        self.rows[key_of(row)] = parse_row(dict(zip(COLUMNS, values, strict=True)))  # as read back

    def append_samples(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":"), default=str)
        with open(self.samples, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def drop(self, keys) -> int:
        """Remove the rows (and sample records) of ``keys``; return how many rows went."""
        keys = {_norm(k) for k in keys} & set(self.rows)
        if not keys:
            return 0
        for k in keys:
            del self.rows[k]
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(COLUMNS)
        for row in self.rows.values():
            w.writerow([fmt(row.get(c)) for c in COLUMNS])
        write_atomic(self.results, buf.getvalue())
        if self.samples.exists():
            kept = [r for r in self.read_samples() if key_of(r) not in keys]
            write_atomic(self.samples, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in kept))
        return len(keys)
