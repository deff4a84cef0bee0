"""Read a run directory (``results.csv``, ``samples.jsonl``, ``env.json``) into typed frames.

The report and ``compare`` read nothing else. :func:`load_run` returns a :class:`Run`:

* ``results``: one row per cell, every :data:`wkvbench.schema.COLUMNS` column present (missing
  ones added empty) except :data:`IGNORED_COLUMNS` (dropped), numeric columns as floats,
  ``batch``/``tokens`` as ints, ``status`` checked against :data:`wkvbench.schema.STATUSES`,
  plus ``size`` (``T``/``S``/``B`` from the preset name) and ``ok`` (status ``ok`` with a
  finite, positive median); ``seconds`` and ``family`` filled in where the writer left them empty,
  and the rates (:data:`wkvbench.schema.DERIVED_COLUMNS`) from :func:`wkvbench.schema.derive`.
  A key written twice (an appended re-run) keeps its last row.
* ``samples``: the raw timing samples per cell key (:func:`wkvbench.schema.key_of`; empty when the file is absent).
* ``env``: an :class:`Env`, tolerant of missing keys (the GPU is ``None`` on a CPU run).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from wkvbench import schema
from wkvbench.harness import rundir
from wkvbench.presets import find_preset, seconds_for_tokens
from wkvbench.report.analysis import derived

#: Per-row speed-up columns older runs wrote: dropped on load, never read. The report computes
#: its speed-ups from the medians, by the policy of :mod:`wkvbench.report.baselines`.
IGNORED_COLUMNS = ("speedup", "baseline_impl")
NUMERIC = tuple(c for c in schema.NUMERIC_COLUMNS if c not in IGNORED_COLUMNS)
INTEGER = schema.INTEGER_COLUMNS
REQUIRED = ("op", "impl", "model", "batch", "tokens", "status")
SIZES = ("T", "S", "B")

Key = tuple  # a cell's key: schema.key_of


@dataclass(frozen=True)
class Env:
    """The environment a run was measured in (``env.json``); every field may be missing."""

    gpu: str | None = None
    driver: str | None = None
    cuda: str | None = None
    cc: str | None = None
    sm_count: int | None = None
    gpu_mem_bytes: float | None = None
    clocks: str | None = None
    max_clocks: str | None = None
    power_limit_w: float | None = None
    cpu: str | None = None
    cpu_detail: str | None = None
    python: str | None = None
    packages: dict = field(default_factory=dict)
    commit: str | None = None
    dirty: bool | None = None
    suite: str | None = None
    argv: str | None = None
    copy_bandwidth_gbs: float | None = None
    timestamp: str | None = None
    hostname: str | None = None
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def device_label(self) -> str:
        """``GPU: NVIDIA H100 80GB HBM3`` or ``CPU: AMD EPYC ...``."""
        if self.gpu:
            return f"GPU: {self.gpu}"
        return f"CPU: {self.cpu}" if self.cpu else "device: unknown"

    @property
    def date(self) -> str:
        return (self.timestamp or "")[:10] or "date unknown"

    @property
    def commit_label(self) -> str:
        if not self.commit:
            return "commit unknown"
        return f"commit {self.commit[:10]}" + (" (dirty)" if self.dirty else "")

    def footer(self) -> str:
        """The line printed under every figure: device, driver, commit, date."""
        parts = [self.device_label]
        if self.gpu:
            parts.append(f"driver {self.driver or 'unknown'}" + (f", CUDA {self.cuda}" if self.cuda else ""))
        parts += [self.commit_label, self.date]
        return "  |  ".join(parts)

    def rows(self) -> list[tuple[str, str]]:
        """(field, value) pairs for the report's environment table (only fields that are known)."""
        pkgs = ", ".join(f"{k} {v}" for k, v in sorted(self.packages.items()) if v)
        items = [
            ("GPU", self.gpu),
            ("compute capability", self.cc),
            ("SMs", self.sm_count),
            ("GPU memory", None if self.gpu_mem_bytes is None else f"{self.gpu_mem_bytes / 2**30:.1f} GiB"),
            ("driver", self.driver),
            ("CUDA", self.cuda),
            ("clocks", self.clocks),
            ("power limit", None if self.power_limit_w is None else f"{self.power_limit_w:g} W"),
            ("CPU", None if not self.cpu else self.cpu + (f" ({self.cpu_detail})" if self.cpu_detail else "")),
            ("Python", self.python),
            ("packages", pkgs),
            ("commit", None if not self.commit else self.commit + (" (dirty)" if self.dirty else "")),
            ("suite", self.suite),
            ("command", self.argv),
            ("copy bandwidth", None if self.copy_bandwidth_gbs is None else f"{self.copy_bandwidth_gbs:.1f} GB/s"),
            ("started", self.timestamp),
            ("host", self.hostname),
        ]
        return [(k, str(v)) for k, v in items if v not in (None, "")]

    def comparable(self) -> dict[str, str]:
        """Fields that make timings incomparable when they differ between two runs."""
        out = {
            "device": self.gpu or self.cpu,
            "driver": self.driver,
            "cuda": self.cuda,
            "max clocks": self.max_clocks,
            "power limit (W)": self.power_limit_w,
        }
        for pkg in ("torch", "triton"):
            out[pkg] = self.packages.get(pkg)
        return {k: "" if v is None else str(v) for k, v in out.items()}


