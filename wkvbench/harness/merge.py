"""``wkvbench merge RUN... -o OUT``: several run directories (shards, machines, GPU models) as one.

Inputs are run directories (``results.csv``, ``samples.jsonl``, ``env.json``); a directory made by
``wkvbench submit`` (it has ``shards/``) stands for its shard directories. The output is a run
directory like any other, read by ``report`` and ``compare``:

* ``results.csv``: the union of the inputs' rows. A cell is identified by its key
  (``wkvbench.schema.KEY``) *and* the GPU model it ran on (the ``gpu`` column), so the same suite
  run on an H100 and on an H200 keeps both rows. The same key on the same GPU model in two inputs
  is a conflict: the newer row (``timestamp``) is kept, and the merge says which it dropped.
* ``samples.jsonl``: the sample records of the rows kept (each tagged with its ``gpu``); likewise
  ``kernels.jsonl``, the ``--profile`` records, where an input has them.
* ``envs/<host>-<gpu>.json``: the environment of each machine and GPU model, one file each;
  ``env.json``: the first input's environment with ``machines`` (one entry per ``envs/`` file)
  and ``merged_from`` (the inputs) added, so readers of a single-machine ``env.json`` still work.
  An input that is itself a merge brings its ``envs/`` files along.

Runs of different suites (name or groups) are refused unless ``--force``: their cells do not
answer the same question. Run settings (budgets, samples) may differ; each row keeps its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wkvbench.harness import rundir
from wkvbench.harness.rundir import ENVS_DIR, KERNELS_FILE, RESULTS_FILE, SAMPLES_FILE, SHARDS_DIR, RunDirError
from wkvbench.schema import COLUMNS, key_of


class MergeError(ValueError):
    """Inputs that cannot be merged; the message names the run directory or the flag."""


def expand_inputs(paths) -> list[Path]:
    """Run directories to read: a submitted run's shard directories, other directories as given."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / SHARDS_DIR).is_dir():
            found = rundir.shard_dirs(p)
            if not found:
                raise MergeError(f"RUN: {p}: no shard has results yet (under {p / SHARDS_DIR})")
            out.extend(found)
        elif (p / RESULTS_FILE).is_file():
            out.append(p)
        else:
            raise MergeError(f"RUN: {p}: not a run directory (no {RESULTS_FILE}, no {SHARDS_DIR}/)")
    return out


def read_rows(run: Path) -> list[dict]:
    """Typed rows of a run's results.csv, every one (a key may repeat across GPU models)."""
    try:
        return rundir.read_results(run)
    except RunDirError as exc:
        raise MergeError(f"RUN: {exc}; cannot merge it") from None


def read_env(run: Path) -> dict:
    try:
        return rundir.read_env(run)
    except RunDirError as exc:
        raise MergeError(f"RUN: {exc}") from None


def read_samples(run: Path) -> list[dict]:
    try:
        return rundir.read_samples(run)
    except RunDirError as exc:
        raise MergeError(f"RUN: {exc}") from None


def suite_identity(env: dict) -> tuple | None:
    """What must agree between merged runs: the suite's name and groups (None when unknown)."""
    suite = env.get("suite")
    if not isinstance(suite, dict):
        return None
    return suite.get("name"), json.dumps(suite.get("groups"), sort_keys=True)


def machine_name(env: dict) -> str:
    """``<host>-<gpu>`` (or ``<host>-cpu``) for an ``envs/`` file name."""
    gpu = env.get("gpu")
    gpu_name = gpu.get("name") if isinstance(gpu, dict) else (gpu or "")
    return f"{rundir.slug(str(env.get('hostname') or 'host'))}-{rundir.slug(str(gpu_name or 'cpu'))}"


