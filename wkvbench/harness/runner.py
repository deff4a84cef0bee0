"""``wkvbench run``: sweep implementations over a suite (or flags) into a run directory.

For each case (op, model, batch, tokens, dtype, device, variant, mode) of the suite, in an order where
sizes grow:

1. cells that cannot run are written at once as ``skipped`` with the reason: implementation not
   registered or unavailable here, dtype unsupported (:mod:`wkvbench.harness.plan`), or out of
   memory, timed out or predicted too slow from smaller cases (:mod:`wkvbench.harness.predict`);
2. the worker builds the case's inputs and float64 reference once;
3. each implementation, in random order, makes its first call on NaN-poisoned output (timed:
   ``first_call_ms``) and is checked against the reference -- a failing one is ``wrong`` and
   never timed -- then warms up for ``warmup_s``, which gives a per-call estimate;
4. samples: about ``budget_s`` worth per implementation (at least ``min_samples``), taken over
   ``rounds`` rounds, the implementations shuffled anew in each round, so slow clock drift or
   thermal throttling spreads over all of them instead of favouring one;
5. NVML energy (GPU with an energy counter): ``energy_s`` of back-to-back calls;
6. one row per implementation is appended to ``results.csv`` and its samples to
   ``samples.jsonl``. Speed-ups are not stored: the report and the summary printed at the end
   compute them (the summary against the op record's ``naive_impl`` in the same case).

A crash or hang costs one cell (``failed``/``timeout``); out of memory gives ``oom``. See
``wkvbench.harness.worker`` for the isolation and ``wkvbench.harness.store`` for resume.

Parts: :class:`Runner` (environment probe, rows, the worker steps of a cell, a case, the sweep),
:func:`summary_table`, and the ``run`` subcommand (:func:`configure`, :func:`main`); the suite
the command line asks for is built by :func:`wkvbench.harness.suite.suite_from_args`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from wkvbench import __version__, ops, opspec, presets, registry
from wkvbench.accuracy import tolerance
from wkvbench.envinfo import gpu_snapshot
from wkvbench.harness import timing
from wkvbench.harness.cells import pending_cells, replace_earlier
from wkvbench.harness.client import WorkerClient, WorkerDied, WorkerTimeout
from wkvbench.harness.plan import plan, resolve_device
from wkvbench.harness.predict import SkipPredictor
from wkvbench.harness.store import RunStore, StoreError
from wkvbench.harness.suite import Case, Suite, SuiteError, add_run_flags, check_impl_names, suite_from_args
from wkvbench.harness.summary import summary_table
from wkvbench.schema import ENV_FILE, KEY, SCHEMA_VERSION, derive


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Cell:
    """One (case, implementation) while it is being measured."""

    impl: str
    status: str = "ok"
    note: str = ""
    first_call_ms: float | None = None
    compiled: int | None = None
    gpu_ms: float | None = None
    est_ms: float | None = None
    rel_err: float | None = None
    max_abs_err: float | None = None
    tol: float | None = None
    samples: list[float] = field(default_factory=list)
    round_sizes: list[int] = field(default_factory=list)
    plan: list[int] = field(default_factory=list)
    peak_mem_bytes: int | None = None
    joules_per_call: float | None = None
    grad_rel_err: float | None = None
    grad_worst: str = ""
    grad_tol: float | None = None
    saved_bytes: int | None = None

    def fail(self, status: str, note: str) -> None:
        self.status, self.note = status, note


class RunAborted(RuntimeError):
    """The sweep cannot go on at all (no worker can start)."""


class CaseSetupError(RuntimeError):
    def __init__(self, status: str, note: str):
        super().__init__(note)
        self.status, self.note = status, note


class Runner:
    """Runs a planned sweep into a :class:`RunStore` through a :class:`WorkerClient`."""

    def __init__(
        self,
        suite: Suite,
        device: str,
        out: Path,
        plugins=(),
        resume: bool = False,
        progress: bool = True,
        argv=None,
        log=None,
    ):
        self.suite, self.device, self.out = suite, device, Path(out)
        self.run = suite.run
        self.plugins = tuple(plugins)
        self.resume = resume
        self.progress_enabled = progress
        self.argv = list(sys.argv if argv is None else argv)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.store = RunStore(self.out)
        self.client = WorkerClient(self.plugins, log_dir=self.out / "logs")
        self.env: dict | None = None
        self.copy_bw: float | None = None
        self.gpu_uuid: str | None = None
        self.rng = random.Random(self.run.seed)
        self.predictor = SkipPredictor(self.run)
        self.written: list[tuple] = []
        self.bar = None
        self.throttle: dict = {"cells": 0, "cells_throttled": 0, "reasons": {}}

    # ------------------------------------------------------------------ environment
    def probe(self) -> None:
        try:
            reply = self.client.request(
                "probe",
                timeout=max(self.run.max_cell_s, 120),
                device=self.device,
                argv=self.argv,
                suite=self.suite.as_dict(),
            )
        except (WorkerDied, WorkerTimeout) as exc:
            raise RunAborted(f"the worker process could not start or probe the machine: {exc}") from None
        if not reply.get("ok"):
            raise RunAborted(f"the worker could not probe the environment: {reply.get('error')}")
        env = reply["env"]
        self.copy_bw = reply.get("copy_bandwidth_gbs")
        gpu = env.get("gpu") or {}
        self.gpu_uuid = gpu.get("uuid") if self.device == "cuda" else None
        env.update(
            argv=self.argv,
            suite=self.suite.as_dict(),
            device=self.device,
            plugins=list(self.plugins),
            copy_bandwidth_gbs=self.copy_bw,
            gpu_start=gpu_snapshot(self.gpu_uuid) if self.device == "cuda" else None,
            started=_now(),
        )
        path = self.out / ENV_FILE
        if path.exists():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
                prev = old.pop("previous_sessions", [])
                env["previous_sessions"] = [*prev, old]
            except (OSError, ValueError):
                pass
        self.env = env
        self._write_env()

    def _write_env(self) -> None:
        path = self.out / ENV_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.env, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, path)

    def _device_name(self) -> str:
        if self.env is None:
            return ""
        if self.device == "cuda" and self.env.get("gpu"):
            return self.env["gpu"].get("name") or ""
        return (self.env.get("cpu") or {}).get("model") or ""

    def _commit(self) -> str:
        git = (self.env or {}).get("git") or {}
        if not git.get("commit"):
            return ""
        return git["commit"] + ("-dirty" if git.get("dirty") else "")

    # ------------------------------------------------------------------ rows
    def _row(self, case: Case, cell: Cell) -> dict:
        """The results row of a measured cell: case fields, measurements, then ``schema.derive``."""
        spec = ops.get_op(case.op)
        import torch

        dtype = getattr(torch, case.dtype)
        try:
            rec = registry.get_impl(case.impl_op, cell.impl)
        except ValueError:
            rec = None
        row = {
            "schema_version": SCHEMA_VERSION,
            "timestamp": _now(),
            "op": case.op,
            "impl": cell.impl,
            "backend": rec.backend if rec else "",
            "model": case.model,
            "family": case.family,
            "batch": case.batch,
            "tokens": case.tokens,
            "seconds": case.seconds,
            "dtype": case.dtype,
            "device": case.device,
            "variant": case.variant,
            "mode": case.mode,
            "precision": case.precision,
            "shape": case.shape_json,
            "status": cell.status,
            "note": cell.note,
            "first_call_ms": cell.first_call_ms,
            "compiled": cell.compiled,
            # of the timed mode (the op record's): no minimum traffic defined for the training modes
            "bytes_moved": spec.bytes_in(case.shape, ops.element_size(dtype), case.mode),
            "flops": spec.flops_in(case.shape, case.mode),
            "rel_err": cell.rel_err,
            "max_abs_err": cell.max_abs_err,
            "tol": cell.tol if cell.tol is not None else (tolerance(dtype, rec.tf32) if rec else None),
            "grad_rel_err": cell.grad_rel_err,
            "grad_worst": cell.grad_worst,
            "grad_tol": cell.grad_tol,
            "saved_bytes": cell.saved_bytes,
            "gpu": self._device_name(),
            "commit": self._commit(),
            "wkvbench_version": __version__,
        }
        if cell.status == "ok" and cell.samples:
            row.update(timing.summarize(cell.samples).as_dict())
            row["peak_mem_bytes"] = cell.peak_mem_bytes
            row["gpu_ms"] = cell.gpu_ms
        row.update(derive(row, copy_bandwidth_gbs=self.copy_bw, joules_per_call=cell.joules_per_call))
        return row

    def _write(self, case: Case, cell: Cell, snaps=(None, None)) -> None:
        row = self._row(case, cell)
        self.store.append_row(row)
        if cell.samples:
            rec = {k: row[k] for k in KEY}
            rec.update(
                schema_version=SCHEMA_VERSION,
                status=cell.status,
                samples_ms=cell.samples,
                round_sizes=cell.round_sizes,
                first_call_ms=cell.first_call_ms,
                est_ms=cell.est_ms,
                gpu_before=snaps[0],
                gpu_after=snaps[1],
            )
            self.store.append_samples(rec)
        self.predictor.learn(case, cell.impl, cell.status, row.get("median_ms"))
        self.written.append(case.key(cell.impl))
        if self.bar is not None:
            self.bar.update(1)

    # ------------------------------------------------------------------ worker steps
    def _ensure_case(self, case: Case) -> None:
        if self.client.alive and self.client.case_id == case.case_id:
            return
        try:
            reply = self.client.request("case", timeout=self.run.max_cell_s, case=case.to_wire())
        except WorkerTimeout:
            self.predictor.reference_too_slow(case)
            raise CaseSetupError(
                "skipped", f"not verified: inputs + float64 reference took over max_cell_s={self.run.max_cell_s:g} s"
            ) from None
        except WorkerDied as exc:
            raise CaseSetupError("failed", f"building inputs/reference crashed the worker: {exc}") from None
        if not reply.get("ok"):
            status = "oom" if reply.get("kind") == "oom" else "failed"
            raise CaseSetupError(status, f"inputs/reference: {reply.get('error')}")
        self.client.case_id = case.case_id
        self.client.checked = set()

    def _check(self, case: Case, cell: Cell, recheck: bool = False) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(cell.impl, refresh=False)
        try:
            self._ensure_case(case)
            reply = self.client.request(
                "check", timeout=self.run.max_cell_s, impl=cell.impl, warmup_s=self.run.warmup_s
            )
        except CaseSetupError as exc:
            return cell.fail(exc.status, exc.note)
        except WorkerDied as exc:
            return cell.fail("failed", f"crashed in its first call: {exc}")
        except WorkerTimeout:
            return cell.fail("timeout", f"first call + check + warm-up exceeded max_cell_s={self.run.max_cell_s:g} s")
        if not reply.get("ok"):
            return cell.fail(reply.get("kind", "failed"), reply.get("error", "unknown error"))
        if recheck:
            if reply["status"] != "ok":
                cell.fail("failed", f"after a worker restart: {reply['status']}: {reply.get('note', '')}")
            else:
                self.client.checked.add(cell.impl)
            return None
        cell.status = reply["status"]
        cell.note = reply.get("note", "")
        cell.grad_worst = reply.get("grad_worst", "")
        for k in (
            "first_call_ms",
            "compiled",
            "gpu_ms",
            "rel_err",
            "max_abs_err",
            "tol",
            "est_ms",
            "grad_rel_err",
            "grad_tol",
            "saved_bytes",
        ):
            setattr(cell, k, reply.get(k))
        if cell.status == "ok":
            self.client.checked.add(cell.impl)
            if cell.est_ms / 1e3 * self.run.min_samples > self.run.max_cell_s:
                cell.fail(
                    "timeout",
                    f"too slow to time: ~{cell.est_ms / 1e3:.3g} s per call x min_samples={self.run.min_samples} "
                    f"exceeds max_cell_s={self.run.max_cell_s:g}",
                )
        return None

    def _sample(self, case: Case, cell: Cell, n: int) -> None:
        if n <= 0:
            return None
        if cell.impl not in self.client.checked or not self.client.alive:
            self._check(case, cell, recheck=True)  # after a worker restart: rebuild case, re-warm
            if cell.status != "ok":
                return None
        try:
            reply = self.client.request("sample", timeout=self.run.max_cell_s, impl=cell.impl, n=n)
        except WorkerDied as exc:
            return cell.fail("failed", f"crashed while being timed: {exc}")
        except WorkerTimeout:
            return cell.fail("timeout", f"{n} timed calls exceeded max_cell_s={self.run.max_cell_s:g} s")
        if not reply.get("ok"):
            return cell.fail(reply.get("kind", "failed"), f"while being timed: {reply.get('error')}")
        cell.samples.extend(reply["samples_ms"])
        cell.round_sizes.append(len(reply["samples_ms"]))
        peak = reply.get("peak_mem_bytes")
        if peak is not None:
            cell.peak_mem_bytes = max(cell.peak_mem_bytes or 0, int(peak))
        return None

    def _energy(self, case: Case, cell: Cell) -> None:
        if cell.impl not in self.client.checked or not self.client.alive:
            return
        est = timing.summarize(cell.samples).median_ms
        try:
            reply = self.client.request(
                "energy", timeout=self.run.max_cell_s, impl=cell.impl, seconds=self.run.energy_s, est_ms=est
            )
        except (WorkerDied, WorkerTimeout) as exc:  # timing is done; energy is a bonus
            cell.note = (cell.note + "; " if cell.note else "") + f"energy not measured: {exc}"
            return
        if reply.get("ok"):
            cell.joules_per_call = reply.get("joules_per_call")

    # ------------------------------------------------------------------ a case
    def run_case(self, case: Case, impls: list[tuple[str, str | None]]) -> None:
        todo: list[Cell] = []
        for name, why in impls:
            if self.resume and self.store.has(case.key(name)):
                continue
            if why is None:
                why = self.predictor.why_skip(case, name)
            if why is not None:
                self._write(case, Cell(name, status="skipped", note=why))
                continue
            todo.append(Cell(name))
        if not todo:
            return
        if self.bar is not None:
            self.bar.set_description_str(case.label(), refresh=False)
        before = gpu_snapshot(self.gpu_uuid) if self.device == "cuda" else None
        try:
            self._ensure_case(case)
        except CaseSetupError as exc:
            for cell in todo:
                cell.fail(exc.status, exc.note)
                self._write(case, cell)
            return
        order = list(todo)
        self.rng.shuffle(order)
        for cell in order:
            self._check(case, cell)
        for cell in todo:
            if cell.status == "ok":
                cell.plan = timing.plan_samples(
                    cell.est_ms, self.run.budget_s, self.run.min_samples, self.run.max_samples, self.run.rounds
                )
        for r in range(self.run.rounds):
            live = [c for c in todo if c.status == "ok"]
            self.rng.shuffle(live)
            for cell in live:
                self._sample(case, cell, cell.plan[r])
        if (
            self.device == "cuda"
            and self.run.energy_s > 0
            and ((self.env or {}).get("gpu") or {}).get("energy_counter")
        ):
            for cell in todo:
                if cell.status == "ok":
                    self._energy(case, cell)
        after = gpu_snapshot(self.gpu_uuid) if self.device == "cuda" else None
        self._count_throttle(before, after)
        for cell in todo:
            self._write(case, cell, (before, after))

    def _count_throttle(self, *snaps) -> None:
        """Tally clock-event reasons seen around a case (``gpu_idle`` is normal between cells)."""
        reasons = {r for s in snaps if s for r in (s.get("throttle_reasons") or []) if r != "gpu_idle"}
        if not any(snaps):
            return
        self.throttle["cells"] += 1
        if reasons:
            self.throttle["cells_throttled"] += 1
        for r in reasons:
            self.throttle["reasons"][r] = self.throttle["reasons"].get(r, 0) + 1

    # ------------------------------------------------------------------ the sweep
    def execute(self, planned: list[tuple[Case, list[tuple[str, str | None]]]]) -> int:
        """Run every planned cell; return the number of cells written."""
        total = pending_cells(self, planned)
        if total == 0:
            return 0
        try:
            self.probe()
        except BaseException:
            self.client.kill()
            raise
        replace_earlier(self, planned)
        if self.progress_enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="cell", dynamic_ncols=True, file=sys.stderr)
        try:
            for case, impls in planned:
                self.run_case(case, impls)
        except BaseException:
            self.client.kill()  # interrupted: do not wait for the cell in flight
            raise
        finally:
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            self.client.close()
            if self.env is not None:
                self.env["gpu_end"] = gpu_snapshot(self.gpu_uuid) if self.device == "cuda" else None
                self.env["finished"] = _now()
                self.env["worker_starts"] = self.client.starts
                if self.device == "cuda":
                    self.env["throttle"] = self.throttle
                self._write_env()
        return len(self.written)


# ============================================================================= CLI
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
    r = parser.add_argument_group("run")
    r.add_argument("--out", help="run directory (default runs/<suite>-<time>)")
    r.add_argument("--resume", action="store_true", help="finish only the cells missing from --out")
    r.add_argument("--plugin", action="append", default=[], help="module or .py file calling register_impl")
    add_run_flags(r)
    from wkvbench.harness.pool import add_scale_flags

    add_scale_flags(parser.add_argument_group("scale-out (docs/notes/scale-out.md)"))
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


def main(args: argparse.Namespace) -> int:
    try:
        suite = suite_from_args(args)
        plugins = list(suite.plugins)
        load_plugins(plugins)
        device = resolve_device(suite.run.device)
        planned = plan(suite, device)
        # the ops whose implementations the groups name (a network group: its models' mixer ops)
        suite_ops = list(dict.fromkeys(case.impl_op for case, _ in planned))
        check_impl_names("--impl", args.impl, suite_ops)  # command-line names: a typo fails here
        check_impl_names("--exclude", args.exclude, suite_ops)
        from wkvbench.harness import pool, shard

        shard_k_n = shard.parse_shard(args.shard) if args.shard is not None else None
        if shard_k_n:
            planned = shard.shard_of(planned, *shard_k_n)
        slots = pool.slots_for(args.gpus, args.workers, device)
    except (SuiteError, ValueError) as exc:
        print(f"wkvbench run: {exc}", file=sys.stderr)
        return 2
    n_cells = sum(len(impls) for _, impls in planned)
    if args.dry_run:
        for case, impls in planned:
            for name, why in impls:
                print(f"{case.label()}  {name}" + (f"  (skipped: {why})" if why else ""))
        print(f"{len(planned)} cases, {n_cells} cells on {device}")
        return 0
    if args.resume and not args.out:
        print("wkvbench run: --resume needs --out RUN_DIR", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("runs") / f"{suite.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        kw = dict(plugins=plugins, resume=args.resume, progress=not args.no_progress)
        runner = pool.PoolRunner(suite, device, out, slots=slots, **kw) if slots else Runner(suite, device, out, **kw)
        shard.write_plan(out, planned, shard_k_n, len(slots or [None]))
    except StoreError as exc:
        print(f"wkvbench run: {exc}", file=sys.stderr)
        return 2
    where = f"{device} x {len(slots)} workers" if slots else device
    part = f" (shard {shard_k_n[0]}/{shard_k_n[1]})" if shard_k_n else ""
    print(
        f"wkvbench run: {suite.name}{part}: {len(planned)} cases, {n_cells} cells on {where} -> {out}",
        file=sys.stderr,
    )
    t0 = time.perf_counter()

    def on_term(signum, frame):  # SIGTERM (a scheduler's stop) ends the run like Ctrl-C
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term) if threading.current_thread() is threading.main_thread() else None
    try:
        runner.execute(planned)
    except RunAborted as exc:  # no worker at all: nothing can run
        print(f"wkvbench run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
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
