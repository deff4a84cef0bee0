"""Read a run directory into what the history store keeps: the one place run files are read.

:func:`read_run` turns a run directory (plain, merged with several GPU models, or submitted with
``shards/``) into :class:`RunRecord` s, one per (directory, GPU model), through the run
readers every command uses (:func:`wkvbench.report.load.load_run`, which reads through
:mod:`wkvbench.harness.rundir`; :mod:`wkvbench.report.machines`;
:func:`wkvbench.harness.merge.expand_inputs`). Nothing else in :mod:`wkvbench.history` opens a
run file.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

from wkvbench import schema

#: Fields of the environment that split a history line (``Env.comparable`` of the report).
ENV_FIELDS = ("device", "driver", "cuda", "max clocks", "power limit (W)", "torch", "triton")


@dataclass
class RunRecord:
    """One run (one GPU model of it) as the store keeps it; ``report`` is where its report.html goes."""

    source: str
    commit: str
    dirty: bool
    date: str
    gpu: str
    env: dict
    digest: str
    report: str | None
    cells: list[dict] = field(default_factory=list)


def env_digest(env: dict) -> str:
    """A short stable digest of the environment fields (:data:`ENV_FIELDS`)."""
    text = json.dumps({k: str(env.get(k) or "") for k in ENV_FIELDS}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _record(run, source: Path, commit: str | None, report: Path | None) -> RunRecord:
    env = run.env
    commit = commit or env.commit
    if not commit:
        raise ValueError(
            f"RUN: {source} has no commit (env.json git.commit and the rows' commit are empty); give --commit SHA"
        )
    if not env.timestamp:
        raise ValueError(f"RUN: {source} has no date (env.json timestamp and the rows' timestamp are empty)")
    comparable = env.comparable()
    cells = []
    for row in run.results.to_dict("records"):
        k = schema.key_of(row)
        samples = run.samples_for(k)
        samples = [] if samples is None else [float(x) for x in samples]
        cells.append(
            {
                "key": k,
                "status": row["status"],
                "note": row.get("note") or "",
                "median_ms": _num(row.get("median_ms")),
                "p20_ms": _num(row.get("p20_ms")),
                "p80_ms": _num(row.get("p80_ms")),
                "min_ms": _num(row.get("min_ms")),
                "n_samples": len(samples) or int(_num(row.get("n_samples")) or 0),
                "samples": samples,
            }
        )
    return RunRecord(
        source=str(source.resolve()),
        commit=commit,
        dirty=bool(env.dirty),
        date=env.timestamp,
        gpu=comparable["device"] or "unknown",
        env=comparable,
        digest=env_digest(comparable),
        report=str(report.resolve()) if report is not None else None,
        cells=cells,
    )


def read_run(path, commit: str | None = None) -> list[RunRecord]:
    """The records of run directory ``path``; ``commit`` overrides the run's own commit.

    A submitted run (``shards/``) gives one record per shard; a merged run holding several GPU
    models gives one record per model (its environment from the merge's ``envs/``).
    """
    from wkvbench.harness.merge import SHARDS_DIR, expand_inputs
    from wkvbench.harness.rundir import slug
    from wkvbench.report.load import load_run
    from wkvbench.report.machines import gpu_models, split_by_gpu

    if not isinstance(path, (str, Path)):
        raise TypeError(f"RUN: expected a path, got {type(path).__name__}")
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"RUN: {path} is not a directory")
    if (path / SHARDS_DIR).is_dir():
        return [rec for shard in expand_inputs([path]) for rec in read_run(shard, commit)]
    if not (path / schema.RESULTS_FILE).is_file():
        raise ValueError(f"RUN: {path} is not a run directory (no {schema.RESULTS_FILE}, no {SHARDS_DIR}/)")
    models = gpu_models(path)
    if len(models) <= 1:
        run = load_run(path)
        return [_record(run, path, commit or run.env.commit, path / "report" / "report.html")]
    with warnings.catch_warnings():  # the merged rows repeat keys across GPU models: split just below
        warnings.simplefilter("ignore")
        whole = load_run(path).env  # the merged env.json: commit and date where a machine's record lacks them
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for model, part in split_by_gpu([path], tmp).items():
            run = load_run(part)
            env = run.env
            run.env = replace(env, commit=env.commit or whole.commit, timestamp=env.timestamp or whole.timestamp)
            out.append(_record(run, path, commit, path / "report" / slug(model) / "report.html"))
    return out
