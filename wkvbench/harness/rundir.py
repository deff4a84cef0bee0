"""The run directory: its layout, the one reader and the one writer of each of its files, its lock.

A run directory holds ``results.csv`` (one row per cell), ``samples.jsonl`` (raw samples),
``env.json`` (the environment), ``plan.json`` (the cells planned), ``logs/`` (worker logs),
``kernels.jsonl`` (with ``--profile``: each profiled cell's kernels) and,
for a submitted run, ``submit.json`` and ``shards/K-of-N/`` (a run directory per shard); a merge
adds ``envs/<host>-<gpu>.json``. Every command reads and writes these through this module.

Readers never change a file. A last line without its newline (a writer killed mid-row, a full
disk) is dropped and said once per file ("dropped 1 incomplete row"); a malformed line anywhere
else is a :class:`RunDirError` naming the file and line. Writers append and fsync a line at a time,
or replace a whole file through a temporary file that never outlives a failure.

:class:`RunLock` is the one-writer rule: an exclusive ``flock`` on ``.lock`` held by the writing
process for the run's life (the kernel drops it when the process dies, so no stale lock survives
a crash); a second writer gets :class:`RunLocked` naming the holder's pid, host and start time.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from wkvbench import schema
from wkvbench.schema import ENV_FILE, RESULTS_FILE, SAMPLES_FILE  # the results schema's own files

PLAN_FILE = "plan.json"
SUBMIT_FILE = "submit.json"
LOCK_FILE = ".lock"
SHARDS_DIR = "shards"
ENVS_DIR = "envs"
LOGS_DIR = "logs"
KERNELS_FILE = "kernels.jsonl"  # --profile: the per-kernel breakdown of each profiled cell


class RunDirError(ValueError):
    """A run directory file that cannot be read or written; the message names the file."""


class RunLocked(RunDirError):
    """Another process holds the run directory's lock."""


def slug(text: str) -> str:
    """``text`` as a file-name part: letters and digits, runs of anything else as one ``-``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-").lower() or "unknown"


def shard_dir(run, k: int, n: int) -> Path:
    """Shard ``k`` of ``n``'s run directory inside a submitted run."""
    return Path(run) / SHARDS_DIR / f"{k:03d}-of-{n:03d}"


def describe_os_error(exc: OSError) -> str:
    """``path: cause`` of an OSError, one line (e.g. "runs/x/results.csv: No space left on device")."""
    where = exc.filename or ""
    cause = exc.strerror or str(exc)
    return f"{where}: {cause}" if where else cause


