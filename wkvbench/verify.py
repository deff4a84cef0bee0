"""``wkvbench verify``: the correctness gate (CONTRACT section 5).

Every available implementation of every op, over a set of shapes (odd T, B > 1, H > 1, stress
variants) and dtypes, against the float64 reference computed from the same dtype-rounded
inputs, with NaN-poisoned outputs. Prints one row per check (impl, shape, dtype, rel-L2,
max-abs, tolerance, status), optionally writes them as CSV/JSON, and exits 1 on any failure.
Statuses are the results vocabulary (``wkvbench.schema.STATUSES``): ``ok``; ``wrong`` (over the
accuracy bar, or non-finite); ``failed`` (it raised) or ``oom`` (it ran out of memory) -- a
crash is a failed check, not an abort of the run; ``skipped`` (not available on this device).

Interpreted backends (Triton under ``TRITON_INTERPRET=1``, Numba under the CUDA simulator) run
on CPU tensors only at the ``tiny`` shapes; ``--long`` adds A-RWKV-B-width shapes up to 16,400
tokens, meant for a GPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict, dataclass, field

import torch

from wkvbench import accuracy, ops
from wkvbench.harness.worker import classify
from wkvbench.opspec import CheckShape
from wkvbench.registry import OPS as OP_NAMES
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
            inputs = ops.make_case_inputs(op, shape.dims, dtype, self.device, seed=self.seed, variant=shape.variant)
            self._cache[key] = (inputs, ops.reference_output(op, inputs))
        return self._cache[key]


def check_one(op: str, rec: Impl, shape: Shape, dtype: torch.dtype, refs: _RefCache) -> Check:
    """Run one implementation on one shape and dtype against the reference."""
    dname = str(dtype).replace("torch.", "")
    row = Check(op, rec.name, rec.backend, shape.label(), dname, refs.device.type, "failed", dims=dict(shape.dims))
    inputs, ref = refs.get(op, shape, dtype)
    t0 = time.perf_counter()
    try:
        y = accuracy.run_checked(rec.fn, inputs, ops.get_op(op).out_shape(inputs), dtype, rec.accepts_out)
        if refs.device.type == "cuda":
            torch.cuda.synchronize()
        acc = accuracy.compare(y, ref, dtype, tf32=rec.tf32)
    except Exception as exc:  # a crash is a failed check, never an aborted verification
        row.status = classify(exc)
        row.note = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        row.seconds = time.perf_counter() - t0
        return row
    row.seconds = time.perf_counter() - t0
    row.rel_err, row.max_abs, row.tol = acc.rel_err, acc.max_abs, acc.tol
    row.status = "ok" if acc.passed else "wrong"
    if not acc.finite:
        row.note = "non-finite output (NaN/Inf: unwritten or overflowed elements)"
    return row


def run_verify(
    ops_: list[str],
    impls: list[str] | None,
    dtypes: list[torch.dtype],
    device: torch.device,
    long: bool = False,
    seed: int = 0,
    progress=None,
) -> list[Check]:
    """All checks, in op / impl / shape / dtype order. ``progress(check)`` is called after each."""
    results: list[Check] = []
    refs = _RefCache(device, seed)
    for op in ops_:
        for rec in list_impls(op):
            if impls and rec.name not in impls:
                continue
            ok, why = rec.available(device)
            if not ok:
                results.append(Check(op, rec.name, rec.backend, "-", "-", device.type, "skipped", note=why))
                if progress:
                    progress(results[-1])
                continue
            for shape in shapes_for(op, rec, device, long):
                for dtype in dtypes:
                    ok, why = rec.supports(dtype, ops.get_op(op).head_size(shape.dims))
                    if not ok:
                        continue
                    results.append(check_one(op, rec, shape, dtype, refs))
                    if progress:
                        progress(results[-1])
    return results


def format_row(c: Check) -> str:
    def num(x):
        return "-" if x != x else f"{x:.2e}"

    return (
        f"{c.op:<17} {c.impl:<22} {c.shape:<28} {c.dtype:<9} {num(c.rel_err):>9} {num(c.max_abs):>9} "
        f"{num(c.tol):>8} {c.status:<7} {c.seconds:7.2f}s {c.note}"
    ).rstrip()


HEADER = (
    f"{'op':<17} {'impl':<22} {'shape':<28} {'dtype':<9} {'rel_l2':>9} {'max_abs':>9} {'tol':>8} {'status':<7} "
    f"{'time':>8} note"
)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--op", default=",".join(OP_NAMES), help="comma list of ops (default: all)")
    p.add_argument("--impl", default="", help="comma list of implementation names (default: all)")
    p.add_argument("--dtype", default="float32,bfloat16,float16", help="comma list of dtypes")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--long", action="store_true", help="add A-RWKV-B-width shapes up to 16,400 tokens (GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plugin", action="append", default=[], help="module or .py file registering impls")
    p.add_argument("--out", default=None, help="write the table to this .csv or .json file")
    p.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary")


def _split(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _selection(args: argparse.Namespace) -> tuple[list[str], list[str] | None, list[torch.dtype], torch.device]:
    """Ops, implementation names, dtypes and device from the flags; ValueError naming a typo."""
    for plugin in args.plugin:
        load_plugin(plugin)
    ops_ = _split(args.op)
    bad = [o for o in ops_ if o not in ops.OPS]
    if bad or not ops_:
        raise ValueError(f"--op: unknown op(s) {', '.join(map(repr, bad))}; known: {', '.join(ops.OPS)}")
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
    print(HEADER, flush=True)

    def progress(c: Check) -> None:
        if not args.quiet or c.status in FAILURES:
            print(format_row(c), flush=True)

    results = run_verify(ops_, impls, dtypes, device, long=args.long, seed=args.seed, progress=progress)
    counts = {s: sum(c.status == s for c in results) for s in STATUSES}
    shown = [f"{n} {s}" for s, n in counts.items() if (n or s in ("ok", "wrong", "failed")) and s != "skipped"]
    if counts["skipped"]:
        shown.append(f"{counts['skipped']} skipped (implementations not available on {device.type})")
    print("\n" + ", ".join(shown))
    if args.out:
        rows = [asdict(c) for c in results]
        if args.out.endswith(".json"):
            with open(args.out, "w") as f:
                json.dump(rows, f, indent=1, default=str)
        else:
            with open(args.out, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["op"])
                w.writeheader()
                for r in rows:
                    r["dims"] = json.dumps(r["dims"])
                    w.writerow(r)
    return 1 if any(counts[s] for s in FAILURES) else 0
