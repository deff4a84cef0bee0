"""Runs from several machines: which GPU model each row ran on, one report per GPU model, and
the guard that keeps ``compare`` from comparing timings across GPU models by accident.

The ``gpu`` column of ``results.csv`` names the device a row was timed on (the GPU, or the CPU
model for ``device=cpu``). A merged run (``wkvbench merge``) can hold the same cell for several
GPU models, and ``wkvbench report RUN_A RUN_B ...`` can be given runs from different machines:
:func:`build_faceted` splits their rows by GPU model and writes one report per model
(``OUT/<model>/report.html``, each with that machine's environment from ``envs/``) plus an
``index.md`` that lists them; runs of one GPU model are pooled into one report.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from wkvbench.harness import rundir
from wkvbench.report.build import build_report
from wkvbench.schema import COLUMNS, RESULTS_FILE, SAMPLES_FILE, key_of


def _read(run: Path) -> list[dict]:
    return rundir.read_table(run / RESULTS_FILE).rows


def gpu_models(run) -> list[str]:
    """The GPU (or CPU) models a run's rows were timed on, in order of appearance."""
    path = Path(run)
    if not (path / RESULTS_FILE).is_file():
        return []
    return list(dict.fromkeys(r.get("gpu") or "" for r in _read(path) if r.get("gpu")))


def gpu_mismatch(run_a, run_b) -> str | None:
    """Why timings of the two runs are not comparable (different GPU models), or None."""
    a, b = gpu_models(run_a), gpu_models(run_b)
    if not a or not b or a == b:
        return None
    return f"RUN_A ran on {', '.join(a)} but RUN_B on {', '.join(b)}"


def _envs(run: Path) -> list[dict]:
    return rundir.machine_envs(run)


def _env_for(model: str, envs: list[dict]) -> dict:
    def name(env):
        gpu, cpu = env.get("gpu"), env.get("cpu")
        gpu = gpu.get("name") if isinstance(gpu, dict) else gpu
        return gpu or (cpu.get("model") if isinstance(cpu, dict) else cpu)

    return next((e for e in envs if name(e) == model), {})


def split_by_gpu(runs, out) -> dict[str, Path]:
    """One run directory per GPU model under ``out/<model>/run``, from the rows of ``runs``."""
    out = Path(out)
    facets: dict[str, dict] = {}
    for run in map(Path, runs):
        if not (run / RESULTS_FILE).is_file():
            raise ValueError(f"RUN_DIR: {run}: not a run directory (no {RESULTS_FILE})")
        envs = _envs(run)
        samples = {}
        for _, rec in rundir.samples_records(run):
            samples.setdefault((key_of(rec), rec.get("gpu")), json.dumps(rec, separators=(",", ":")))
        for row in _read(run):
            model = row.get("gpu") or "unknown"
            f = facets.setdefault(model, {"rows": {}, "samples": {}, "env": _env_for(model, envs)})
            k = key_of(row)
            f["rows"][k] = row  # a later run's row for the same cell and model wins
            line = samples.get((k, row.get("gpu"))) or samples.get((k, None))
            if line:
                f["samples"][k] = line
    dirs = {}
    for model, f in facets.items():
        d = out / rundir.slug(model) / "run"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / RESULTS_FILE, "w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(COLUMNS), extrasaction="ignore")
            w.writeheader()
            w.writerows(f["rows"].values())
        (d / SAMPLES_FILE).write_text("".join(s + "\n" for s in f["samples"].values()), encoding="utf-8")
        rundir.write_env(d, f["env"])
        dirs[model] = d
    return dirs


def build_faceted(runs, out, title: str | None = None, formats=("png", "svg")) -> dict[str, Path]:
    """A report per GPU model of ``runs`` under ``out``, and ``out/index.md``; returns model -> report dir."""
    out = Path(out)
    made = {}
    for model, run_dir in split_by_gpu(runs, out).items():
        rep_dir = run_dir.parent
        build_report(run_dir, rep_dir, title=f"{title or 'wkvbench report'}: {model}", formats=formats)
        made[model] = rep_dir
    lines = [f"# {title or 'wkvbench report'}: {len(made)} GPU model(s)", ""]
    lines += [f"- [{model}]({d.name}/report.md) ([html]({d.name}/report.html))" for model, d in made.items()]
    lines += ["", "Runs: " + ", ".join(str(r) for r in runs), ""]
    (out / "index.md").write_text("\n".join(lines), encoding="utf-8")
    return made