def say_error(command: str, exc: Exception) -> int:
    """Print ``command: message`` for a command's error, one line; return its exit code: 1 for an
    I/O fault (:func:`describe_os_error`), 2 for anything else (bad input, another writer)."""
    if isinstance(exc, OSError):
        print(f"{command}: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    print(f"{command}: {exc}", file=sys.stderr)
    return 2


# ============================================================================= reading
_said: set[tuple[str, int]] = set()


def _say_dropped(path: Path, size: int, what: str, log=None) -> None:
    """Say once per file (and size) that its torn last line was left out."""
    tag = (str(Path(path).resolve()), size)
    if tag in _said:
        return
    _said.add(tag)
    msg = f"wkvbench: {path}: dropped 1 incomplete {what} (a last line cut short by a stopped writer)"
    (log or (lambda m: print(m, file=sys.stderr, flush=True)))(msg)


def _complete_text(path: Path, what: str, log=None, torn: list | None = None) -> str:
    """The file's text up to its last newline (a torn last line is dropped and said once;
    ``torn``, when given, gets the size of the file whose tail was dropped)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RunDirError(describe_os_error(exc)) from None
    if data and not data.endswith(b"\n"):
        if torn is not None:
            torn.append(len(data))
        else:
            _say_dropped(path, len(data), what, log)
        data = data[: data.rfind(b"\n") + 1]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RunDirError(f"{path}: line {line}: not UTF-8 text") from None


@dataclass
class Table:
    """``results.csv`` as text: its header and its rows (dicts of strings), every line complete."""

    path: Path
    fieldnames: tuple[str, ...]
    rows: list[dict]
    lines: list[int]  # the file line of each row, for messages


def read_table(path, log=None) -> Table:
    """Read a results file: rows as strings; a row whose field count differs from the header's
    is a RunDirError naming ``file:line``. A missing or empty file is an empty table."""
    path = Path(path)
    if not path.is_file():
        return Table(path, (), [], [])
    torn: list[int] = []
    text = _complete_text(path, "row", log, torn)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = tuple(next(reader, ()))
        rows, lines = [], []
        for values in reader:
            if not values:
                continue
            if len(values) != len(header) and torn and reader.line_num >= text.count("\n"):
                break  # the torn row held a quoted line break: its first part is torn too
            if len(values) != len(header):
                raise RunDirError(
                    f"{path}: line {reader.line_num}: {len(values)} fields, the header has {len(header)} "
                    "(a damaged row; repair or remove it)"
                )
            rows.append(dict(zip(header, values, strict=True)))
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise RunDirError(f"{path}: line {reader.line_num}: {exc}") from None
    if torn:
        _say_dropped(path, torn[0], "row", log)
    return Table(path, header, rows, lines)


def read_results(run, log=None, *, strict_version: bool = True) -> list[dict]:
    """Typed rows (``schema.parse_row``) of a run's ``results.csv``, in file order (a key may
    repeat). The columns must be this wkvbench's; a value that is not a number where one is due,
    or a row of another schema version, is a RunDirError naming ``file:line``."""
    version = schema.SCHEMA_VERSION
    table = read_table(Path(run) / RESULTS_FILE, log)
    if not table.fieldnames:
        return []
    if table.fieldnames != schema.COLUMNS:
        old = table.rows[0].get("schema_version") if table.rows else None
        why = "it was written by another version or damaged"
        if old and old.isdigit() and int(old) < version:
            why = f"it was written with schema version {old} (`wkvbench report` reads it)"
        raise RunDirError(f"{table.path}: columns differ from this wkvbench's schema (version {version}); {why}")
    out = []
    for raw, line in zip(table.rows, table.lines, strict=True):
        try:
            row = schema.parse_row(raw)
        except ValueError as exc:
            raise RunDirError(f"{table.path}: line {line}: {exc}") from None
        if row.get("status") not in schema.STATUSES:
            raise RunDirError(
                f"{table.path}: line {line}: unknown status {row.get('status')!r}; known: {schema.STATUSES}"
            )
        if strict_version and row.get("schema_version") != version:
            raise RunDirError(
                f"{table.path}: line {line}: row of schema version {raw.get('schema_version')!r}, "
                f"this wkvbench writes {version}"
            )
        out.append(row)
    return out


def samples_records(run, log=None) -> list[tuple[int, dict]]:
    """(line number, record) of each record of a run's ``samples.jsonl``, in file order; a
    malformed line that is not the torn last one is a RunDirError naming the file and line."""
    return _jsonl_records(Path(run) / SAMPLES_FILE, "samples record", log)


def _jsonl_records(path: Path, what: str, log=None) -> list[tuple[int, dict]]:
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(_complete_text(path, what, log).splitlines(), 1):
        if not line.strip():
            continue
        out.append((n, _json_object(line, f"{path}: line {n}", f"a {what}")))
    return out


def read_samples(run, log=None) -> list[dict]:
    """The records of a run's ``samples.jsonl`` in file order (see :func:`samples_records`)."""
    return [rec for _, rec in samples_records(run, log)]


def read_kernels(run, log=None) -> list[dict]:
    """The records of a run's ``kernels.jsonl`` (the ``--profile`` pass: one per profiled cell, its key
    columns, ``calls`` and ``kernels``), in file order; read like ``samples.jsonl``."""
    return [rec for _, rec in _jsonl_records(Path(run) / KERNELS_FILE, "kernels record", log)]


def append_kernels(run, rec: dict) -> None:
    """Append one profile record to the run's ``kernels.jsonl``."""
    append_line(Path(run) / KERNELS_FILE, json.dumps(rec, separators=(",", ":"), default=str) + "\n")


def read_json(path: Path, what: str):
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RunDirError(describe_os_error(exc)) from None
    except UnicodeDecodeError:
        raise RunDirError(f"{path}: not UTF-8 text") from None
    return _json_object(text, str(path), what)


def _json_object(text: str, where: str, what: str) -> dict:
    """``text`` parsed as one JSON object; anything else is a RunDirError naming ``where``."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RunDirError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{where}: expected a JSON object ({what})")
    return data


def read_env(run) -> dict:
    """A run's ``env.json`` ({} when there is none)."""
    path = Path(run) / ENV_FILE
    return read_json(path, "the run's environment") if path.is_file() else {}


def read_plan(run) -> dict | None:
    """A run's ``plan.json`` (``shard``, ``workers``, ``cells``), or None when there is none."""
    path = Path(run) / PLAN_FILE
    if not path.is_file():
        return None
    data = read_json(path, "the planned cells")
    if not isinstance(data.get("cells"), list):
        raise RunDirError(f"{path}: no list of cells")
    return data


