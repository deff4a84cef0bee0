"""``wkvbench history check --base REF --head REF``: the CI gate between two stored commits.

For every environment (GPU model and environment digest) both commits were measured in, the
cells of each commit (runs of one commit pooled, :mod:`wkvbench.history.series`) are compared by
:func:`wkvbench.report.compare.compare_runs`: the same bootstrap intervals, verdicts
(``SLOWER``, ``AMBIGUOUS``, ``FASTER``, ``SAME``) and ``A -> B`` statuses as ``wkvbench compare``;
a regression is a ``SLOWER`` cell or a cell ok at base and broken at head. Environments only one
commit was measured in are listed and never compared.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from wkvbench import schema
from wkvbench.history import series as se
from wkvbench.report.compare import Comparison, compare_runs
from wkvbench.report.load import Env, Run


def resolve(ref: str, commits: list[str], what: str = "REF") -> str:
    """The stored commit ``ref`` names: a stored commit or unique prefix, else what ``git rev-parse`` says."""
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"{what}: expected a commit or git ref, got {ref!r}")
    hits = [c for c in commits if c.startswith(ref)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise ValueError(f"{what}: {ref!r} matches {len(hits)} stored commits ({', '.join(h[:10] for h in hits)})")
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    if sha in commits:
        return sha
    raise ValueError(f"{what}: {ref!r} is not a stored commit (add its run first: wkvbench history add RUN)")


def _run(points: dict[tuple, se.Point], label: str) -> Run:
    rows, samples = [], {}
    for key, p in points.items():
        row = dict(zip(schema.KEY, key, strict=True))
        row.update(status=p.status, median_ms=p.median_ms, p20_ms=p.p20_ms, p80_ms=p.p80_ms, ok=p.ok)
        rows.append(row)
        if p.samples.size:
            samples[key] = p.samples
    df = pd.DataFrame(rows, columns=[*schema.KEY, "status", "median_ms", "p20_ms", "p80_ms", "ok"])
    for col in ("median_ms", "p20_ms", "p80_ms"):
        df[col] = df[col].astype(float)
    return Run(path=Path(label), results=df, samples=samples, env=Env())


@dataclass
class Check:
    """Per environment both commits share: its comparison; and the environments only one has."""

    base: str
    head: str
    comparisons: dict[tuple[str, str], Comparison] = field(default_factory=dict)
    only: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def regressed(self) -> bool:
        return any(c.regressed for c in self.comparisons.values())


def check(df: pd.DataFrame, base: str, head: str, threshold: float = 0.05, resamples: int = 2000, seed: int = 0):
    """Compare commit ``head`` against ``base`` in every environment both were measured in."""
    if base == head:
        raise ValueError(f"--head: the same commit as --base ({base[:10]})")
    lines = se.lines(df)
    per_env: dict[tuple[str, str], tuple[dict, dict]] = {}
    for (key, gpu), pts in lines.items():
        for p in pts:
            if p.commit in (base, head):
                a, b = per_env.setdefault((gpu, p.digest), ({}, {}))
                (a if p.commit == base else b)[key] = p
    out = Check(base, head)
    for env, (a, b) in per_env.items():
        if not a or not b:
            out.only[env] = base if a else head
            continue
        out.comparisons[env] = compare_runs(
            _run(a, base[:10]), _run(b, head[:10]), threshold=threshold, resamples=resamples, seed=seed
        )
    return out
