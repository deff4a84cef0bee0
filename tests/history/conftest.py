"""Synthetic run directories and history points for the history tests (labelled as synthetic data)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from wkvbench import schema
from wkvbench.history.series import Point

GPU = "SYNTHETIC-GPU (test data)"


def cell(impl="torch_chunked", tokens=16, model="A-RWKV-T", mode="fwd") -> dict:
    return {
        "op": "bi_wkv7",
        "impl": impl,
        "model": model,
        "batch": 1,
        "tokens": tokens,
        "dtype": "float32",
        "device": "cuda",
        "variant": "realistic",
        "mode": mode,
    }


def write_run(
    path: Path,
    commit: str | None,
    date: str,
    cells: dict,
    *,
    gpu: str = GPU,
    driver: str = "555.55",
    torch_version: str = "2.11.0",
    n: int = 20,
    cv: float = 0.02,
    seed: int = 0,
    dirty: bool = False,
) -> Path:
    """A run directory: ``cells`` maps a cell dict's impl to (median ms, status) or a median.

    ``cells`` keys are (impl, tokens) pairs; samples are log-normal around the median.
    """
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, recs = [], []
    for (impl, tokens), spec in cells.items():
        median, status = spec if isinstance(spec, tuple) else (spec, "ok")
        k = cell(impl=impl, tokens=tokens)
        samples = (median * np.exp(cv * rng.standard_normal(n))).tolist() if status == "ok" else []
        row = dict.fromkeys(schema.COLUMNS, "")
        row.update(k, schema_version=schema.SCHEMA_VERSION, timestamp=date, status=status, gpu=gpu, commit=commit or "")
        if samples:
            q = np.quantile(samples, [0.5, 0.2, 0.8])
            row.update(median_ms=q[0], p20_ms=q[1], p80_ms=q[2], min_ms=min(samples), n_samples=n)
        rows.append(row)
        recs.append({**k, "gpu": gpu, "samples_ms": samples})
    with open(path / schema.RESULTS_FILE, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(schema.COLUMNS))
        w.writeheader()
        w.writerows(rows)
    (path / schema.SAMPLES_FILE).write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    env = {
        "timestamp": date,
        "git": {"commit": commit, "dirty": dirty},
        "cpu": {"model": "SYNTHETIC-CPU"},
        "gpu": {"name": gpu, "driver": driver, "cuda": "12.8"},
        "packages": {"torch": torch_version, "triton": "3.6.0"},
    }
    (path / schema.ENV_FILE).write_text(json.dumps(env), encoding="utf-8")
    return path


def sha(i: int) -> str:
    return f"{i:04d}" + "ab" * 18


def date(i: int) -> str:
    return f"2026-01-{1 + i // 24:02d}T{i % 24:02d}:00:00+00:00"


def points(medians, *, n=10, cv=0.03, run_sd=0.0, seed=0, digests=None) -> list[Point]:
    """A line of synthetic points: commit i has ``n`` log-normal samples around ``medians[i]``."""
    rng = np.random.default_rng(seed)
    out, seg = [], 0
    for i, m in enumerate(medians):
        level = m * np.exp(run_sd * rng.standard_normal())
        s = level * np.exp(cv * rng.standard_normal(n))
        d = digests[i] if digests else "env0"
        if i and digests and d != digests[i - 1]:
            seg += 1
        med = float(np.median(s))
        out.append(Point(sha(i), False, date(i), d, {}, "ok", "", s, med, None, None, None, None, 1, segment=seg))
    return out


@pytest.fixture
def h():
    """The helpers of this module (test files cannot import a conftest under importlib mode)."""
    return SimpleNamespace(cell=cell, write_run=write_run, sha=sha, date=date, points=points, GPU=GPU)


@pytest.fixture
def make_run(tmp_path):
    def make(name, commit, i, cells, **kw):
        return write_run(tmp_path / name, commit, date(i), cells, **kw)

    return make