def merge_runs(inputs, out, force: bool = False, log=None) -> dict:
    """Merge run directories into ``out``; returns {"rows", "replaced", "machines", "inputs"}."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    runs = expand_inputs(inputs)
    out = Path(out)
    envs = [read_env(r) for r in runs]
    idents = {suite_identity(e) for e in envs} - {None}
    if len(idents) > 1 and not force:  # refused before anything is written (or the lock is taken)
        names = sorted({str(i[0]) for i in idents})
        raise MergeError(
            f"--force: the runs come from different suites ({', '.join(names)} or different groups); "
            "give --force to merge them anyway"
        )
    try:
        with rundir.RunLock(out, "wkvbench merge"):
            return _merge(runs, envs, out, log)
    except rundir.RunLocked as exc:
        raise MergeError(f"-o: {exc}") from None


def _merge(runs: list[Path], envs: list[dict], out: Path, log) -> dict:
    for run in runs:
        rundir.say_in_progress(run)
    kept: dict[tuple, tuple[dict, int]] = {}  # (key, gpu) -> (row, input index)
    replaced = 0
    for i, run in enumerate(runs):
        for row in read_rows(run):
            ident = (key_of(row), row.get("gpu") or "")
            old = kept.get(ident)
            if old is not None:
                newer, older = (row, i), old
                if str(old[0].get("timestamp") or "") > str(row.get("timestamp") or ""):
                    newer, older = old, (row, i)
                replaced += 1
                log(
                    f"merge: {'/'.join(map(str, ident[0]))} on {ident[1] or 'unknown'}: kept the newer row "
                    f"({newer[0].get('timestamp')}, {runs[newer[1]]}) over {older[0].get('timestamp')} "
                    f"from {runs[older[1]]}"
                )
                kept[ident] = newer
            else:
                kept[ident] = (row, i)
    out.mkdir(parents=True, exist_ok=True)
    text = rundir.csv_line(COLUMNS) + "".join(rundir.csv_line(row.get(c) for c in COLUMNS) for row, _ in kept.values())
    rundir.write_atomic(out / RESULTS_FILE, text)
    # samples: the record of each kept row, from the input the row came from
    wanted = {(key_of(r), i): r.get("gpu") or "" for r, i in kept.values()}
    lines = []
    for i, run in enumerate(runs):
        for rec in read_samples(run):
            gpu = wanted.get((key_of(rec), i))
            if gpu is not None and rec.get("gpu", gpu) == gpu:
                rec = {**rec, "gpu": gpu}
                lines.append(json.dumps(rec, separators=(",", ":"), default=str) + "\n")
    rundir.write_atomic(out / SAMPLES_FILE, "".join(lines))
    _write_kernels(runs, wanted, out)
    merged_inputs = [(r / ENVS_DIR).is_dir() for r in runs]  # before out/envs exists (out may be an input)
    machines = _write_envs(runs, envs, merged_inputs, out)
    first = next((e for e in envs if e), {})
    env = {**first, "machines": machines, "merged_from": [str(r) for r in runs]}
    rundir.write_env(out, env)
    return {"rows": len(kept), "replaced": replaced, "machines": machines, "inputs": [str(r) for r in runs]}


def _write_kernels(runs: list[Path], wanted: dict, out: Path) -> None:
    """``kernels.jsonl``: the profile records of the rows kept, from the input each row came from."""
    records = []
    for i, run in enumerate(runs):
        try:
            recs = rundir.read_kernels(run)
        except RunDirError as exc:
            raise MergeError(f"RUN: {exc}") from None
        for rec in recs:
            gpu = wanted.get((key_of(rec), i))
            if gpu is not None and rec.get("gpu", gpu) == gpu:
                records.append({**rec, "gpu": gpu})
    if records:
        text = "".join(json.dumps(rec, separators=(",", ":"), default=str) + "\n" for rec in records)
        rundir.write_atomic(out / KERNELS_FILE, text)
    elif (out / KERNELS_FILE).is_file():  # out is one of the inputs: none of its records was kept
        (out / KERNELS_FILE).unlink()


def _write_envs(runs: list[Path], envs: list[dict], merged: list[bool], out: Path) -> list[dict]:
    found: dict[str, dict] = {}
    for run, env, was_merged in zip(runs, envs, merged, strict=True):
        sub = run / ENVS_DIR
        if was_merged:  # an input that is itself a merge: its machines come along
            for f in sorted(sub.glob("*.json")):
                found.setdefault(f.stem, rundir.read_json(f, "a machine's environment"))
        elif env:
            found.setdefault(machine_name(env), env)
    (out / ENVS_DIR).mkdir(exist_ok=True)
    machines = []
    for name, env in found.items():
        rundir.write_json(out / ENVS_DIR / f"{name}.json", env)
        gpu = env.get("gpu")
        machines.append(
            {
                "file": f"{ENVS_DIR}/{name}.json",
                "hostname": env.get("hostname"),
                "gpu": gpu.get("name") if isinstance(gpu, dict) else gpu,
                "cpu": (env.get("cpu") or {}).get("model") if isinstance(env.get("cpu"), dict) else None,
            }
        )
    return machines


def machine_envs(run) -> list[dict]:
    """Every machine's environment of a run (see :func:`wkvbench.harness.rundir.machine_envs`)."""
    return rundir.machine_envs(run)


# ============================================================================= CLI
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories (a submitted run: its shards)")
    parser.add_argument("-o", "--out", required=True, metavar="OUT", help="merged run directory to write")
    parser.add_argument("--force", action="store_true", help="merge runs of different suites")


def main(args: argparse.Namespace) -> int:
    try:
        res = merge_runs(args.runs, args.out, force=args.force)
    except (MergeError, OSError) as exc:
        return rundir.say_error("wkvbench merge", exc)
    gpus = sorted({m["gpu"] or m["cpu"] or "?" for m in res["machines"]})
    print(
        f"merged {len(res['inputs'])} run(s) -> {args.out}: {res['rows']} rows, {res['replaced']} replaced by newer, "
        f"machines: {', '.join(gpus)}"
    )
    return 0
