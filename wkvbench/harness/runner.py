"""The one-worker sweep engine: implementations measured over a planned suite into a run directory.

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
6. each implementation's samples go to ``samples.jsonl`` and then its row to ``results.csv`` as
   soon as that cell is finished (a failed check at once, a timed cell after its last round), so
   an interruption loses only unfinished cells. Speed-ups are not stored: the report and the summary printed at the end
   compute them (the summary against the op record's ``naive_impl`` in the same case).

A crash or hang costs one cell (``failed``/``timeout``); out of memory gives ``oom``. See
``wkvbench.harness.worker`` for the isolation and ``wkvbench.harness.store`` for resume.

Parts: :class:`Runner` (environment probe, rows, the worker steps of a cell, a case), on the
:class:`~wkvbench.harness.sweep.Sweep` it shares with the worker pool; the ``run`` subcommand
above it is :mod:`wkvbench.harness.run_command`.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from wkvbench import __version__, ops, registry
from wkvbench.accuracy import tolerance
from wkvbench.envinfo import gpu_snapshot
from wkvbench.harness import measure, rundir, timing
from wkvbench.harness.client import WorkerClient, WorkerDied, WorkerTimeout, import_root
from wkvbench.harness.suite import Case, Suite
from wkvbench.harness.sweep import RunAborted, Sweep, now
from wkvbench.schema import KEY, SCHEMA_VERSION, derive


def _host_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


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
    extra: dict = field(default_factory=dict)  # measurement extras (wkvbench.harness.measure)

    def fail(self, status: str, note: str) -> None:
        self.status, self.note = status, note


class CaseSetupError(RuntimeError):
    def __init__(self, status: str, note: str):
        super().__init__(note)
        self.status, self.note = status, note


class Runner(Sweep):
    """Runs a planned sweep into a :class:`RunStore` through a :class:`WorkerClient`."""

    def __init__(self, suite: Suite, device: str, out: Path, plugins=(), client_env=None, log_dir=None, **kw):
        super().__init__(suite, device, out, plugins=plugins, **kw)
        log_dir = log_dir or self.out / rundir.LOGS_DIR
        self.client = self.make_client(log_dir, client_env)
        self.copy_bw: float | None = None
        self.gpu_uuid: str | None = None
        self.rng = random.Random(self.run.seed)
        self.throttle: dict = {"cells": 0, "cells_throttled": 0, "reasons": {}}

    def make_client(self, log_dir, env) -> WorkerClient:
        return WorkerClient(self.plugins, log_dir=log_dir, env=env)

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
            package_path=import_root(),
            copy_bandwidth_gbs=self.copy_bw,
            gpu_start=gpu_snapshot(self.gpu_uuid) if self.device == "cuda" else None,
            started=now(),
        )
        try:
            old = rundir.read_env(self.out)
        except rundir.RunDirError:
            old = {}  # a damaged env.json of an earlier run is replaced
        if old:
            prev = old.pop("previous_sessions", [])
            env["previous_sessions"] = [*prev, old]
        if self.run.lock_clocks:
            env["clock_lock"] = measure.lock_clocks(self.device, self.gpu_uuid)
        self.env = env
        mem = gpu.get("mem_bytes") if self.device == "cuda" else _host_memory()
        self.predictor.set_device_bytes(mem)
        self._write_env()

    def _write_env(self) -> None:
        rundir.write_env(self.out, self.env)

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
            "timestamp": now(),
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
            "checkpoint": case.checkpoint,
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
            row.update(measure.row_columns(cell))
        row.update(derive(row, copy_bandwidth_gbs=self.copy_bw, joules_per_call=cell.joules_per_call))
        return row

    def _write(self, case: Case, cell: Cell, snaps=(None, None)) -> None:
        row = self._row(case, cell)
        if cell.samples:  # the samples first: the row is what marks the cell done
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
        self.store.append_row(row)
        self.predictor.learn(case, cell.impl, cell.status, row.get("median_ms"), row.get("note") or "")
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
        measure.note_check(cell, reply)
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
        measure.note_batch(cell, reply)
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
            if self.resume and self.done(case.key(name)):
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
        written: set[int] = set()
        snaps = {"after": None}

        def finished(cell: Cell) -> None:  # each cell's row goes out as soon as it is complete
            if id(cell) in written:
                return
            written.add(id(cell))
            snaps["after"] = gpu_snapshot(self.gpu_uuid) if self.device == "cuda" else None
            self._write(case, cell, (before, snaps["after"]))

        order = list(todo)
        self.rng.shuffle(order)
        for cell in order:
            self._check(case, cell)
            if cell.status != "ok":
                finished(cell)
        for cell in todo:
            if cell.status == "ok":
                cell.plan = timing.plan_samples(
                    cell.est_ms, self.run.budget_s, self.run.min_samples, self.run.max_samples, self.run.rounds
                )
        energy = (
            self.device == "cuda"
            and self.run.energy_s > 0
            and bool(((self.env or {}).get("gpu") or {}).get("energy_counter"))
        )
        for r in range(self.run.rounds):
            live = [c for c in todo if c.status == "ok" and not measure.quiet(c, self.run)]  # noise stop
            self.rng.shuffle(live)
            for cell in live:
                self._sample(case, cell, cell.plan[r])
                if cell.status != "ok" or (r == self.run.rounds - 1 and not energy and not self.run.profile):
                    finished(cell)
        for cell in todo:
            if self.run.profile and cell.status == "ok":
                measure.profile_cell(self, case, cell)  # kernels.jsonl
            if energy and cell.status == "ok":
                self._energy(case, cell)
            finished(cell)
        self._count_throttle(before, snaps["after"])

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
    def start(self) -> None:
        try:
            self.probe()
        except BaseException:
            self.client.kill()
            raise

    def sweep(self, planned) -> None:
        try:
            for case, impls in planned:
                self.run_case(case, impls)
        except BaseException:
            self.client.kill()  # interrupted: do not wait for the cell in flight
            raise
        finally:
            self.client.close()

    def end_fields(self) -> dict:
        out = {
            "gpu_end": gpu_snapshot(self.gpu_uuid) if self.device == "cuda" else None,
            "worker_starts": self.client.starts,
        }
        if self.device == "cuda":
            out["throttle"] = self.throttle
        if ((self.env or {}).get("clock_lock") or {}).get("locked"):
            measure.unlock_clocks(self.gpu_uuid)
        return out
