"""``wkvbench run``: the command above the sweep engines (:class:`~.runner.Runner`, :class:`~.pool.PoolRunner`).

It builds the suite from a file, flags or (``--resume``) the run directory, plans it
(:mod:`wkvbench.harness.plan`), cuts a shard (:mod:`wkvbench.harness.shard`), records the plan
and hands the cells to one worker or a pool; then prints the summary. ``wkvbench submit``'s jobs
call :func:`run_argv`, the same command, in their own process.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from wkvbench import opspec, presets, registry
from wkvbench.harness import pool, rundir, shard
from wkvbench.harness.plan import plan, resolve_device
from wkvbench.harness.run_args import (
    MAX_CELLS,
    add_run_flags,
    check_impl_names,
    check_plan_size,
    check_suite_impls,
    impl_ops_of,
    suite_from_args,
)
from wkvbench.harness.runner import Runner
from wkvbench.harness.suite import SuiteError
from wkvbench.harness.summary import summary_table
from wkvbench.harness.sweep import RunAborted


def configure(parser: argparse.ArgumentParser) -> None:
    ops_ = ", ".join(opspec.OPS)
    parser.add_argument("suite", nargs="?", help="suite TOML file (e.g. suites/smoke.toml); or use --op and friends")
    g = parser.add_argument_group("ad-hoc sweep (comma lists)")
    g.add_argument("--op", help=f"{ops_} (with a suite: only these groups)")
    g.add_argument("--impl", help="implementations (default *: all available); with a suite: replaces its impls")
    g.add_argument("--exclude", help="implementations to leave out")
    g.add_argument("--model", help=f"presets: {', '.join(presets.PRESETS)}")
    g.add_argument("--batch", help="batch sizes, e.g. 1,8")
    g.add_argument("--tokens", help="sequence lengths in tokens, e.g. 512,4096")
    g.add_argument("--seconds", help="seconds of audio, e.g. 10.24,328 (tokens per model family)")
    g.add_argument("--dtype", help="float32, bfloat16, float16")
    g.add_argument("--variant", help="input variant (bi_wkv7: realistic, strong_decay, weak_decay, mixed)")
    g.add_argument(
        "--mode",
        help="timing modes: fwd (inference), bwd (backward only), fwd_bwd (training step); "
        "with a suite: replaces its groups' modes",
    )
    g.add_argument(
        "--precision",
        help="network cells: pure (the dtype throughout, default) and/or autocast (float32 weights, "
        "torch.autocast in the dtype); with a suite: replaces its groups' precisions",
    )
    g.add_argument(
        "--checkpoint",
        help="network training cells: none (default) and/or blocks (activation checkpointing: each block "
        "recomputed in the backward); with a suite: replaces its groups' settings",
    )
    r = parser.add_argument_group("run")
    r.add_argument("--out", help="run directory (default runs/<suite>-<time>)")
    r.add_argument("--resume", action="store_true", help="finish only the cells missing from --out")
    r.add_argument(
        "--retry-failed", action="store_true", help="with --resume: run wrong, failed, oom and timeout cells again"
    )
    r.add_argument("--plugin", action="append", default=[], help="module or .py file calling register_impl")
    add_run_flags(r)
    pool.add_scale_flags(parser.add_argument_group("scale-out (docs/notes/scale-out.md)"))
    r.add_argument(
        "--max-cells",
        type=int,
        default=MAX_CELLS,
        metavar="N",
        help=f"refuse a plan of more than N cells (default {MAX_CELLS:,})",
    )
    r.add_argument("--dry-run", action="store_true", help="list the planned cells and exit")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--strict", action="store_true", help="exit 1 if any cell is wrong, failed, oom or timeout")


def load_plugins(plugins) -> None:
    """Import each plugin; a module that fails while importing is a ValueError naming it."""
    for p in plugins:
        try:
            registry.load_plugin(p)
        except ValueError:
            raise
        except Exception as exc:  # the user's module failed while importing
            raise ValueError(f"plugin: {p}: {type(exc).__name__}: {exc}") from exc


def _say(msg: str) -> None:
    print(f"wkvbench run: {msg}", file=sys.stderr, flush=True)


def main(args: argparse.Namespace) -> int:
    try:
        suite = suite_from_args(args)
        plugins = list(suite.plugins)
        load_plugins(plugins)
        suite_ops = [op for g in suite.groups for op in impl_ops_of(g)]
        check_impl_names("--impl", args.impl, suite_ops)  # command-line names: a typo fails here
        check_impl_names("--exclude", args.exclude, suite_ops)
        check_suite_impls(suite)
        check_plan_size(suite, args.max_cells)  # before any planning work
        device = resolve_device(suite.run.device)
        planned = plan(suite, device)
        shard_k_n = shard.parse_shard(args.shard) if args.shard is not None else None
        if shard_k_n:
            planned = shard.shard_of(planned, *shard_k_n)
        n_cells = sum(len(impls) for _, impls in planned)
        slots = pool.slots_for(args.gpus, args.workers, device, cells=n_cells, log=_say)
    except (SuiteError, ValueError) as exc:
        _say(str(exc))
        return 2
    if args.dry_run:
        for case, impls in planned:
            for name, why in impls:
                print(f"{case.label()}  {name}" + (f"  (skipped: {why})" if why else ""))
        print(f"{len(planned)} cases, {n_cells} cells on {device}")
        return 0
    if args.resume and not args.out:
        _say("--resume needs --out RUN_DIR")
        return 2
    if args.retry_failed and not args.resume:
        _say("--retry-failed: only with --resume (a plain run measures every cell anyway)")
        return 2
    if n_cells == 0:
        why = f"shard {shard_k_n[0]}/{shard_k_n[1]} got no series of the plan" if shard_k_n else "the suite has no cell"
        print(f"wkvbench run: nothing planned: {why}", file=sys.stderr)
        return 0
    out = Path(args.out) if args.out else Path("runs") / f"{rundir.slug(suite.name)}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        with rundir.RunLock(out, "wkvbench run"):
            return _run(args, suite, device, planned, shard_k_n, slots, plugins, out, n_cells)
    except rundir.RunLocked as exc:
        _say(str(exc))
        return 2
    except rundir.RunDirError as exc:
        _say(str(exc))
        return 2
    except OSError as exc:  # disk full, read-only directory: one line, the file and the cause
        _say(rundir.describe_os_error(exc))
        return 1


def _run(args, suite, device, planned, shard_k_n, slots, plugins, out, n_cells) -> int:
    retry = ("wrong", "failed", "oom", "timeout") if args.retry_failed else ()
    kw = dict(plugins=plugins, resume=args.resume, retry=retry, progress=not args.no_progress)
    runner = pool.PoolRunner(suite, device, out, slots=slots, **kw) if slots else Runner(suite, device, out, **kw)
    if args.resume and all(runner.done(c.key(name)) for c, impls in planned for name, _ in impls):
        _say(f"nothing to do: every cell is already in {runner.store.results}")
        return 0  # the directory is left untouched
    shard.write_plan(out, planned, shard_k_n, len(slots or [None]))
    where = f"{device} x {len(slots)} workers" if slots else device
    part = f" (shard {shard_k_n[0]}/{shard_k_n[1]})" if shard_k_n else ""
    _say(f"{suite.name}{part}: {len(planned)} cases, {n_cells} cells on {where} -> {out}")
    t0 = time.perf_counter()

    def on_term(signum, frame):  # SIGTERM (a scheduler's stop) ends the run like Ctrl-C
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term) if threading.current_thread() is threading.main_thread() else None
    try:
        runner.execute(planned)
    except RunAborted as exc:  # no worker at all: nothing can run
        _say(str(exc))
        return 1
    except KeyboardInterrupt:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # one Ctrl-C is enough: finish saying so
        print(
            f"\ninterrupted: {len(runner.written)} finished cell(s) are in {runner.store.results}; "
            f"finish with: wkvbench run --resume --out {out}",
            file=sys.stderr,
        )
        return 130
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    rows = [runner.store.get(k) for k in runner.written]
    rows = [r for r in rows if r is not None]
    if rows:
        print(summary_table(rows))
    bad = [r for r in rows if r["status"] in ("wrong", "failed", "oom", "timeout")]
    for r in bad[:20]:
        print(
            f"  {r['status']:8s} {r['op']}/{r['impl']} {r['model']} B={r['batch']} T={r['tokens']} "
            f"{r['dtype']}: {r['note']}"
        )
    print(f"{len(rows)} cell(s) in {time.perf_counter() - t0:.1f} s -> {out}")
    return 1 if (args.strict and bad) else 0


def run_argv(argv: list[str]) -> int:
    """``wkvbench run ARGV...`` in this process (a submitted shard's job body)."""
    parser = argparse.ArgumentParser(prog="wkvbench run")
    configure(parser)
    return main(parser.parse_args(argv))