@dataclass
class Run:
    """A loaded run directory."""

    path: Path
    results: pd.DataFrame
    samples: dict[Key, np.ndarray]
    env: Env

    def samples_for(self, key: Key) -> np.ndarray | None:
        return self.samples.get(key)


# ----------------------------------------------------------------------------- env.json
def _text(x) -> str | None:
    if x is None or x == "":
        return None
    if isinstance(x, dict):
        return ", ".join(f"{k} {v}" for k, v in x.items() if v not in (None, "")) or None
    if isinstance(x, (list, tuple)):
        return " ".join(str(v) for v in x) or None
    return str(x)


def _number(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _clocks(x) -> tuple[str | None, str | None]:
    """(display text, the part that identifies the clock setup: max clocks) from env.json's clocks."""
    if not isinstance(x, dict) or not ({"current", "max"} & set(x)):
        return _text(x), _text(x)

    def pair(d):
        if not isinstance(d, dict):
            return None
        sm, mem = d.get("sm"), d.get("mem")
        return None if sm is None and mem is None else f"SM {sm} / memory {mem} MHz"

    cur, top = pair(x.get("current")), pair(x.get("max"))
    text = ", ".join(p for p in (f"now {cur}" if cur else "", f"max {top}" if top else "") if p) or None
    return text, top


def parse_env(raw: dict) -> Env:
    """An :class:`Env` from the ``env.json`` dict; unknown or missing keys are tolerated."""
    if not isinstance(raw, dict):
        raise TypeError(f"env: expected a JSON object, got {type(raw).__name__}")
    gpu = raw.get("gpu")
    if isinstance(gpu, list):  # several GPUs: the first is the one measured
        gpu = gpu[0] if gpu else None
    gpu = gpu if isinstance(gpu, dict) else ({"name": gpu} if gpu else {})
    cpu = raw.get("cpu")
    cpu_detail = None
    if isinstance(cpu, dict):
        threads = cpu.get("torch_threads") or cpu.get("logical_cores")
        cpu_detail = f"{cpu.get('logical_cores')} logical cores, torch threads {threads}" if threads else None
        cpu = cpu.get("model") or cpu.get("name") or cpu.get("brand") or _text(cpu)
    suite = raw.get("suite")
    if isinstance(suite, dict):
        suite = suite.get("name") or suite.get("description") or "(ad hoc)"
    clocks, max_clocks = _clocks(gpu.get("clocks"))
    git = raw.get("git") if isinstance(raw.get("git"), dict) else {}
    packages = raw.get("packages") or {}
    if isinstance(packages, list):
        packages = dict(str(p).split("==", 1) if "==" in str(p) else (str(p), "") for p in packages)
    python = raw.get("python")
    if isinstance(python, dict):
        python = python.get("version") or _text(python)
    sm = _number(gpu.get("sm_count"))
    return Env(
        gpu=_text(gpu.get("name")),
        driver=_text(gpu.get("driver") or raw.get("driver")),
        cuda=_text(gpu.get("cuda") or raw.get("cuda")),
        cc=_text(gpu.get("cc")),
        sm_count=None if sm is None else int(sm),
        gpu_mem_bytes=_number(gpu.get("mem_bytes")),
        clocks=clocks,
        max_clocks=max_clocks,
        power_limit_w=_number(gpu.get("power_limit_w")),
        cpu=_text(cpu),
        cpu_detail=cpu_detail,
        python=_text(python),
        packages={str(k): ("" if v is None else str(v)) for k, v in dict(packages).items()},
        commit=_text(git.get("commit") or raw.get("commit")),
        dirty=git.get("dirty") if isinstance(git.get("dirty"), bool) else None,
        suite=_text(suite),
        argv=_text(raw.get("argv")),
        copy_bandwidth_gbs=_number(raw.get("copy_bandwidth_gbs")),
        timestamp=_text(raw.get("timestamp")),
        hostname=_text(raw.get("hostname")),
        raw=raw,
    )


# ----------------------------------------------------------------------------- results.csv
def _numeric(df: pd.DataFrame, col: str, where: str) -> pd.Series:
    s = df[col].astype(str).str.strip()
    s = s.where(~s.isin(["", "nan", "NaN", "None", "null"]), None)
    try:
        return pd.to_numeric(s, errors="raise").astype(float)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: column {col!r} has a non-numeric value ({exc})") from None


def _size(model: str) -> str:
    tail = str(model).rsplit("-", 1)[-1]
    return tail if tail in SIZES else str(model)


def tidy(df: pd.DataFrame, where: str = "results") -> pd.DataFrame:
    """Type, check and complete a raw results table (strings as read from CSV, or a built frame)."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{where}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing required column(s) {missing}")
    df = df.drop(columns=[c for c in IGNORED_COLUMNS if c in df.columns])
    for col in schema.COLUMNS:
        if col not in df.columns and col not in IGNORED_COLUMNS:
            df[col] = None
    for col in df.columns:
        if col not in NUMERIC and col not in INTEGER:
            df[col] = df[col].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    for col in NUMERIC:
        df[col] = _numeric(df, col, where)
    for col in INTEGER:
        vals = _numeric(df, col, where)
        if vals.isna().any() or (vals != vals.round()).any():
            raise ValueError(f"{where}: column {col!r} must hold integers in every row")
        df[col] = vals.astype(int)
    df["status"] = df["status"].str.strip().str.lower()
    bad = sorted(set(df["status"]) - set(schema.STATUSES))
    if bad:
        raise ValueError(f"{where}: unknown status {bad}; expected one of {schema.STATUSES}")
    for col, default in schema.KEY_DEFAULTS.items():  # rows before a key column: its default (mode fwd, ...)
        df[col] = df[col].replace("", default)
    df["device"] = df["device"].replace("", "unknown")
    df["dtype"] = df["dtype"].replace("", "unknown")
    fam = df["model"].map(lambda m: getattr(find_preset(m), "family", ""))
    df["family"] = df["family"].where(df["family"] != "", fam)
    need = df["seconds"].isna() & df["family"].isin(["a-rwkv", "ast", "aum"])
    if need.any():
        df.loc[need, "seconds"] = [
            seconds_for_tokens(t, f) for t, f in zip(df.loc[need, "tokens"], df.loc[need, "family"], strict=True)
        ]
    df["size"] = df["model"].map(_size)
    df["ok"] = (df["status"] == "ok") & np.isfinite(df["median_ms"]) & (df["median_ms"] > 0)  # never inf
    df[list(schema.DERIVED_COLUMNS)] = derived(df)  # empty ones from schema.derive
    n = len(df)
    df = df.drop_duplicates(list(schema.KEY), keep="last").reset_index(drop=True)
    if len(df) < n:
        warnings.warn(f"{where}: {n - len(df)} row(s) repeat an earlier cell's key; kept the last", stacklevel=2)
    return df


def read_samples(run_dir) -> dict[Key, np.ndarray]:
    """``samples.jsonl``: key -> samples in ms (later lines for a key replace earlier ones)."""
    out: dict[Key, np.ndarray] = {}
    path = Path(run_dir) / schema.SAMPLES_FILE
    for n, rec in rundir.samples_records(run_dir):
        try:
            key = schema.key(**{k: rec[k] for k in schema.KEY if k in rec})  # ValueError: a key column missing
            vals = np.asarray(rec.get("samples_ms") or [], dtype=float)
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"{path}: line {n} is not a samples record ({exc})") from None
        out[key] = vals[np.isfinite(vals)]
    return out


def load_run(run_dir) -> Run:
    """Load a run directory; ValueError naming ``run_dir`` when it has no ``results.csv``."""
    path = Path(run_dir)
    csv = path / schema.RESULTS_FILE
    if not csv.is_file():
        raise ValueError(f"run_dir: {path} has no {schema.RESULTS_FILE}")
    rundir.say_in_progress(path)
    table = rundir.read_table(csv)
    if not table.fieldnames:
        raise ValueError(f"{csv}: empty file (no header, no rows)")
    raw = pd.DataFrame(table.rows, columns=list(table.fieldnames), dtype=str)
    results = tidy(raw, where=str(csv))
    versions = sorted({int(v) for v in results["schema_version"].dropna()})
    if len(versions) > 1:
        warnings.warn(f"{csv}: rows of schema versions {', '.join(map(str, versions))} mixed", stacklevel=2)
    version = results["schema_version"].max()
    if pd.notna(version) and version > schema.SCHEMA_VERSION:
        warnings.warn(
            f"{csv}: schema version {version:g} is newer than this reader's {schema.SCHEMA_VERSION}", stacklevel=2
        )
    env = parse_env(rundir.read_env(path))
    env = _env_from_rows(env, results)
    return Run(path=path, results=results, samples=read_samples(path), env=env)


def _env_from_rows(env: Env, results: pd.DataFrame) -> Env:
    """Fill device, commit and date from the rows when env.json lacks them."""

    def first(col):
        vals = [v for v in results[col] if v]
        return vals[0] if vals else None

    updates = {}
    if not env.gpu and not env.cpu:
        name = first("gpu")
        if name:
            on_cuda = (results["device"] == "cuda").any()
            updates["gpu" if on_cuda else "cpu"] = name
    if not env.commit and first("commit"):
        updates["commit"] = first("commit")
    if not env.timestamp and first("timestamp"):
        updates["timestamp"] = min(v for v in results["timestamp"] if v)
    return replace(env, **updates) if updates else env
