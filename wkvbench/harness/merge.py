"""``wkvbench merge RUN... -o OUT``: several run directories (shards, machines, GPU models) as one.

Inputs are run directories (``results.csv``, ``samples.jsonl``, ``env.json``); a directory made by
``wkvbench submit`` (it has ``shards/``) stands for its shard directories. The output is a run
directory like any other, read by ``report`` and ``compare``:

* ``results.csv``: the union of the inputs' rows. A cell is identified by its key
  (``wkvbench.schema.KEY``) *and* the GPU model it ran on (the ``gpu`` column), so the same suite
  run on an H100 and on an H200 keeps both rows. The same key on the same GPU model in two inputs
  is a conflict: the newer row (``timestamp``) is kept, and the merge says which it dropped.
* ``samples.jsonl``: the sample records of the rows kept (each tagged with its ``gpu``).
* ``envs/<host>-<gpu>.json``: the environment of each machine and GPU model, one file each;
  ``env.json``: the first input's environment with ``machines`` (one entry per ``envs/`` file)
  and ``merged_from`` (the inputs) added, so readers of a single-machine ``env.json`` still work.
  An input that is itself a merge brings its ``envs/`` files along.

Runs of different suites (name or groups) are refused unless ``--force``: their cells do not
answer the same question. Run settings (budgets, samples) may differ; each row keeps its own.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from pathlib import Path

from wkvbench.harness.store import fmt, write_atomic
from wkvbench.schema import COLUMNS, ENV_FILE, RESULTS_FILE, SAMPLES_FILE, key_of, parse_row

SHARDS_DIR = "shards"
ENVS_DIR = "envs"


class MergeError(ValueError):
    """Inputs that cannot be merged; the message names the run directory or the flag."""


def expand_inputs(paths) -> list[Path]:
    """Run directories to read: a submitted run's shard directories, other directories as given."""
    out: list[Path] = []
    for p in map(Path, paths):
        shards = p / SHARDS_DIR
        if shards.is_dir():
            found = sorted(d for d in shards.iterdir() if (d / RESULTS_FILE).is_file())
            if not found:
                raise MergeError(f"RUN: {p}: no shard has results yet (under {shards})")
            out.extend(found)
        elif (p / RESULTS_FILE).is_file():
            out.append(p)
        else:
            raise MergeError(f"RUN: {p}: not a run directory (no {RESULTS_FILE}, no {SHARDS_DIR}/)")
    return out


def read_rows(run: Path) -> list[dict]:
    """Typed rows of a run's results.csv, every one (a key may repeat across GPU models)."""
    path = run / RESULTS_FILE
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):  # a line cut short by a killed writer
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise MergeError(f"RUN: {path}: columns differ from this wkvbench's schema; cannot merge it")
    return [parse_row(raw) for raw in reader]


def read_env(run: Path) -> dict:
    path = run / ENV_FILE
    if not path.is_file():
        return {}
    try:
        env = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise MergeError(f"RUN: {path}: not valid JSON ({exc})") from None
    return env if isinstance(env, dict) else {}


def read_samples(run: Path) -> list[dict]:
    path = run / SAMPLES_FILE
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line cut short by a killed writer
            continue
    return out


def suite_identity(env: dict) -> tuple | None:
    """What must agree between merged runs: the suite's name and groups (None when unknown)."""
    suite = env.get("suite")
    if not isinstance(suite, dict):
        return None
    return suite.get("name"), json.dumps(suite.get("groups"), sort_keys=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "unknown"


def machine_name(env: dict) -> str:
    """``<host>-<gpu>`` (or ``<host>-cpu``) for an ``envs/`` file name."""
    gpu = env.get("gpu")
    gpu_name = gpu.get("name") if isinstance(gpu, dict) else (gpu or "")
    return f"{_slug(str(env.get('hostname') or 'host'))}-{_slug(str(gpu_name or 'cpu'))}"


def merge_runs(inputs, out, force: bool = False, log=None) -> dict:
    """Merge run directories into ``out``; returns {"rows", "replaced", "machines", "inputs"}."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    runs = expand_inputs(inputs)
    out = Path(out)
    envs = [read_env(r) for r in runs]
    idents = {suite_identity(e) for e in envs} - {None}
    if len(idents) > 1 and not force:
        names = sorted({str(i[0]) for i in idents})
        raise MergeError(
            f"--force: the runs come from different suites ({', '.join(names)} or different groups); "
            "give --force to merge them anyway"
        )
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
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(COLUMNS)
    for row, _ in kept.values():
        w.writerow([fmt(row.get(c)) for c in COLUMNS])
    write_atomic(out / RESULTS_FILE, buf.getvalue())
    # samples: the record of each kept row, from the input the row came from
    wanted = {(key_of(r), i): r.get("gpu") or "" for r, i in kept.values()}
    lines = []
    for i, run in enumerate(runs):
        for rec in read_samples(run):
            gpu = wanted.get((key_of(rec), i))
            if gpu is not None and rec.get("gpu", gpu) == gpu:
                rec = {**rec, "gpu": gpu}
                lines.append(json.dumps(rec, separators=(",", ":"), default=str) + "\n")
    write_atomic(out / SAMPLES_FILE, "".join(lines))
    merged_inputs = [(r / ENVS_DIR).is_dir() for r in runs]  # before out/envs exists (out may be an input)
    machines = _write_envs(runs, envs, merged_inputs, out)
    first = next((e for e in envs if e), {})
    env = {**first, "machines": machines, "merged_from": [str(r) for r in runs]}
    write_atomic(out / ENV_FILE, json.dumps(env, indent=2, default=str))
    return {"rows": len(kept), "replaced": replaced, "machines": machines, "inputs": [str(r) for r in runs]}


def _write_envs(runs: list[Path], envs: list[dict], merged: list[bool], out: Path) -> list[dict]:
    found: dict[str, dict] = {}
    for run, env, was_merged in zip(runs, envs, merged, strict=True):
        sub = run / ENVS_DIR
        if was_merged:  # an input that is itself a merge: its machines come along
            for f in sorted(sub.glob("*.json")):
                found.setdefault(f.stem, json.loads(f.read_text(encoding="utf-8")))
        elif env:
            found.setdefault(machine_name(env), env)
    (out / ENVS_DIR).mkdir(exist_ok=True)
    machines = []
    for name, env in found.items():
        write_atomic(out / ENVS_DIR / f"{name}.json", json.dumps(env, indent=2, default=str))
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
    """Every machine's environment of a run: its ``envs/`` files, or its single ``env.json``."""
    run = Path(run)
    sub = run / ENVS_DIR
    if sub.is_dir():
        return [json.loads(f.read_text(encoding="utf-8")) for f in sorted(sub.glob("*.json"))]
    env = read_env(run)
    return [env] if env else []


# ============================================================================= CLI
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories (a submitted run: its shards)")
    parser.add_argument("-o", "--out", required=True, metavar="OUT", help="merged run directory to write")
    parser.add_argument("--force", action="store_true", help="merge runs of different suites")


def main(args: argparse.Namespace) -> int:
    try:
        res = merge_runs(args.runs, args.out, force=args.force)
    except MergeError as exc:
        print(f"wkvbench merge: {exc}", file=sys.stderr)
        return 2
    gpus = sorted({m["gpu"] or m["cpu"] or "?" for m in res["machines"]})
    print(
        f"merged {len(res['inputs'])} run(s) -> {args.out}: {res['rows']} rows, {res['replaced']} replaced by newer, "
        f"machines: {', '.join(gpus)}"
    )
    return 0
