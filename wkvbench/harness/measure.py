"""A cell's measurement extras: graph time, counted work, throttling, noise stop and the profile pass.

The worker calls :func:`after_warmup` once per cell (``graph_ms`` and its reason, counted FLOPs
and bytes), wraps each sample batch in a :class:`ClockProbe` (NVML clock-event reasons and SM
clock before and after) and answers ``profile`` with :func:`profile_call`. The runner keeps what
comes back in ``Cell.extra`` (:func:`note_check`, :func:`note_batch`), stops sampling a cell once
:func:`quiet`, writes :func:`row_columns` into the cell's row and the profile pass to
``kernels.jsonl`` (:func:`profile_cell`).
"""

from __future__ import annotations

import math
import os
import threading
from collections import defaultdict

import torch

from wkvbench.harness import nvml, rundir, timing
from wkvbench.harness.rundir import KERNELS_FILE  # noqa: F401 (the file profile_cell appends to)

_KERNELS_LOCK = threading.Lock()  # pool slots (one thread per GPU) append to one file
#: Reply fields of the worker's ``check`` that become row columns.
CHECK_KEYS = ("graph_ms", "graph_note", "counted_flops", "counted_bytes")
#: Row columns this module fills (appended to the results schema).
COLUMNS = ("graph_ms", "graph_note", "rel_ci", "throttled_frac", "counted_flops", "counted_bytes")
#: Replays timed for ``graph_ms``: about this much time, within [5, 200] replays.
GRAPH_S = 0.05


# ----------------------------------------------------------------------------- worker side
def counted_work(fn, backend: str) -> dict:
    """Counted FLOPs and bytes of one call of ``fn`` where they can be counted here, else ``{}``.

    PyTorch implementations: FLOPs and eager op bytes (:func:`wkvbench.counting.count_torch`, on
    any device); Triton ones in the interpreter and Numba ones in the simulator: global bytes
    (:func:`~wkvbench.counting.count_triton`, :func:`~wkvbench.counting.count_numba`).
    """
    from wkvbench import counting

    try:
        if backend == "torch":
            _, c = counting.count_torch(fn, grad=True)
            return {"counted_flops": c.flops, "counted_bytes": c.op_bytes}
        if backend == "triton" and os.environ.get("TRITON_INTERPRET") == "1":
            _, mem = counting.count_triton(fn)
            return {"counted_bytes": mem.bytes}
        if backend == "numba" and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
            _, mem = counting.count_numba(fn)
            return {"counted_bytes": mem.bytes}
    except Exception as exc:  # counting is a bonus: never fail a cell for it
        return {"count_note": f"not counted: {type(exc).__name__}: {exc}"[:200]}
    return {}


def after_warmup(timer: timing.Timer, fn, backend: str, est_ms: float) -> dict:
    """``graph_ms``/``graph_note`` and the counted work of a warmed-up cell."""
    n = int(min(max(GRAPH_S * 1e3 / est_ms, 5), 200)) if est_ms and est_ms > 0 and math.isfinite(est_ms) else 5
    ms, note = timer.graph_ms(fn, n)
    return {"graph_ms": ms, "graph_note": note, **counted_work(fn, backend)}


class ClockProbe:
    """NVML clock state before a sample batch; :meth:`done` after it gives ``throttled`` and ``sm_mhz``."""

    def __init__(self, device: torch.device, h=None):
        self.h = h
        if h is None and device.type == "cuda":
            uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
            self.h = nvml.handle(str(uuid) if uuid else None)
        self.before = nvml.clock_state(self.h)

    def done(self) -> dict:
        after = nvml.clock_state(self.h)
        sm = [s.get("sm_mhz") if s else None for s in (self.before, after)]
        return {"throttled": nvml.throttled(self.before, after), "sm_mhz": sm}


def profile_call(fn, device: torch.device, calls: int = 3, profiler=None) -> list[dict]:
    """The kernels (GPU) or operators (CPU) ``calls`` calls of ``fn`` run, per call, largest first.

    ``profiler``: a context manager whose ``events()`` gives ``torch.autograd.profiler``-style
    events (default ``torch.profiler.profile`` of CPU, and CUDA on a GPU).
    """
    if calls < 1:
        raise ValueError(f"calls: expected >= 1, got {calls}")
    if profiler is None:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        profiler = profile(activities=acts)
    timing.synchronize(device)
    with profiler as prof:
        for _ in range(calls):
            fn()
        timing.synchronize(device)
    return kernel_rows(prof.events(), device.type, calls)


