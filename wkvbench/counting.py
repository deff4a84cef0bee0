"""Counted work of one call: FLOPs of PyTorch code, global-memory bytes of Triton, Numba and CUDA C kernels.

The op records' ``flops`` and ``bytes_moved`` are formulas written by hand; this module counts
instead, so the formulas can be checked (``tests/test_counting.py``) and a kernel's traffic seen
without a GPU (``wkvbench count``):

* :func:`count_torch` runs a call under a ``TorchDispatchMode``: matmul-like ops are counted by
  ``torch.utils.flop_counter``'s own formulas (the ones ``FlopCounterMode`` uses: 2 per
  multiply-add), pointwise ops (``torch.Tag.pointwise``, copies excluded) as one FLOP per output
  element, reductions and scans as one per input element, a triangular solve as ``L^2`` per
  right-hand column. It also sums the bytes every op reads and writes: the traffic of eager
  execution, where each op goes to memory.
* :func:`count_triton` runs a call in the Triton interpreter (``TRITON_INTERPRET=1``) with the
  interpreter's load, store and atomic builders wrapped: every ``tl.load``/``tl.store`` adds the
  bytes of its unmasked lanes, and the distinct addresses touched are kept, so both the traffic
  as issued and its distinct footprint (what a perfect cache would leave) are known.

Bytes per (token, head) are set beside the minimum, the op record's ``bytes_moved`` (each input
read once, the output written once) divided by ``B*T*H`` (``B*T*D`` for the Mamba scan).
:func:`count_numba` does the same for Numba kernels in the CUDA simulator (element reads and
writes of global arrays). The CUDA C kernels (``cupy_cuda``, ``audiorwkv_catflip``) are counted in
the host emulation, built with every memory access instrumented (:mod:`wkvbench.hostemu.count`:
bytes each thread loads and stores in the tensors a launch receives, plus the PyTorch ops around
the kernels); that needs g++ (GCC >= 12).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from wkvbench.traffic import MemCount, is_view, tensors

_ATEN = torch.ops.aten
#: Pointwise-tagged ops that move data without arithmetic.
_COPIES = {"clone", "copy_", "_to_copy", "lift_fresh", "alias"}
#: Untagged ops counted as one FLOP per input element.
#: Pointwise ops that are a multiply and an add per element (2 FLOPs).
_FMA = {"addcmul", "addcdiv", "lerp", "addmv", "add_relu"}
_SCANS = {"cumsum", "cumprod", "logcumsumexp", "_softmax", "_log_softmax", "softmax", "log_softmax"}


@dataclass
class TorchCount:
    """FLOPs and op-level bytes of one call of PyTorch code."""

    matmul_flops: int = 0
    pointwise_flops: int = 0
    other_flops: int = 0  # reductions, scans, triangular solves
    op_bytes: int = 0  # bytes read and written by every op (eager traffic)
    ops: Counter = field(default_factory=Counter)

    @property
    def flops(self) -> int:
        return self.matmul_flops + self.pointwise_flops + self.other_flops


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class _Counting(TorchDispatchMode):
    def __init__(self, count: TorchCount):
        super().__init__()
        self.count = count
        from torch.utils.flop_counter import flop_registry

        self.registry = flop_registry

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        name = packet.__name__
        c = self.count
        ins, outs = tensors((args, kwargs)), tensors(out)
        if packet in self.registry:
            n = int(self.registry[packet](*args, **kwargs, out_val=out))
            c.matmul_flops += n
        elif name in _COPIES or torch.Tag.view_copy in func.tags or is_view(func):
            n = 0
        elif torch.Tag.pointwise in func.tags:
            n = sum(o.numel() for o in outs[:1]) * (2 if name.rstrip("_") in _FMA else 1)
            c.pointwise_flops += n
        elif torch.Tag.reduction in func.tags or name in _SCANS:
            n = ins[0].numel() if ins else 0
            c.other_flops += n
        elif name in ("linalg_solve_triangular", "triangular_solve"):
            a, rhs = ins[0], ins[1]
            n = a.shape[-1] ** 2 * rhs.numel() // rhs.shape[-2] if rhs.dim() >= 2 else 0
            c.other_flops += n
        else:
            n = 0
        if not is_view(func):
            c.op_bytes += sum(_nbytes(t) for t in ins) + sum(_nbytes(t) for t in outs)
        c.ops[name] += n
        return out


def count_torch(fn, *args, grad: bool = False, **kwargs) -> tuple[object, TorchCount]:
    """Run ``fn(*args, **kwargs)`` once, counting FLOPs and op-level bytes; (result, count).

    Under ``torch.no_grad()`` unless ``grad`` (a call that runs its own backward counts it too).
    """
    count = TorchCount()
    with contextlib.nullcontext() if grad else torch.no_grad(), _Counting(count):
        out = fn(*args, **kwargs)
    return out, count


# ----------------------------------------------------------------------------- Triton interpreter
def _elem_bytes(ptrs) -> int:
    return max(1, ptrs.get_element_ty().primitive_bitwidth // 8)


def _live(ptrs, mask) -> np.ndarray:
    """Addresses of the unmasked lanes."""
    addr = np.asarray(ptrs.data)
    m = np.broadcast_to(np.asarray(mask.data, dtype=bool), addr.shape)
    return addr[m].ravel()


def _in_ranges(addrs: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
    hit = np.zeros(addrs.shape, dtype=bool)
    for lo, hi in ranges:
        hit |= (addrs >= lo) & (addrs < hi)
    return hit


def tensor_ranges(*args) -> list[tuple[int, int]]:
    """``[start, end)`` byte address ranges of the tensors among ``args`` (others ignored)."""
    return [(t.data_ptr(), t.data_ptr() + _nbytes(t)) for t in tensors(args) if t.numel()]


@contextlib.contextmanager
def triton_counter(io: list[tuple[int, int]] | None = None):
    """Count the interpreter's global loads and stores inside the block; yields a :class:`MemCount`.

    ``io``: address ranges of the call's inputs and output (:func:`tensor_ranges`); the distinct
    bytes inside them go to ``io_distinct_bytes`` (the rest is scratch). Needs
    ``TRITON_INTERPRET=1`` (set before the kernels were defined): the wrapped methods are
    those of ``triton.runtime.interpreter.InterpreterBuilder``, which runs every kernel there.
    """
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("TRITON_INTERPRET: must be 1 to count Triton bytes (wkvbench --interpret)")
    from triton.runtime import interpreter

    cls = interpreter.InterpreterBuilder
    saved = {n: cls.__dict__[n] for n in ("create_masked_load", "create_masked_store", "create_atomic_rmw")}
    count = MemCount()
    seen: dict[str, list[np.ndarray]] = {"load": [], "store": []}
    sizes: dict[str, dict] = {"load": {}, "store": {}}

    def note(kind: str, ptrs, mask) -> int:
        addr = _live(ptrs, mask)
        es = _elem_bytes(ptrs)
        seen[kind].append(addr)
        sizes[kind][es] = sizes[kind].get(es, 0) + 1
        return addr.size * es

    def load(self, ptrs, mask, other, *a, **k):
        count.load_bytes += note("load", ptrs, mask)
        count.loads += 1
        return saved["create_masked_load"](self, ptrs, mask, other, *a, **k)

    def store(self, ptrs, value, mask, *a, **k):
        count.store_bytes += note("store", ptrs, mask)
        count.stores += 1
        return saved["create_masked_store"](self, ptrs, value, mask, *a, **k)

    def atomic(self, rmw_op, ptrs, val, mask, *a, **k):
        addr = _live(ptrs, mask)
        count.atomic_bytes += addr.size * _elem_bytes(ptrs)
        seen["load"].append(addr)
        seen["store"].append(addr)
        return saved["create_atomic_rmw"](self, rmw_op, ptrs, val, mask, *a, **k)

    cls.create_masked_load, cls.create_masked_store, cls.create_atomic_rmw = load, store, atomic
    try:
        yield count
    finally:
        for n, f in saved.items():
            setattr(cls, n, f)
    union = []
    for kind in ("load", "store"):
        addrs = np.unique(np.concatenate(seen[kind])) if seen[kind] else np.empty(0, dtype=np.uint64)
        # one element size per kind in practice; otherwise the distinct count uses the largest
        es = max(sizes[kind], default=4)
        setattr(count, f"distinct_{kind}_bytes", int(addrs.size) * es)
        union.append(addrs)
    if io:
        both = np.unique(np.concatenate(union))
        count.io_distinct_bytes = int(_in_ranges(both, io).sum()) * max(sizes["load"], default=4)


def count_triton(fn, *args, out=None, **kwargs) -> tuple[object, MemCount]:
    """Run ``fn(*args, **kwargs)`` once in the Triton interpreter, counting global bytes.

    ``out``: a preallocated output passed on as ``out=``, so that its address range (with the
    inputs') separates the I/O's distinct bytes from scratch buffers'.
    """
    io = tensor_ranges(args, kwargs, out)
    with triton_counter(io) as count:
        res = fn(*args, **kwargs) if out is None else fn(*args, out=out, **kwargs)
    return res, count


# ----------------------------------------------------------------------------- Numba simulator
def _scalar_addr(ary: np.ndarray, idx) -> int | None:
    """Byte address of ``ary[idx]`` when ``idx`` picks one element, else None."""
    idx = idx if isinstance(idx, tuple) else (idx,)
    if len(idx) != ary.ndim or not all(isinstance(i, (int, np.integer)) for i in idx):
        return None
    return ary.ctypes.data + sum((int(i) % n) * st for i, n, st in zip(idx, ary.shape, ary.strides, strict=True))


@contextlib.contextmanager
def numba_counter(io: list[tuple[int, int]] | None = None):
    """Count global-array element reads and writes of kernels run in Numba's CUDA simulator.

    Wraps the simulator's in-kernel array (``FakeWithinKernelCUDAArray``) indexing: every element
    read or written adds its size (shared and local arrays are plain NumPy arrays and are not
    counted). Needs ``NUMBA_ENABLE_CUDASIM=1``. Yields a :class:`MemCount` (``loads``/``stores``
    count elements).
    """
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        raise RuntimeError("NUMBA_ENABLE_CUDASIM: must be 1 to count Numba bytes (wkvbench --interpret)")
    import threading

    from numba.cuda.simulator.cudadrv import devicearray as da

    cls = da.FakeWithinKernelCUDAArray
    get0, set0 = cls.__getitem__, cls.__setitem__
    count, lock = MemCount(), threading.Lock()
    seen: dict[str, set] = {"load": set(), "store": set()}

    def note(kind: str, arr, idx, n: int) -> None:
        ary = arr._item._ary
        addr = _scalar_addr(ary, idx)
        with lock:
            if kind == "load":
                count.load_bytes += n * ary.itemsize
                count.loads += n
            else:
                count.store_bytes += n * ary.itemsize
                count.stores += n
            if addr is not None:
                seen[kind].add(addr)

    def get(self, idx):
        out = get0(self, idx)
        if not isinstance(out, cls):  # a sub-array view reads nothing yet
            note("load", self, idx, int(np.size(out)))
        return out

    def put(self, idx, val):
        set0(self, idx, val)
        note("store", self, idx, int(np.size(self._item._ary[idx])))

    cls.__getitem__, cls.__setitem__ = get, put
    try:
        yield count
    finally:
        cls.__getitem__, cls.__setitem__ = get0, set0
    es = {"load": count.load_bytes // max(count.loads, 1), "store": count.store_bytes // max(count.stores, 1)}
    for kind in ("load", "store"):
        setattr(count, f"distinct_{kind}_bytes", len(seen[kind]) * es[kind])
    if io:
        both = np.fromiter(seen["load"] | seen["store"], dtype=np.uint64)
        count.io_distinct_bytes = int(_in_ranges(both, io).sum()) * max(es.values())


def count_numba(fn, *args, out=None, **kwargs) -> tuple[object, MemCount]:
    """Run ``fn(*args, **kwargs)`` once in Numba's CUDA simulator, counting global bytes."""
    io = tensor_ranges(args, kwargs, out)
    with numba_counter(io) as count:
        res = fn(*args, **kwargs) if out is None else fn(*args, out=out, **kwargs)
    return res, count


# ----------------------------------------------------------------------------- per op and impl
#: The dimensions whose product a "per (token, head)" figure divides by, per op.
PER_TOKEN_HEAD = {"bi_wkv7": ("B", "T", "H"), "attention": ("B", "T", "H"), "bi_selective_scan": ("B", "T", "D")}


def per_token_head(op: str, shape: dict) -> int:
    if op not in PER_TOKEN_HEAD:
        raise ValueError(f"op: no per-(token, head) unit for {op!r}; expected one of {', '.join(PER_TOKEN_HEAD)}")
    return math.prod(int(shape[d]) for d in PER_TOKEN_HEAD[op])


#: The modes a call is counted in: the forward, or a training step (forward, then backward with a seeded dy).
COUNT_MODES = ("fwd", "fwd_bwd")


def _training_step(fn, names: list[str], dy: torch.Tensor):
    """``fn``'s forward and backward: ``step(**inputs)`` returns the gradients of the ``names`` inputs."""

    def step(**inputs):
        return torch.autograd.grad(fn(**inputs), [inputs[n] for n in names], dy)

    return step


def count_call(
    op: str, impl: str, shape: dict, dtype: torch.dtype = torch.float32, seed: int = 0, mode: str = "fwd"
) -> dict:
    """Count one CPU call of ``impl`` on ``shape``; a flat dict of counted and formula figures.

    ``mode``: ``fwd``, or ``fwd_bwd`` (the forward and the backward of every input the op record
    lists in ``grad_args``; the formulas are then ``flops_in(shape, mode)`` and no minimum bytes).
    Triton implementations need ``TRITON_INTERPRET=1`` set before the registry loads them; CUDA C
    ones g++ (else :class:`wkvbench.hostemu.build.NoCompiler`).
    """
    from wkvbench import gradcheck
    from wkvbench.opspec import element_size, get_op
    from wkvbench.registry import get_impl

    if mode not in COUNT_MODES:
        raise ValueError(f"mode: expected one of {', '.join(COUNT_MODES)}, got {mode!r}")
    spec = get_op(op)
    if spec.impls_of is not None:
        raise ValueError(f"op: {op!r} runs other ops' implementations; count its mixer op instead")
    rec = get_impl(op, impl)
    ok, why = rec.supports(dtype, spec.head_size(shape)) if rec.backend == "cupy" else rec.available("cpu")
    if not ok:
        raise ValueError(f"impl: {impl!r} cannot run on this CPU: {why}")
    if mode != "fwd" and not rec.backward:
        raise ValueError(f"impl: {impl!r} has no backward, so no {mode} to count")
    inputs = spec.make_inputs(shape, dtype, torch.device("cpu"), seed)
    fn, dy = rec.fn, None
    if mode == "fwd_bwd":
        names = gradcheck.grad_names(op, inputs)
        inputs = gradcheck.leaves(inputs, names)
        dy = gradcheck.make_dy(tuple(spec.out_shape(inputs)), dtype, "cpu", seed)
        fn = _training_step(rec.fn, names, dy)
    es = element_size(dtype)
    unit = per_token_head(op, shape)
    minimum = spec.bytes_in(shape, es, mode)
    row = {
        "op": op,
        "impl": impl,
        "backend": rec.backend,
        "dtype": str(dtype).replace("torch.", ""),
        "mode": mode,
        "shape": dict(shape),
        "formula_flops": float(spec.flops_in(shape, mode)),
        "formula_bytes": None if minimum is None else int(minimum),
        "min_bytes_per_token_head": None if minimum is None else minimum / unit,
    }
    if rec.backend in ("triton", "numba"):
        out = torch.empty(spec.out_shape(inputs), dtype=dtype) if rec.accepts_out and dy is None else None
        counter = count_triton if rec.backend == "triton" else count_numba
        _, mem = counter(fn, out=out, **inputs)
        if rec.backend == "numba" and not mem.io_distinct_bytes:
            mem.io_distinct_bytes = None  # the simulator ran on copies of the tensors: no I/O addresses
        row.update(
            counted_bytes=mem.bytes,
            distinct_bytes=mem.distinct_bytes,
            io_distinct_bytes=mem.io_distinct_bytes,
            counted={k: v for k, v in asdict(mem).items()},
        )
    elif rec.backend == "cupy":  # CUDA C in the host emulation (hostemu.build.NoCompiler without g++)
        from wkvbench.hostemu import count as host_count

        out = torch.empty(spec.out_shape(inputs), dtype=dtype) if dy is None else None
        _, kc = host_count.count_call(impl, inputs, out, dy=dy)
        row.update(
            counted_bytes=kc.bytes,
            distinct_bytes=kc.distinct_bytes,
            io_distinct_bytes=kc.io_distinct_bytes,
            counted={**asdict(kc), "kernel_bytes": kc.kernel_bytes},
        )
    elif rec.backend == "torch":
        _, tc = count_torch(fn, grad=dy is not None, **inputs)
        row.update(
            counted_flops=tc.flops,
            counted_bytes=tc.op_bytes,
            counted={
                "matmul_flops": tc.matmul_flops,
                "pointwise_flops": tc.pointwise_flops,
                "other_flops": tc.other_flops,
            },
        )
    else:
        raise ValueError(f"impl: {impl!r} ({rec.backend}) is not counted here: torch, triton, numba and cupy are")
    if "counted_bytes" in row:
        row["bytes_per_token_head"] = row["counted_bytes"] / unit
        row["bytes_vs_min"] = None if minimum is None else row["counted_bytes"] / minimum
    if "distinct_bytes" in row:
        row["distinct_bytes_per_token_head"] = row["distinct_bytes"] / unit
    if "counted_flops" in row:
        row["flops_vs_formula"] = row["counted_flops"] / row["formula_flops"]
    return row
