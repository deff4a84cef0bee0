"""The isolated worker process that runs implementations (the parent's handle: :mod:`.client`).

Users' GPUs crash: an ``abort()``, a segfault or a CUDA illegal-address error kills (or poisons)
the process it happens in. So every implementation call runs in a worker process
(``python -m wkvbench.harness.worker``) that the sweep's parent drives one step at a time. When
the worker dies or stops answering, the parent knows which implementation was running, records
that cell as ``failed`` (with the signal and the tail of the worker's stderr) or ``timeout``,
starts a fresh worker and goes on. The parent itself never touches the GPU (NVML snapshots aside).

One worker serves all the implementations of a case, so the inputs and the float64 reference
are built once per case and shared, and the parent can interleave implementations sample batch
by sample batch. After a CUDA error other than out-of-memory the worker checks its context
(a synchronize and a tiny kernel); if that fails it answers ``fatal`` and exits, and the parent
restarts it. A worker loads the same plugins as the parent (``--plugin``) and inherits its
environment (``TRITON_INTERPRET``/``NUMBA_ENABLE_CUDASIM`` from ``wkvbench --interpret``).

Protocol: one JSON object per line. The parent writes ``{"id", "cmd", ...}`` on the worker's
stdin; the worker answers ``{"id", "ok": true, ...}`` or ``{"id", "ok": false, "error",
"kind": "oom"|"failed", "fatal": bool}`` on a private copy of its original stdout (file
descriptor 1 is pointed at stderr, so prints from implementations cannot corrupt the protocol;
stderr goes to a log file in the run directory). Commands:

=========  =====================================================================================
hello      -> pid, versions
probe      -> env (``wkvbench.envinfo.collect_env`` as seen by this process), copy_bandwidth_gbs
case       case: the case's state, built once (:mod:`~wkvbench.harness.opcase`): seeded inputs and the
           float64 reference (in a training mode also the reference gradients; another mode of
           the same case reuses them), or the op's own (``OpSpec.prepare``: the network and its
           float64 twin's output) -> ref_ms, input_bytes
check      impl, warmup_s: the cell as planned (a device probe the plan deferred may still skip
           it); the state's gate: first call (``first_call_ms``; ``compiled``: whether it grew the
           backends' kernel caches), accuracy (``wrong`` stops here; in ``bwd``/``fwd_bwd`` also
           the gradients, ``wkvbench.gradcheck``, and the bytes the forward saves for the
           backward); warm-up of the mode's call -> est_ms, back-to-back calls -> gpu_ms
sample     impl, n: ``n`` timed calls of the case's mode (``fwd`` under no_grad; ``bwd`` only the
           backward of a graph built outside the timed region; ``fwd_bwd`` both)
           -> samples_ms, peak_mem_bytes
energy     impl, seconds, est_ms: back-to-back calls between two reads of the NVML energy
           counter -> joules_per_call (null without a counter)
quit
=========  =====================================================================================

The reference is computed on the case's device (long GPU cases check at full size on the GPU);
if it runs out of GPU memory it is computed on the CPU instead.
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import json
import math
import os
import sys
import time

import torch

from wkvbench import gradcheck, ops, presets, registry
from wkvbench.harness import measure, nvml, timing
from wkvbench.harness.client import check_same_package
from wkvbench.harness.opcase import OpCase
from wkvbench.harness.suite import Case
from wkvbench.schema import TRAINING_MODES


# ============================================================================= worker side
def classify(exc: BaseException) -> str:
    """``oom`` for out-of-memory errors of any backend (torch, CuPy, Numba, Triton), else ``failed``."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return "oom"
    name, msg = type(exc).__name__.lower(), str(exc).lower()
    markers = ("out of memory", "cuda_error_out_of_memory", "cudaerrormemoryallocation", "outofresources")
    markers += ("can't allocate memory",)  # torch's CPU allocator
    if "outofmemory" in name or any(m in msg for m in markers):
        return "oom"
    return "failed"


