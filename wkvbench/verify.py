"""``wkvbench verify``: the correctness gate (docs/spec.md section 5).

Every available implementation of every op, over a set of shapes (odd T, B > 1, H > 1, stress
variants) and dtypes, against the float64 reference computed from the same dtype-rounded
inputs, with NaN-poisoned outputs. Prints one row per check (impl, shape, dtype, rel-L2,
max-abs, tolerance, status), optionally writes them as CSV/JSON, and exits 1 on any failure.
Statuses are the results vocabulary (``wkvbench.schema.STATUSES``): ``ok``; ``wrong`` (over the
accuracy bar, or non-finite); ``failed`` (it raised) or ``oom`` (it ran out of memory) -- a
crash is a failed check, not an abort of the run; ``skipped`` (not available on this device).

``--grad`` adds, for every implementation with backward, its gradients against float64 autograd
of the reference (:mod:`wkvbench.gradcheck`; rows with ``check = grad``, the worst gradient named).
Each implementation's checks run in a child process of their own (:mod:`wkvbench.verify_child`)
with a time limit, so an illegal address or a hang turns only that implementation's remaining
rows into ``failed``/``timeout``; ``--out x.csv`` is written row by row as checks finish.

Interpreted backends (Triton under ``TRITON_INTERPRET=1``, Numba under the CUDA simulator) run
on CPU tensors only at the ``tiny`` shapes; ``--long`` adds A-RWKV-B-width shapes up to 16,400
tokens, meant for a GPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import queue
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields

import torch

from wkvbench import accuracy, gradcheck, ops, refcache
from wkvbench.harness.client import Child
from wkvbench.harness.client import signal_name as _signal_name
from wkvbench.harness.worker import classify
from wkvbench.opspec import OPS as OP_NAMES
from wkvbench.opspec import CheckShape
from wkvbench.registry import Impl, list_impls, load_plugin
from wkvbench.schema import STATUSES

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
INTERPRETED = ("triton", "numba", "cuda_host")
#: Statuses that make ``wkvbench verify`` exit 1.
FAILURES = ("wrong", "failed", "oom", "timeout")


#: One verification shape (the op records hold them: ``OpSpec.check_shapes`` / ``long_shapes``).
Shape = CheckShape


@dataclass
class Check:
    """One row of the verification table."""

    op: str
    impl: str
    backend: str
    shape: str
    dtype: str
    device: str
    status: str  # ok | wrong | failed | oom | skipped (wkvbench.schema.STATUSES)
    rel_err: float = float("nan")
    max_abs: float = float("nan")
    tol: float = float("nan")
    seconds: float = 0.0
    note: str = ""
    dims: dict = field(default_factory=dict)
    check: str = "fwd"  # fwd: the output; grad: the gradients (rel_err is the worst one's)
    grad_worst: str = ""  # grad rows: name of the worst gradient, e.g. dw


def shapes_for(op: str, rec: Impl, device: torch.device, long: bool) -> list[Shape]:
    """Shapes an implementation is checked at: interpreted backends on CPU get the tiny ones."""
    spec = ops.get_op(op)
    shapes = list(spec.check_shapes) + (list(spec.long_shapes) if long else [])
    if device.type == "cpu" and rec.backend in INTERPRETED:
        shapes = [s for s in shapes if s.tiny]
    if rec.head_sizes is not None:
        shapes = [s for s in shapes if spec.head_size(s.dims) in (None, *rec.head_sizes)]
    return shapes


class _RefCache:
    """One float64 reference per (op, shape, dtype, seed), shared by every implementation."""

    def __init__(self, device: torch.device, seed: int):
        self.device, self.seed, self._cache = device, seed, {}

    def get(self, op: str, shape: Shape, dtype: torch.dtype):
        key = (op, tuple(shape.dims.items()), shape.variant, dtype)
        if key not in self._cache:

            def compute():
                x = ops.make_case_inputs(op, shape.dims, dtype, self.device, seed=self.seed, variant=shape.variant)
                return x, ops.reference_output(op, x)

            stem = refcache.key("fwd", op, shape.dims, shape.variant, dtype, self.seed, self.device)
            self._cache[key] = refcache.cached(stem, self.device, compute)  # on disk with WKVBENCH_REF_CACHE
        return self._cache[key]

    def grads(self, op: str, shape: Shape, dtype: torch.dtype):
        """``(inputs, dy, float64 reference gradients)`` for a gradient check."""
        key = ("grad", op, tuple(shape.dims.items()), shape.variant, dtype)
        if key not in self._cache:
            inputs, _ = self.get(op, shape, dtype)

            def compute():
                dy = gradcheck.make_dy(ops.get_op(op).out_shape(inputs), dtype, self.device, self.seed)
                return dy, gradcheck.reference_grads(op, inputs, dy)

            stem = refcache.key("grad", op, shape.dims, shape.variant, dtype, self.seed, self.device)
            self._cache[key] = (inputs, *refcache.cached(stem, self.device, compute))
        return self._cache[key]


def _new_row(op: str, rec: Impl, shape: Shape, dtype: torch.dtype, refs: _RefCache) -> Check:
    dname = str(dtype).replace("torch.", "")
    return Check(op, rec.name, rec.backend, shape.label(), dname, refs.device.type, "failed", dims=dict(shape.dims))


def _sync(refs: _RefCache) -> None:
    if refs.device.type == "cuda":
        torch.cuda.synchronize()


def _attempt(row: Check, work):
    """``work()``, timed into ``row.seconds``; its result, or None when it raised.

    A crash is a failed check, never an aborted verification: the row gets the exception's
    class and message.
    """
    t0 = time.perf_counter()
    try:
        out = work()
    except Exception as exc:
        row.status = classify(exc)
        row.note = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        out = None
    row.seconds = time.perf_counter() - t0
    return out


def check_one(op: str, rec: Impl, shape: Shape, dtype: torch.dtype, refs: _RefCache) -> Check:
    """Run one implementation on one shape and dtype against the reference."""
    row = _new_row(op, rec, shape, dtype, refs)
    inputs, ref = refs.get(op, shape, dtype)

    def work():
        y = accuracy.run_checked(rec.fn, inputs, ops.get_op(op).out_shape(inputs), dtype, rec.accepts_out)
        _sync(refs)
        return accuracy.compare(y, ref, dtype, tf32=rec.tf32)

    acc = _attempt(row, work)
    if acc is None:
        return row
    row.rel_err, row.max_abs, row.tol = acc.rel_err, acc.max_abs, acc.tol
    row.status = "ok" if acc.passed else "wrong"
    if not acc.finite:
        row.note = "non-finite output (NaN/Inf: unwritten or overflowed elements)"
    return row


def check_grad_one(op: str, rec: Impl, shape: Shape, dtype: torch.dtype, refs: _RefCache) -> Check:
    """Gradients of one implementation on one shape and dtype against float64 autograd."""
    row = _new_row(op, rec, shape, dtype, refs)
    row.check = "grad"

    def work():
        inputs, dy, ref = refs.grads(op, shape, dtype)
        acc = gradcheck.check_grads(op, rec.fn, inputs, dtype, tf32=rec.tf32, ref=ref, dy=dy)
        _sync(refs)
        return acc

    acc = _attempt(row, work)
    if acc is None:
        return row
    row.rel_err, row.tol, row.grad_worst = acc.worst_err, acc.tol, acc.worst
    row.status = "ok" if acc.passed else "wrong"
    row.note = f"worst {acc.label()}" + ("" if acc.finite else "; non-finite gradient")
    return row


# ----------------------------------------------------------------------------- isolation
def importable(rec: Impl, plugins: tuple[str, ...]) -> bool:
    """Whether a child process can register ``rec`` too: a built-in, or from one of ``plugins``."""
    mod = rec.module or ""
    return mod.startswith("wkvbench.") or mod.startswith("wkvbench_plugin_") or mod in plugins


def run_isolated(op, rec: Impl, dtypes, device, long, seed, grad, timeout_s, plugins, emit) -> None:
    """Run ``rec``'s checks in a child; ``emit(Check)`` for each row as it arrives."""
    spec = {
        "op": op,
        "impl": rec.name,
        "dtypes": [str(d).replace("torch.", "") for d in dtypes],
        "device": str(device),
        "long": bool(long),
        "seed": int(seed),
        "grad": bool(grad),
        "plugins": list(plugins),
    }
    with (
        tempfile.TemporaryFile(mode="w+", encoding="utf-8") as err,
        Child("wkvbench.verify_child", [json.dumps(spec)], stderr=err, stdin=False) as child,
    ):  # leaving the block by any path (Ctrl-C too) kills the child's process group
        deadline = time.monotonic() + timeout_s
        last = "-"

        def tail_row(status: str, note: str) -> Check:
            where = "-" if last == "-" else f"after {last}"  # the shape it was on is not known exactly
            return Check(op, rec.name, rec.backend, where, "-", torch.device(device).type, status, note=note)

        while True:
            try:
                line = child.readline(max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                child.kill()
                emit(tail_row("timeout", f"checks exceeded --timeout {timeout_s:g} s; child killed"))
                return
            if line is None:
                rc = child.wait()
                if rc != 0:
                    err.seek(0)
                    text = err.read()[-200_000:]
                    emit(tail_row("failed", f"child {_signal_name(rc)}: {_crash_summary(text)}"))
                return
            try:
                row = json.loads(line)
            except ValueError:
                continue
            last = row.get("shape", last)
            emit(Check(**row))


def _crash_summary(stderr: str, limit: int = 400) -> str:
    """The useful lines of a dead child's stderr: faulthandler's error and innermost frame, or the
    last lines (a Python traceback's tail)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.startswith("Fatal Python error")]
    frames = [ln for ln in lines if ln.startswith("File ")]
    keep = fatal[-1:] + frames[:1] if fatal else lines[-3:]
    text = " | ".join(keep)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_verify(
    ops_: list[str],
    impls: list[str] | None,
    dtypes: list[torch.dtype],
    device: torch.device,
    long: bool = False,
    seed: int = 0,
    progress=None,
    grad: bool = False,
    isolate: bool = False,
    timeout_s: float = 900.0,
    plugins: tuple[str, ...] = (),
) -> list[Check]:
    """All checks, in op / impl / shape / dtype order. ``progress(check)`` is called after each.

    ``grad=True`` adds a gradient check after each forward check of an implementation with
    backward. ``isolate=True`` runs each implementation's checks in a child process
    (:mod:`wkvbench.verify_child`) with ``timeout_s`` for all of them, so a crash or hang costs
    only that implementation's rows; implementations registered in this process by code a child
    cannot import (not built in, not from ``plugins``) still run here.
    """
    results: list[Check] = []
    refs = _RefCache(device, seed)

    def emit(c: Check) -> None:
        results.append(c)
        if progress:
            progress(c)

    for op in ops_:
        recs = [r for r in list_impls(op) if not impls or r.name in impls]
        for rec in sorted(recs, key=lambda r: impls.index(r.name)) if impls else recs:  # --impl order
            ok, why = rec.available(device)
            if not ok:
                emit(Check(op, rec.name, rec.backend, "-", "-", device.type, "skipped", note=why))
                continue
            if isolate and importable(rec, plugins):
                run_isolated(op, rec, dtypes, device, long, seed, grad, timeout_s, plugins, emit)
                continue
            for c in checks_of(op, rec, dtypes, device, long, refs, grad):
                emit(c)
    return results


def checks_of(op: str, rec: Impl, dtypes, device: torch.device, long: bool, refs: _RefCache, grad: bool):
    """The checks of one implementation, one at a time (forward, then gradients when ``grad``)."""
    for shape in shapes_for(op, rec, device, long):
        for dtype in dtypes:
            ok, why = rec.supports(dtype, ops.get_op(op).head_size(shape.dims))
            if not ok:
                continue
            yield check_one(op, rec, shape, dtype, refs)
            if grad and rec.backward:
                yield check_grad_one(op, rec, shape, dtype, refs)


def format_row(c: Check) -> str:
    def num(x):
        return "-" if x != x else f"{x:.2e}"

    return (
        f"{c.op:<17} {c.impl:<22} {c.check:<5} {c.shape:<28} {c.dtype:<9} {num(c.rel_err):>9} {num(c.max_abs):>9} "
        f"{num(c.tol):>8} {c.status:<7} {c.seconds:7.2f}s {c.note}"
    ).rstrip()


HEADER = (
    f"{'op':<17} {'impl':<22} {'check':<5} {'shape':<28} {'dtype':<9} {'rel_l2':>9} {'max_abs':>9} {'tol':>8} "
    f"{'status':<7} {'time':>8} note"
)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--op", default=",".join(OP_NAMES), help="comma list of ops (default: all)")
    p.add_argument("--impl", default="", help="comma list of implementation names, run in that order (default: all)")
    p.add_argument("--dtype", default="float32,bfloat16,float16", help="comma list of dtypes")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--long", action="store_true", help="add A-RWKV-B-width shapes up to 16,400 tokens (GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plugin", action="append", default=[], help="module or .py file registering impls")
    p.add_argument("--grad", action="store_true", help="also check gradients (implementations with backward)")
    p.add_argument(
        "--no-isolate", action="store_true", help="run every check in this process (default: one child per impl)"
    )
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per implementation (isolated; default 900)")
    p.add_argument("--out", default=None, help="write the table to this .csv (row by row) or .json file")
    p.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary")


def _split(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _selection(args: argparse.Namespace) -> tuple[list[str], list[str] | None, list[torch.dtype], torch.device]:
    """Ops, implementation names, dtypes and device from the flags; ValueError naming a typo."""
    for plugin in args.plugin:
        load_plugin(plugin)
    ops_ = _split(args.op)
    bad = [o for o in ops_ if o not in OP_NAMES]
    if bad or not ops_:
        raise ValueError(f"--op: unknown op(s) {', '.join(map(repr, bad))}; known: {', '.join(OP_NAMES)}")
    bad = [d for d in _split(args.dtype) if d not in DTYPES]
    if bad or not _split(args.dtype):
        raise ValueError(f"--dtype: unknown dtype(s) {', '.join(map(repr, bad))}; known: {', '.join(DTYPES)}")
    dtypes = [DTYPES[d] for d in _split(args.dtype)]
    impls = _split(args.impl) or None
    if impls:
        known = list(dict.fromkeys(r.name for op in ops_ for r in list_impls(op)))
        bad = [n for n in impls if n not in known]
        if bad:
            raise ValueError(
                f"--impl: unknown implementation(s) {', '.join(map(repr, bad))} for {', '.join(ops_)}; "
                f"known: {', '.join(known)}"
            )
    try:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as exc:
        raise ValueError(f"--device: {exc}") from None
    return ops_, impls, dtypes, device


def main(args: argparse.Namespace) -> int:
    try:
        ops_, impls, dtypes, device = _selection(args)
    except ValueError as exc:
        print(f"wkvbench verify: {exc}", file=sys.stderr)
        return 2
    if args.timeout <= 0:
        print("wkvbench verify: --timeout: must be > 0", file=sys.stderr)
        return 2
    print(HEADER, flush=True)
    csv_out = None
    if args.out and not args.out.endswith(".json"):
        csv_out = open(args.out, "w", newline="")  # noqa: SIM115 (closed below)
        writer = csv.DictWriter(csv_out, fieldnames=[f.name for f in fields(Check)])
        writer.writeheader()
        csv_out.flush()

    def progress(c: Check) -> None:
        if not args.quiet or c.status in FAILURES:
            print(format_row(c), flush=True)
        if csv_out is not None:  # row by row: an interrupted verify keeps what finished
            writer.writerow({**asdict(c), "dims": json.dumps(c.dims)})
            csv_out.flush()

    try:
        results = run_verify(
            ops_,
            impls,
            dtypes,
            device,
            long=args.long,
            seed=args.seed,
            progress=progress,
            grad=args.grad,
            isolate=not args.no_isolate,
            timeout_s=args.timeout,
            plugins=tuple(args.plugin),
        )
    finally:
        if csv_out is not None:
            csv_out.close()
    counts = {s: sum(c.status == s for c in results) for s in STATUSES}
    shown = [f"{n} {s}" for s, n in counts.items() if (n or s in ("ok", "wrong", "failed")) and s != "skipped"]
    if counts["skipped"]:
        shown.append(f"{counts['skipped']} skipped (implementations not available on {device.type})")
    print("\n" + ", ".join(shown))
    if args.out and args.out.endswith(".json"):
        with open(args.out, "w") as f:
            json.dump([asdict(c) for c in results], f, indent=1, default=str)
    return 1 if any(counts[s] for s in FAILURES) else 0
