"""``wkvbench submit``: a suite as a job array on Slurm (or local processes), through submitit.

``wkvbench submit SUITE --out RUN_DIR --executor slurm --jobs N`` submits one array of N jobs;
job K runs ``wkvbench run SUITE --shard K/N --out RUN_DIR/shards/K-of-N`` (``--gpus all`` when a
job has more than one GPU, so a job uses every GPU Slurm gave it through the worker pool). Each
shard writes its own run directory on the shared storage -- no two jobs ever write one file --
and ``wkvbench merge RUN_DIR -o RUN_DIR`` (done by ``submit`` itself when it waits for the jobs,
the default with ``--executor local``) unions them into ``RUN_DIR/results.csv``.
``RUN_DIR/submit.json`` records the suite, N, the options and every submission's job ids;
``--resume`` resubmits only the shards whose planned cells are not all in their results (each
one resumed, so its finished cells stay), and ``wkvbench status RUN_DIR`` shows done, failed
and pending cells per shard.

submitit is an optional dependency (``pip install 'wkvbench[cluster]'``); ``--executor local``
runs the array as local processes, which is what the tests use.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from wkvbench.harness import rundir
from wkvbench.harness.merge import MergeError, merge_runs
from wkvbench.harness.rundir import SUBMIT_FILE, RunDirError, shard_dir
from wkvbench.harness.suite import SuiteError, load_suite

MISSING = "submit needs submitit: pip install 'wkvbench[cluster]'"


def shard_complete(path: Path) -> bool:
    """Every cell the shard planned (its ``plan.json``) has a row in its results."""
    from wkvbench.harness.status import shard_counts

    try:
        counts = shard_counts(path)
    except RunDirError:  # a damaged shard is run again (its run command says what is wrong)
        return False
    return counts["planned"] is not None and counts["pending"] == 0


def run_shard(argv: list[str]) -> int:
    """The job's body: ``wkvbench run`` with the shard's arguments (an error if it fails)."""
    from wkvbench.harness.run_command import run_argv

    if argv and argv[0] == "run":
        argv = argv[1:]
    rc = run_argv(argv)
    if rc not in (0, None):
        raise RuntimeError(f"wkvbench {' '.join(argv)} exited with {rc}")
    return 0


def _slurm_args(items) -> dict:
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SuiteError(f"command line: --slurm-arg: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def settings_name(run_dir: Path) -> str:
    return Path(run_dir).name or "run"


def _executor(args, run_dir: Path, n_jobs: int):
    try:
        import submitit
    except ImportError:
        raise SuiteError(MISSING) from None
    try:
        ex = submitit.AutoExecutor(folder=str(run_dir / "submitit" / "%j"), cluster=args.executor)
    except RuntimeError as exc:  # e.g. no srun here: not a Slurm login node
        raise SuiteError(f"command line: --executor: {args.executor}: {exc}") from None
    params = {"timeout_min": args.time, "gpus_per_node": args.gpus_per_job, "tasks_per_node": 1, "nodes": 1}
    params["name"] = f"wkvbench-{settings_name(run_dir)}"
    if args.executor == "slurm":
        params["slurm_array_parallelism"] = n_jobs
        if args.partition:
            params["slurm_partition"] = args.partition
        extra = _slurm_args(args.slurm_arg)
        if extra:
            params["slurm_additional_parameters"] = extra
    ex.update_parameters(**params)
    return ex


def shard_argv(settings: dict, k: int, n: int, run_dir: Path, resume: bool) -> list[str]:
    argv = ["run", settings["suite"], "--shard", f"{k}/{n}", "--out", str(shard_dir(run_dir, k, n)), "--no-progress"]
    if settings.get("gpus_per_job", 0) > 1:
        argv += ["--gpus", "all"]
    if settings.get("device"):
        argv += ["--device", settings["device"]]
    if resume:
        argv.append("--resume")
    for p in settings.get("plugins", []):
        argv += ["--plugin", p]
    return argv


# ============================================================================= CLI
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", nargs="?", help="suite TOML file (with --resume: taken from RUN_DIR/submit.json)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory on storage every node sees")
    parser.add_argument("--executor", choices=("slurm", "local"), default="slurm", help="slurm, or local processes")
    parser.add_argument("--jobs", type=int, metavar="N", help="number of shards (array jobs)")
    parser.add_argument("--partition", help="Slurm partition")
    parser.add_argument("--gpus-per-job", type=int, default=1, metavar="G", help="GPUs per job (0: CPU; default 1)")
    parser.add_argument("--time", type=int, default=60, metavar="MIN", help="time limit per job in minutes")
    parser.add_argument("--slurm-arg", action="append", metavar="KEY=VALUE", help="extra sbatch option (repeatable)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), help="overrides the suite's run.device")
    parser.add_argument("--plugin", action="append", default=[], help="module or .py file calling register_impl")
    parser.add_argument("--resume", action="store_true", help="resubmit only the shards not finished")
    wait = parser.add_mutually_exclusive_group()
    wait.add_argument("--wait", dest="wait", action="store_true", default=None, help="wait for the jobs, then merge")
    wait.add_argument("--no-wait", dest="wait", action="store_false", help="return once submitted")


def _settings(args, run_dir: Path) -> dict:
    path = run_dir / SUBMIT_FILE
    try:
        old = rundir.read_submit(run_dir)
    except RunDirError as exc:
        raise SuiteError(str(exc)) from None
    if args.resume and old is None:
        raise SuiteError(f"command line: --resume: {path} does not exist (nothing was submitted there)")
    if not args.resume and old is not None:
        raise SuiteError(f"command line: --out: {run_dir} already holds a submitted run; use --resume or a new --out")
    if old is not None:
        if args.jobs is not None and args.jobs != old["jobs"]:
            raise SuiteError(f"command line: --jobs: {run_dir} was submitted as {old['jobs']} shards, not {args.jobs}")
        return old
    if not args.suite:
        raise SuiteError("command line: SUITE: give the suite file to submit")
    if args.jobs is None or args.jobs < 1:
        raise SuiteError(f"command line: --jobs: expected a positive number of jobs, got {args.jobs}")
    if args.gpus_per_job < 0:
        raise SuiteError(f"command line: --gpus-per-job: expected 0 or more, got {args.gpus_per_job}")
    if not args.time > 0:
        raise SuiteError(f"command line: --time: expected minutes > 0, got {args.time}")
    _slurm_args(args.slurm_arg)
    suite = load_suite(args.suite)  # a bad suite fails here, before anything is submitted
    from wkvbench.harness.suite import plugin_path

    return {
        "suite": str(Path(args.suite).resolve()),
        "suite_name": suite.name,
        "jobs": args.jobs,
        "executor": args.executor,
        "gpus_per_job": args.gpus_per_job,
        "device": args.device,
        "plugins": [plugin_path(p) for p in args.plugin],
        "submissions": [],
    }


def main(args: argparse.Namespace) -> int:
    run_dir = Path(args.out).resolve()
    try:
        with rundir.RunLock(run_dir, "wkvbench submit"):
            return _submit(args, run_dir)
    except (RunDirError, OSError) as exc:
        return rundir.say_error("wkvbench submit", exc)


def _submit(args, run_dir: Path) -> int:
    try:
        settings = _settings(args, run_dir)
        n = settings["jobs"]
        todo = [k for k in range(1, n + 1) if not shard_complete(shard_dir(run_dir, k, n))]
        if not todo:
            print(f"wkvbench submit: every shard of {run_dir} is complete", file=sys.stderr)
        ex = _executor(args, run_dir, len(todo)) if todo else None
    except SuiteError as exc:
        print(f"wkvbench submit: {exc}", file=sys.stderr)
        return 2
    run_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    if todo:
        if args.executor == "local":  # the local jobs import this wkvbench
            from wkvbench.harness.client import import_root as _import_root

            root = _import_root()
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        argvs = [shard_argv(settings, k, n, run_dir, resume=args.resume) for k in todo]
        jobs = ex.map_array(run_shard, argvs)
        settings["submissions"].append(
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "executor": args.executor,
                "shards": {str(k): j.job_id for k, j in zip(todo, jobs, strict=True)},
            }
        )
        rundir.write_submit(run_dir, settings)
        ids = ", ".join(f"{k}:{j.job_id}" for k, j in zip(todo, jobs, strict=True))
        print(f"wkvbench submit: {len(jobs)} of {n} shard(s) submitted ({args.executor}): {ids}", file=sys.stderr)
    wait = args.wait if args.wait is not None else args.executor == "local"
    if not wait:
        print(f"follow with: wkvbench status {run_dir}; then: wkvbench merge {run_dir} -o {run_dir}")
        return 0
    failed = 0
    for k, job in zip(todo, jobs, strict=True):
        try:
            job.result()
        except Exception as exc:  # a shard that failed: the others are still merged
            failed += 1
            print(f"wkvbench submit: shard {k}/{n} failed: {str(exc).strip().splitlines()[-1:]}", file=sys.stderr)
    try:
        res = merge_runs([run_dir], run_dir)
    except MergeError as exc:
        print(f"wkvbench submit: merge: {exc}", file=sys.stderr)
        return 1
    print(f"merged {len(res['inputs'])} shard(s) -> {run_dir}: {res['rows']} rows")
    return 1 if failed else 0