def describe(exc: BaseException, limit: int = 400) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " | ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Session:
    """The worker's state: the current case's inputs and reference, and one timer."""

    def __init__(self, plugins: tuple[str, ...] = ()):
        registry.load_builtins()
        for p in plugins:
            registry.load_plugin(p)
        self.case: Case | None = None
        self.state = None  # the case's state: OpSpec.prepare's (the network), else an OpCase
        self.bound: dict = {}  # impl -> the callable timed (from the state)
        self.input_bytes = 0
        self.graph = None  # bwd mode: (y, leaves) of the forward whose backward is timed
        self.timer: timing.Timer | None = None
        self.device = torch.device("cpu")

    # ------------------------------------------------------------------ dispatch
    def handle(self, req: dict) -> dict:
        cmd = req.get("cmd")
        fn = getattr(self, f"cmd_{cmd}", None)
        try:
            if fn is None:
                raise ValueError(f"cmd: unknown worker command {cmd!r}")
            args = {k: v for k, v in req.items() if k not in ("cmd", "id")}
            out = fn(**args)
            out.setdefault("ok", True)
        except Exception as exc:
            kind = classify(exc)
            out = {"ok": False, "error": describe(exc), "kind": kind, "fatal": False}
            if kind == "oom":
                self._free()
            elif self.device.type == "cuda":
                out["fatal"] = not self._context_ok()
        out["id"] = req.get("id")
        return out

    def _free(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _context_ok(self) -> bool:
        try:
            torch.cuda.synchronize(self.device)
            return float(torch.ones(1, device=self.device).add_(1).item()) == 2.0
        except Exception:
            return False

    @property
    def inputs(self) -> dict:
        """The timed call's inputs (the case state's)."""
        return self.state.inputs if self.state is not None else {}

    @property
    def ref(self):
        """The float64 reference output of a plain op's case (None for a network)."""
        return getattr(self.state, "ref", None)

    def _rec(self, impl: str) -> registry.Impl:
        if self.case is None:
            raise RuntimeError("no case loaded (send 'case' first)")
        return registry.get_impl(self.case.impl_op, impl)

    def callable_for(self, impl: str):
        """The callable timed for ``impl``: what the case's state binds (the registered function of a plain op)."""
        if impl not in self.bound:
            self.bound[impl] = self.state.bind(impl)
        return self.bound[impl]

    def _timer(self) -> timing.Timer:
        if self.timer is None or self.timer.device != self.device:
            self.timer = timing.Timer(self.device)
        return self.timer

    # ------------------------------------------------------------------ commands
    def cmd_hello(self) -> dict:
        return {"pid": os.getpid(), "torch": torch.__version__, "python": sys.version.split()[0]}

    def cmd_probe(self, device: str, argv=None, suite=None) -> dict:
        from wkvbench.envinfo import collect_env

        dev = torch.device(device)
        env = collect_env(argv=argv, suite=suite)
        bw = timing.copy_bandwidth_gbs(dev)
        return {"env": env, "copy_bandwidth_gbs": bw}

    def cmd_case(self, case: dict) -> dict:
        new = Case(**case)
        t0 = time.perf_counter()
        if self.case is not None and new.data_id == self.case.data_id and new.check_tokens == self.case.check_tokens:
            # same inputs and reference (another timing mode of the same case): reuse them
            self.case, self.graph = new, None
            self.state.set_mode(new.mode)
            ref_ms = (time.perf_counter() - t0) * 1e3
            return {"ref_ms": ref_ms, "input_bytes": self.input_bytes, "cached": True}
        self.case, self.state, self.bound, self.graph = None, None, {}, None
        self._free()
        self.device = torch.device(new.device)
        dtype = getattr(torch, new.dtype)
        spec = ops.get_op(new.op)
        preset = presets.get_preset(new.model)
        cshape = spec.shape_for(preset, new.batch, new.check_tokens) if new.check_tokens else None
        if spec.prepare is not None:  # the op's own per-case state (the network and its float64 twin)
            self.state = spec.prepare(
                preset,
                new.shape,
                dtype,
                self.device,
                new.seed,
                cshape,
                precision=new.precision,
                checkpoint=new.checkpoint,
                optimizer=new.optimizer,
            )
        else:  # inputs and the float64 reference
            self.state = OpCase(new, dtype, self.device, cshape)
        self.state.set_mode(new.mode)
        self.input_bytes = sum(x.numel() * x.element_size() for x in self.inputs.values() if torch.is_tensor(x))
        timing.synchronize(self.device)
        self.case = new
        out = {"ref_ms": (time.perf_counter() - t0) * 1e3, "input_bytes": self.input_bytes}
        if self.ref is not None:
            out["ref_device"] = str(self.ref.device)
        return out

    def timed_call(self, impl_fn):
        """The call the case's mode times, and (``bwd``) the untimed forward that builds its graph.

        ``impl_fn`` takes the case's inputs as keyword arguments (an implementation's function, or
        what an op's per-case state binds for it).

        ``fwd``: the forward under ``torch.no_grad()``. ``fwd_bwd``: forward and
        ``torch.autograd.grad`` (fresh gradients each call, nothing accumulated). ``bwd``: only the
        backward, ``retain_graph=True``, on the graph the build step keeps in ``self.graph``.
        """
        mode = self.case.mode
        own = getattr(self.state, "timed_call", None)
        if own is not None:  # the op's own state times its own call (the network op: its training step)
            return own(impl_fn, mode)
        if mode not in TRAINING_MODES:

            def fwd():
                with torch.no_grad():
                    return impl_fn(**self.inputs)

            return fwd, None
        names = gradcheck.grad_names(self.case.op, self.inputs)
        dy = self.state.dy
        if mode == "fwd_bwd":
            x = gradcheck.leaves(self.inputs, names)
            xs = [x[n] for n in names]

            def fwd_bwd():
                with torch.enable_grad():
                    return torch.autograd.grad(impl_fn(**x), xs, dy, allow_unused=True)

            return fwd_bwd, None

        def build():
            self.graph = None
            x = gradcheck.leaves(self.inputs, names)
            with torch.enable_grad():
                y = impl_fn(**x)
            self.graph = (y, [x[n] for n in names])
            timing.synchronize(self.device)

        def bwd():
            y, xs = self.graph
            return torch.autograd.grad(y, xs, dy, retain_graph=True, allow_unused=True)

        return bwd, build

    def cmd_check(self, impl: str, warmup_s: float = 0.1) -> dict:
        """The cell as planned: the device probes the plan deferred (``Impl.can_run``), the state's
        gate (first call and accuracy), then warm-up and the back-to-back estimate."""
        ok, why = self._rec(impl).can_run(self.case)
        if not ok:
            return {"status": "skipped", "note": why}
        timer = self._timer()
        res = self.state.gate(impl, timer, self.case.mode)
        passed, why = res.pop("passed"), res.pop("why", None)
        notes = [f"accuracy checked at T={self.case.check_tokens}"] if self.case.check_tokens else []
        if not passed:
            return {**res, "status": "wrong", "note": "; ".join([*notes, why])}
        if notes:
            res["note"] = notes[0]
        fn, build = self.timed_call(self.callable_for(impl))
        if build is not None:
            build()
        res["est_ms"] = timer.warmup(fn, warmup_s)
        res["gpu_ms"] = timer.gpu_ms(fn, res["est_ms"], repeats=3)
        res.update(measure.after_warmup(timer, fn, self._rec(impl).backend, res["est_ms"]))  # graph_ms, counted work
        self.graph = None
        return {**res, "status": "ok"}

    def cmd_sample(self, impl: str, n: int) -> dict:
        timer = self._timer()
        fn, build = self.timed_call(self.callable_for(impl))
        self.graph = None
        peak = None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        if build is not None:
            build()  # bwd: the forward that keeps the graph, untimed but inside the memory peak
        probe = measure.ClockProbe(self.device)  # NVML clock-event reasons around the batch
        xs = timer.samples(fn, int(n))
        clocks = probe.done()
        self.graph = None
        if self.device.type == "cuda":
            # inputs (+ the state's weights) + everything the calls allocated at their peak (reference
            # and flush buffer excluded; in training modes the saved activations and gradients included)
            resident = getattr(self.state, "resident_bytes", 0) or 0
            peak = torch.cuda.max_memory_allocated(self.device) - base + self.input_bytes + resident
        return {"samples_ms": xs, "peak_mem_bytes": peak, **clocks}

    def cmd_profile(self, impl: str, calls: int = 3) -> dict:
        """Per-kernel (GPU) or per-operator (CPU) breakdown of ``calls`` calls (torch.profiler)."""
        fn, build = self.timed_call(self.callable_for(impl))
        if build is not None:
            build()
        rows = measure.profile_call(fn, self.device, calls)
        self.graph = None
        return {"kernels": rows, "calls": calls}

    def cmd_energy(self, impl: str, seconds: float, est_ms: float) -> dict:
        if self.device.type != "cuda":
            return {"joules_per_call": None}
        uuid = getattr(torch.cuda.get_device_properties(self.device), "uuid", None)
        h = nvml.handle(str(uuid) if uuid else None)
        if nvml.energy_mj(h) is None:
            return {"joules_per_call": None}
        n = max(3, math.ceil(seconds * 1e3 / max(est_ms, 1e-3)))
        fn, build = self.timed_call(self.callable_for(impl))
        if build is not None:
            build()
        torch.cuda.synchronize(self.device)
        e0, t0 = nvml.energy_mj(h), time.perf_counter()
        for _ in range(n):
            fn()
        torch.cuda.synchronize(self.device)
        self.graph = None
        e1, dt = nvml.energy_mj(h), time.perf_counter() - t0
        if e1 is None or e1 <= e0:
            return {"joules_per_call": None, "note": "energy counter did not advance"}
        return {"joules_per_call": (e1 - e0) / 1e3 / n, "power_w": (e1 - e0) / 1e3 / dt, "calls": n}

    def cmd_quit(self) -> dict:
        return {}


def serve(plugins: tuple[str, ...] = ()) -> int:
    """Answer requests on stdin until EOF, ``quit`` or a fatal error."""
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # prints (Python or C) from implementations land in the log, not the protocol
    sys.stdout = sys.stderr
    faulthandler.enable()  # a segfault/abort leaves a Python traceback in the log
    try:
        session = Session(plugins)
    except Exception as exc:
        proto.write(
            json.dumps({"id": None, "ok": False, "error": describe(exc), "kind": "failed", "fatal": True}) + "\n"
        )
        return 2
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        print(
            f"[worker] {time.strftime('%H:%M:%S')} {req.get('cmd')} {req.get('impl', '')}", file=sys.stderr, flush=True
        )
        reply = session.handle(req)
        proto.write(json.dumps(reply) + "\n")
        proto.flush()
        if reply.get("fatal") or req.get("cmd") == "quit":
            break
    return 0


def main(argv: list[str] | None = None) -> int:
    check_same_package()  # the parent's wkvbench, not one in the working directory
    ap = argparse.ArgumentParser(description="wkvbench sweep worker (driven by `wkvbench run`)")
    ap.add_argument("--plugin", action="append", default=[])
    args = ap.parse_args(argv)
    rc = serve(tuple(args.plugin))
    sys.stderr.flush()
    os._exit(rc)  # skip interpreter teardown: a poisoned CUDA context can hang it


if __name__ == "__main__":
    sys.exit(main())
