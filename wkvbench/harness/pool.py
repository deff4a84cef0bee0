"""One node, many GPUs: ``wkvbench run --gpus all|0,1,3`` (or ``--workers N --device cpu``).

The pool has one *slot* per GPU. Each slot is a :class:`~wkvbench.harness.runner.Runner` with its
own crash-isolated worker process, pinned to its GPU with ``CUDA_VISIBLE_DEVICES`` (the worker sees
one device, ``cuda:0``); the parent never touches a GPU. Work is dealt from one queue: series of
cases (:mod:`wkvbench.harness.shard`), the most expensive first (longest processing time first,
priced by the op record's time exponent); a slot takes the next series when it finishes one, and
runs its cases small-to-large so that the skip predictions keep working. The predictor is shared:
an out-of-memory at a size on one GPU skips the larger sizes on every GPU of the pool (the GPUs of
a node are assumed alike; ``env.json`` records each one under ``workers``).

There is one writer: the parent. Slot threads hand each finished cell to the shared
:class:`~wkvbench.harness.store.RunStore` under one lock, which appends and fsyncs the row, so
rows are never interleaved or duplicated and ``--resume`` works as for a single worker. One
progress bar counts the cells of every slot. On Ctrl-C or SIGTERM the workers are killed and the
cells they were measuring are not written (``--resume`` redoes them).
"""

from __future__ import annotations

import os
import queue
import threading

from wkvbench.envinfo import gpu_snapshot
from wkvbench.harness import rundir
from wkvbench.harness import shard as _shard
from wkvbench.harness.client import WorkerClient, WorkerDied
from wkvbench.harness.predict import SkipPredictor
from wkvbench.harness.runner import Runner
from wkvbench.harness.suite import SuiteError
from wkvbench.harness.sweep import RunAborted, Sweep


def add_scale_flags(group) -> None:
    """``--shard``, ``--gpus`` and ``--workers`` for ``wkvbench run``."""
    group.add_argument("--shard", metavar="K/N", help="run only shard K of N (1-based), balanced by predicted cost")
    group.add_argument("--gpus", metavar="all|0,1,3", help="one pinned worker per GPU, cells dealt from one queue")
    group.add_argument("--workers", type=int, metavar="N", help="N workers (on CPU; on CUDA: the first N GPUs)")


def visible_gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def slots_for(
    gpus: str | None, workers: int | None, device: str, count: int | None = None, cells: int | None = None, log=None
) -> list[dict] | None:
    """The environment of each pool slot, or None for a plain single-worker run.

    ``gpus``: ``"all"`` or a comma list of indices among the GPUs this process sees; ``workers``:
    a positive count. Every mistake is a SuiteError naming the flag, raised before anything runs.
    Never more slots than ``cells`` (when given); ``log`` hears a warning for more CPU workers than cores.
    """
    slots = _slots(gpus, workers, device, count)
    if slots is None:
        return None
    if cells is not None and len(slots) > max(cells, 1):
        slots = slots[: max(cells, 1)]
    cores = os.cpu_count() or 1
    if device != "cuda" and len(slots) > cores and log is not None:
        log(f"warning: --workers {len(slots)} on {cores} CPU core(s): the workers compete for the cores")
    return slots


def _slots(gpus: str | None, workers: int | None, device: str, count: int | None) -> list[dict] | None:
    if gpus is None and workers is None:
        return None
    if gpus is not None and workers is not None:
        raise SuiteError("command line: --workers: give --gpus (one worker per GPU) or --workers, not both")
    if workers is not None and workers < 1:
        raise SuiteError(f"command line: --workers: expected a positive number of workers, got {workers}")
    if device != "cuda":
        if gpus is not None:
            raise SuiteError(f"command line: --gpus: this run is on {device}, not cuda (use --workers N on CPU)")
        return [{} for _ in range(workers)]
    count = visible_gpu_count() if count is None else count
    if workers is not None:
        if workers > count:
            raise SuiteError(f"command line: --workers: {workers} workers on cuda but only {count} GPU(s) here")
        indices = list(range(workers))
    elif gpus.strip().lower() == "all":
        indices = list(range(count))
        if not indices:
            raise SuiteError("command line: --gpus: no GPU here")
    else:
        indices = []
        for part in gpus.split(","):
            part = part.strip()
            if not part.isdigit():
                raise SuiteError(f"command line: --gpus: expected 'all' or GPU indices like 0,1,3, got {gpus!r}")
            i = int(part)
            if i >= count:
                raise SuiteError(f"command line: --gpus: GPU {i} does not exist (this machine has {count})")
            if i in indices:
                raise SuiteError(f"command line: --gpus: GPU {i} named twice")
            indices.append(i)
    parent = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [p.strip() for p in parent.split(",")] if parent else None
    return [{"CUDA_VISIBLE_DEVICES": names[i] if names and i < len(names) else str(i)} for i in indices]