def kernel_rows(events, device_type: str, calls: int) -> list[dict]:
    """Aggregate profiler events by name: GPU kernels on a GPU, CPU operators' self time on a CPU.

    On a GPU only device-side events count (their ``self_device_time_total``, or
    ``device_time_total``); on a CPU the operators' self CPU time, so nested operators are not
    counted twice. Times in microseconds per call.
    """
    want_gpu = device_type == "cuda"
    agg: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for e in events:
        on_gpu = "cpu" not in str(getattr(e, "device_type", "")).lower()
        if on_gpu != want_gpu:
            continue
        if want_gpu:
            us = getattr(e, "self_device_time_total", 0) or getattr(e, "device_time_total", 0) or 0
        else:
            us = getattr(e, "self_cpu_time_total", 0) or 0
        a = agg[e.name]
        a[0] += 1
        a[1] += float(us)
    rows = [{"name": name, "count_per_call": n / calls, "us_per_call": us / calls} for name, (n, us) in agg.items()]
    return sorted(rows, key=lambda r: -r["us_per_call"])


# ----------------------------------------------------------------------------- runner side
def note_check(cell, reply: dict) -> None:
    """Keep the ``check`` reply's extras on the cell."""
    cell.extra.update({k: reply[k] for k in CHECK_KEYS if k in reply})
    if reply.get("count_note"):
        cell.note = (cell.note + "; " if cell.note else "") + reply["count_note"]


def note_batch(cell, reply: dict) -> None:
    """Count a sample batch's samples as throttled or not (when NVML could tell)."""
    n = len(reply.get("samples_ms") or ())
    flag = reply.get("throttled")
    if flag is None or n == 0:
        return
    cell.extra["_read"] = cell.extra.get("_read", 0) + n
    cell.extra["_throttled"] = cell.extra.get("_throttled", 0) + (n if flag else 0)


def quiet(cell, run) -> bool:
    """Whether a cell may stop sampling: its median is known within ``run.max_noise``."""
    return timing.noise_ok(cell.samples, getattr(run, "max_noise", 0.0), run.min_samples)


def row_columns(cell) -> dict:
    """The row columns of :data:`COLUMNS` for a timed cell."""
    out = {k: cell.extra.get(k) for k in COLUMNS}
    r = timing.rel_ci(cell.samples) if len(cell.samples) >= 2 else math.nan
    out["rel_ci"] = r if math.isfinite(r) else None
    read = cell.extra.get("_read", 0)
    out["throttled_frac"] = cell.extra.get("_throttled", 0) / read if read else None
    return out


def profile_cell(runner, case, cell) -> None:
    """Ask the worker for a profile pass of the cell and append it to the run's ``kernels.jsonl``."""
    from wkvbench.schema import KEY

    try:
        reply = runner.client.request("profile", timeout=runner.run.max_cell_s, impl=cell.impl)
    except Exception as exc:  # timing is done; the breakdown is a bonus
        cell.note = (cell.note + "; " if cell.note else "") + f"not profiled: {exc}"
        return
    if not reply.get("ok"):
        cell.note = (cell.note + "; " if cell.note else "") + f"not profiled: {reply.get('error')}"
        return
    rec = dict(zip(KEY, (case.key(cell.impl)), strict=True))
    rec.update(calls=reply.get("calls"), kernels=reply.get("kernels", []))
    with _KERNELS_LOCK:
        rundir.append_kernels(runner.out, rec)


def lock_clocks(device: str, gpu_uuid: str | None) -> dict:
    """``--lock-clocks``: lock the SM clock where the driver permits; what happened, for env.json."""
    if device != "cuda":
        return {"locked": False, "note": "clocks not locked: the run is on a CPU"}
    ok, note = nvml.lock_clocks(nvml.handle(gpu_uuid))
    return {"locked": ok, "note": note}


def unlock_clocks(gpu_uuid: str | None) -> bool:
    return nvml.unlock_clocks(nvml.handle(gpu_uuid))