def planned_keys(run) -> set[tuple] | None:
    """The cell keys a run planned (``plan.json``), or None when it has no plan."""
    plan = read_plan(run)
    if plan is None:
        return None
    try:
        return {schema.key(**dict(zip(schema.KEY, c, strict=True))) for c in plan["cells"]}
    except (TypeError, ValueError) as exc:
        raise RunDirError(f"{Path(run) / PLAN_FILE}: a cell is not a key ({exc})") from None


def read_submit(run) -> dict | None:
    """A submitted run's ``submit.json``, or None when the directory was not submitted."""
    path = Path(run) / SUBMIT_FILE
    return read_json(path, "the submission") if path.is_file() else None


def shard_dirs(run) -> list[Path]:
    """The shard directories under a submitted run that have results."""
    shards = Path(run) / SHARDS_DIR
    return sorted(d for d in shards.iterdir() if (d / RESULTS_FILE).is_file()) if shards.is_dir() else []


def machine_envs(run) -> list[dict]:
    """Every machine's environment of a run: its ``envs/`` files, or its single ``env.json``."""
    sub = Path(run) / ENVS_DIR
    if sub.is_dir():
        return [read_json(f, "a machine's environment") for f in sorted(sub.glob("*.json"))]
    env = read_env(run)
    return [env] if env else []


# ============================================================================= writing
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


def csv_line(values) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow([fmt(v) for v in values])
    return buf.getvalue()


def write_atomic(path, text: str) -> None:
    """Replace ``path`` by ``text`` through a synced temporary file (removed if anything fails),
    so a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(exc, OSError) and not exc.filename:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise


def write_json(path, data) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str))


def append_line(path, line: str) -> None:
    """Append one complete line and fsync it. On a failure (disk full) the bytes that did get out
    are cut off again, so the file still ends with a complete line."""
    data = line.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException as exc:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            if isinstance(exc, OSError) and not exc.filename:
                raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
            raise
    finally:
        os.close(fd)


def repair_tail(path) -> bool:
    """Cut a last line left unfinished by a stopped writer (the one repair a writer makes); True if cut."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return False
        fh.seek(0)
        data = fh.read()
        fh.truncate(data.rfind(b"\n") + 1)
    return True


def write_env(run, env: dict) -> None:
    """The one writer of ``env.json``."""
    write_json(Path(run) / ENV_FILE, env)


def write_plan(run, cells, shard: tuple[int, int] | None, workers: int = 1) -> None:
    """Record which cells this run (or shard) is to produce (``plan.json``), for ``status``."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    data = {"shard": list(shard) if shard else None, "workers": workers, "cells": [list(k) for k in cells]}
    write_atomic(run / PLAN_FILE, json.dumps(data))


def write_submit(run, settings: dict) -> None:
    write_json(Path(run) / SUBMIT_FILE, settings)


# ============================================================================= the lock
_held: dict[str, list] = {}  # resolved dir -> [file object, depth]: re-entrant within a process


def _holder(fh) -> str:
    try:
        fh.seek(0)
        info = json.loads(fh.read() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}"


class RunLock:
    """The run directory's exclusive lock, held by the writing process (a context manager)."""

    def __init__(self, run, what: str = "wkvbench"):
        self.dir = Path(run)
        self.what = what
        self._key = None

    def __enter__(self) -> RunLock:
        import fcntl

        self.dir.mkdir(parents=True, exist_ok=True)
        key = str(self.dir.resolve())
        if key in _held:
            _held[key][1] += 1
            self._key = key
            return self
        path = self.dir / LOCK_FILE
        fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (kept open while held)
        deadline = time.monotonic() + 1.0  # a reader's probe holds it for microseconds
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                who = _holder(fh)
                fh.close()
                raise RunLocked(
                    f"{self.dir}: another wkvbench is writing this run directory ({who}); "
                    "wait for it to finish or use another --out"
                ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        info["command"] = self.what
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(info))
        fh.flush()
        _held[key] = [fh, 1]
        self._key = key
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        entry = _held.get(self._key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            fh = entry[0]
            try:
                fh.seek(0)
                fh.truncate()
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            except OSError:
                pass
            fh.close()
            del _held[self._key]


def in_progress(run) -> str | None:
    """Who is writing ``run`` now ("pid N on HOST since T"), or None when nobody is."""
    import fcntl

    path = Path(run) / LOCK_FILE
    if not path.is_file() or str(Path(run).resolve()) in _held:
        return None
    try:
        fh = open(path, encoding="utf-8")  # noqa: SIM115
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _holder(fh)
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return None


def say_in_progress(run, log=None) -> None:
    """Tell a reader the run is still being written (its last cells may be missing)."""
    who = in_progress(run)
    if who:
        (log or (lambda m: print(m, file=sys.stderr, flush=True)))(
            f"wkvbench: {run}: run in progress ({who}); reading the cells finished so far"
        )