class _LockedPredictor:
    """A :class:`SkipPredictor` shared by the slots: every call under the pool's lock."""

    def __init__(self, inner: SkipPredictor, lock: threading.RLock):
        self.inner, self.lock = inner, lock

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def locked(*a, **kw):
            with self.lock:
                return attr(*a, **kw)

        return locked


class _PoolClient(WorkerClient):
    """A worker client that starts no new worker once the pool is stopping."""

    def __init__(self, stop: threading.Event, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stop = stop

    def start(self) -> dict:
        if self.stop.is_set():
            raise WorkerDied("the run was interrupted")
        return super().start()

    def cancelled(self) -> bool:
        return self.stop.is_set()


class _Slot(Runner):
    """One GPU's runner: its own worker; the pool's store, predictor, bar and lock."""

    def __init__(self, pool: PoolRunner, index: int, env: dict):
        self.pool, self.index, self.pin = pool, index, dict(env)
        super().__init__(
            pool.suite,
            pool.device,
            pool.out,
            plugins=pool.plugins,
            resume=pool.resume,
            retry=pool.retry,
            progress=False,
            argv=pool.argv,
            log=pool.log,
            store=pool.store,
            predictor=pool.predictor,
            client_env=env,
            log_dir=pool.out / rundir.LOGS_DIR / f"slot-{index}",
        )

    def make_client(self, log_dir, env) -> WorkerClient:
        return _PoolClient(self.pool.stop, self.plugins, log_dir=log_dir, env=env)

    def _write_env(self) -> None:  # the pool writes one env.json for all slots
        pass

    def _write(self, case, cell, snaps=(None, None)) -> None:
        with self.pool.lock:
            if self.pool.stop.is_set():  # interrupted: a cell cut short is not a result
                return
            super()._write(case, cell, snaps)
            self.pool.written.append(case.key(cell.impl))


class PoolRunner(Sweep):
    """Runs a planned sweep on several slots into one run directory (see the module docstring)."""

    def __init__(self, suite, device, out, slots=(), **kw):
        super().__init__(suite, device, out, **kw)
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.predictor = _LockedPredictor(self.predictor, self.lock)
        self.slots = [_Slot(self, i, env) for i, env in enumerate(slots)]
        self.live: list[_Slot] = []

    def _threads(self, target, slots) -> list[BaseException]:
        errors: list[BaseException] = []

        def body(s):
            try:
                target(s)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=body, args=(s,), daemon=True) for s in slots]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except BaseException:
            self.stop.set()
            for s in slots:
                s.client.kill()
            for t in threads:
                t.join(10)
            raise
        return errors

    # ------------------------------------------------------------------ the sweep
    def start(self) -> None:
        errors = self._threads(lambda s: s.probe(), self.slots)
        live = [s for s in self.slots if s.env is not None]
        for exc in errors:
            self.log(f"a pool slot could not start: {exc}")
        for s in self.slots:
            if s not in live:
                s.client.kill()
        if not live:
            raise RunAborted(f"no worker of the pool could start: {errors[0] if errors else 'unknown'}")
        self.live = live
        env = dict(live[0].env)
        env["workers"] = [
            {
                "slot": s.index,
                "pin": s.pin,
                "hostname": (s.env or {}).get("hostname"),
                "gpu": (s.env or {}).get("gpu") if self.device == "cuda" else None,
                "copy_bandwidth_gbs": s.copy_bw,
            }
            for s in live
        ]
        self.env = env
        rundir.write_env(self.out, self.env)

    def sweep(self, planned) -> None:
        work: queue.Queue = queue.Queue()
        for _, items, _ in _shard.by_cost(planned):
            work.put(items)
        for slot in self.live:
            slot.bar = self.bar

        def serve(slot: _Slot) -> None:
            try:
                while not self.stop.is_set():
                    try:
                        items = work.get_nowait()
                    except queue.Empty:
                        return
                    for case, impls in items:
                        if self.stop.is_set():
                            return
                        slot.run_case(case, impls)
            finally:
                slot.client.close()

        try:
            errors = self._threads(serve, self.live)
        finally:
            for slot in self.live:
                slot.bar = None
        if errors:
            raise errors[0]

    def end_fields(self) -> dict:
        out = {"worker_starts": sum(s.client.starts for s in self.live)}
        if self.device == "cuda":
            throttle = {"cells": 0, "cells_throttled": 0, "reasons": {}}
            for s in self.live:
                throttle["cells"] += s.throttle["cells"]
                throttle["cells_throttled"] += s.throttle["cells_throttled"]
                for r, n in s.throttle["reasons"].items():
                    throttle["reasons"][r] = throttle["reasons"].get(r, 0) + n
            out["throttle"] = throttle
            for w, s in zip(self.env["workers"], self.live, strict=True):
                w["gpu_end"] = gpu_snapshot(s.gpu_uuid)
        return out
