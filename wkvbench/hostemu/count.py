"""Counted global-memory bytes of the CUDA C kernels, run on the CPU in the host emulation.

The drivers are built with every memory access instrumented (:func:`wkvbench.hostemu.build.build`
with ``count=True``; the callbacks are ``mem_counter.cpp``). A call of ``cupy_cuda`` or
``audiorwkv_catflip`` runs its own Python with a :mod:`wkvbench.hostemu.launch` launcher wrapped so
that, before each launch, the storage of every tensor a pointer argument points into is registered
with the counter; after the launch the counter's bytes and touched-byte flags are collected. The
PyTorch ops around the kernels (``cat``/``flip``/``lerp`` of the catflip construction, ``zeros`` and
conversions) run under a dispatch mode that records the tensors they make (so a pointer can be
mapped to its storage) and adds each op's bytes read and written (views and ``empty`` excluded) to
the count, as separate kernels a GPU would run. Design and limits: docs/notes/measurement.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from wkvbench.hostemu import build as _build
from wkvbench.hostemu import launch as _launch
from wkvbench.traffic import MemCount, is_view, tensors

#: The CUDA C implementations counted here, and the driver each call's kernels run in.
DRIVERS = {"cupy_cuda": "bi_wkv7_host.cpp", "audiorwkv_catflip": "catflip_host.cpp"}
#: The driver of each one's training step (training forward and backward).
TRAIN_DRIVERS = {"cupy_cuda": "bi_wkv7_train_host.cpp", "audiorwkv_catflip": "catflip_host.cpp"}
_MAX_BUFFERS = 64  # mem_counter.cpp's kMaxBuffers
#: Thread cap of a counted launch when CUDA_HOST_MAX_THREADS is unset: twice the shim's test default
#: (8192), so one A-RWKV-T/B sequence (12 heads: 12,288 threads) can be counted.
COUNT_MAX_THREADS = 16384
_NO_TRAFFIC = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"}


@dataclass
class KernelCount(MemCount):
    """Bytes of one call: its kernels' (counted in the emulation; ``loads``/``stores`` are accesses of
    1 to 16 bytes) and its PyTorch ops' (whole tensors, in the distinct counts too)."""

    atomics: int = 0
    torch_op_bytes: int = 0  # bytes read and written by the PyTorch ops around the kernels
    launches: list = field(default_factory=list)  # [kernel name, bytes] per launch

    @property
    def kernel_bytes(self) -> int:
        return super().bytes

    @property
    def bytes(self) -> int:
        return self.kernel_bytes + self.torch_op_bytes


# ----------------------------------------------------------------------------- the counter library
class Counter:
    """The ``wkvc_*`` functions of one counting build (each build has its own counter state)."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        u64 = ctypes.c_uint64
        lib.wkvc_clear.argtypes, lib.wkvc_clear.restype = [], None
        lib.wkvc_add.argtypes, lib.wkvc_add.restype = [u64, u64], ctypes.c_int
        lib.wkvc_stats.argtypes, lib.wkvc_stats.restype = [ctypes.c_int, ctypes.POINTER(u64)], None
        lib.wkvc_touched.argtypes, lib.wkvc_touched.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_void_p

    def register(self, base: int, nbytes: int) -> int:
        i = self.lib.wkvc_add(base, nbytes)
        if i < 0:
            raise RuntimeError(
                f"counter: could not register [{base:#x}, +{nbytes}) ({'full' if i == -1 else 'overlap'})"
            )
        return i

    def stats(self, i: int) -> list[int]:
        """{load, store, atomic} bytes, then {load, store, atomic} accesses of buffer ``i``."""
        out = (ctypes.c_uint64 * 6)()
        self.lib.wkvc_stats(i, out)
        return list(out)

    def touched(self, i: int, kind: int, nbytes: int) -> np.ndarray:
        """Per-byte flags of buffer ``i`` (``kind`` 0: loaded, 1: stored), as a bool array (a copy)."""
        ptr = self.lib.wkvc_touched(i, kind)
        return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_uint8)), shape=(nbytes,)).astype(bool)

    def clear(self) -> None:
        self.lib.wkvc_clear()


def load(driver: str, compiler: tuple[str, str] | None = None) -> tuple[ctypes.CDLL, Counter]:
    """Build (cached) and load the counting build of ``driver``; (library with entry points declared, counter).

    Raises :class:`wkvbench.hostemu.build.NoCompiler` without a g++ that can build it."""
    lib = ctypes.CDLL(str(_build.build(driver, count=True, compiler=compiler)))
    return _launch.declare(lib, driver), Counter(lib)


# ----------------------------------------------------------------------------- footprint
def _storage(t: torch.Tensor) -> tuple[int, int]:
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


def _span(t: torch.Tensor) -> tuple[int, int]:
    """Byte addresses [lo, hi) of the elements of a strided tensor (gaps between them included)."""
    es, lo_off, hi_off = t.element_size(), 0, 0
    for n, st in zip(t.shape, t.stride(), strict=True):
        if st >= 0:
            hi_off += (n - 1) * st
        else:
            lo_off += (n - 1) * st
    return t.data_ptr() + lo_off * es, t.data_ptr() + (hi_off + 1) * es


class Footprint:
    """Every storage the call touches, with per-byte loaded/stored flags and the bytes counted."""

    def __init__(self):
        self.storages: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}  # base -> (nbytes, loaded, stored)
        self.keep: list[torch.Tensor] = []  # alive until the end: no address is reused within the call

    def add(self, t: torch.Tensor) -> None:
        if t.device.type != "cpu" or t.numel() == 0:
            return
        base, nbytes = _storage(t)
        if base and base not in self.storages:
            self.storages[base] = (nbytes, np.zeros(nbytes, dtype=bool), np.zeros(nbytes, dtype=bool))
        self.keep.append(t)

    def find(self, ptr: int) -> int:
        """Base of the storage holding address ``ptr``."""
        for base, (nbytes, _, _) in self.storages.items():
            if base <= ptr < base + nbytes:
                return base
        raise RuntimeError(f"launch argument {ptr:#x} points into no tensor of the call")

    def mark(self, t: torch.Tensor, kind: int) -> None:
        if t.device.type != "cpu" or t.numel() == 0:
            return
        self.add(t)
        base, (lo, hi) = _storage(t)[0], _span(t)
        self.storages[base][1 + kind][lo - base : hi - base] = True

    def distinct(self, kind: int, ranges=None) -> int:
        total = 0
        for base, (nbytes, loaded, stored) in self.storages.items():
            flags = (loaded, stored)[kind] if kind in (0, 1) else loaded | stored
            if ranges is None:
                total += int(flags.sum())
            else:
                for lo, hi in ranges:
                    a, b = max(lo, base) - base, min(hi, base + nbytes) - base
                    total += int(flags[a:b].sum()) if a < b else 0
        return total


class _Ops(TorchDispatchMode):
    """Records the tensors every op makes and adds its bytes read and written (the traffic of eager ops)."""

    def __init__(self, fp: Footprint, count: KernelCount):
        super().__init__()
        self.fp, self.count = fp, count

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        ins, outs = tensors((args, kwargs)), tensors(out)
        for t in outs:
            self.fp.add(t)
        if not is_view(func) and name not in _NO_TRAFFIC:
            written = {id(t) for t in outs}
            reads = [t for t in ins if id(t) not in written or name not in ("zero_", "fill_")]
            for t in reads:
                self.fp.mark(t, 0)
            for t in outs:
                self.fp.mark(t, 1)
            self.count.torch_op_bytes += sum(t.numel() * t.element_size() for t in (*reads, *outs))
        return out


_CAP_VAR = "CUDA_HOST_MAX_THREADS"


@contextlib.contextmanager
def _thread_cap(cap: int):
    """The shim reads its thread cap from the environment at each launch: set it for this one."""
    old = os.environ.get(_CAP_VAR)
    os.environ[_CAP_VAR] = str(cap)
    try:
        yield
    finally:
        if old is None:
            del os.environ[_CAP_VAR]
        else:
            os.environ[_CAP_VAR] = old


class CountingLauncher:
    """Wraps a launcher: registers the launch's storages with the counters, collects after each launch."""

    def __init__(self, inner, counters: list[Counter], fp: Footprint, count: KernelCount):
        self.inner, self.counters, self.fp, self.count = inner, counters, fp, count

    def __call__(self, name, grid, block, args, device):
        threads, cap = math.prod(grid) * math.prod(block), int(os.environ.get(_CAP_VAR, COUNT_MAX_THREADS))
        if threads > cap:  # the shim would abort the process
            raise ValueError(
                f"shape: launch {name} has {threads} threads, over the host emulation's {cap} "
                "(CUDA_HOST_MAX_THREADS); count a smaller case (fewer batches x heads)"
            )
        bases = sorted({self.fp.find(int(x)) for x in args[:-3] if int(x)})
        if len(bases) > _MAX_BUFFERS:
            raise RuntimeError(f"launch {name}: {len(bases)} buffers, over the counter's {_MAX_BUFFERS}")
        regs = []
        for c in self.counters:
            c.clear()
            regs.append([(c.register(b, self.fp.storages[b][0]), b) for b in bases])
        try:
            with _thread_cap(cap):
                self.inner(name, grid, block, args, device)
            before = self.count.kernel_bytes
            for c, reg in zip(self.counters, regs, strict=True):
                for i, base in reg:
                    st = c.stats(i)
                    self.count.load_bytes += st[0]
                    self.count.store_bytes += st[1]
                    self.count.atomic_bytes += st[2]
                    self.count.loads += st[3]
                    self.count.stores += st[4]
                    self.count.atomics += st[5]
                    nbytes, loaded, stored = self.fp.storages[base]
                    loaded |= c.touched(i, 0, nbytes)
                    stored |= c.touched(i, 1, nbytes)
            self.count.launches.append([name, self.count.kernel_bytes - before])
        finally:
            for c in self.counters:
                c.clear()


# ----------------------------------------------------------------------------- one call
def count_call(
    impl: str, inputs: dict, out: torch.Tensor | None = None, dy: torch.Tensor | None = None
) -> tuple[object, KernelCount]:
    """Run one call of ``impl`` (:data:`DRIVERS`) on CPU ``inputs`` in the counting emulation.

    Without ``dy``: the inference call (result: the output); ``out``, a preallocated output, gives
    with the inputs the ranges of ``io_distinct_bytes``. With ``dy``: a training step -- the
    training forward, then the backward with output gradient ``dy`` (result: the gradients of the
    inputs that require grad). Raises ValueError for an impl not counted here,
    :class:`~wkvbench.hostemu.build.NoCompiler` without a g++ that can build the counting emulation."""
    if impl not in DRIVERS:
        raise ValueError(f"impl: {impl!r} is not a CUDA C implementation counted here ({', '.join(DRIVERS)})")
    r = inputs["r"]
    if r.device.type != "cpu" or r.shape[-1] != 64:
        raise ValueError(f"r: the host emulation runs CPU tensors with head size N=64, got {r.device} N={r.shape[-1]}")
    grads = [n for n, t in inputs.items() if isinstance(t, torch.Tensor) and t.requires_grad]
    if dy is not None and (out is not None or not grads):
        raise ValueError("dy: a training step needs inputs that require grad, and no out=")
    driver = TRAIN_DRIVERS[impl] if dy is not None else DRIVERS[impl]
    lib, counter = load(driver)
    count, fp = KernelCount(), Footprint()
    io = [t for t in (*inputs.values(), out) if isinstance(t, torch.Tensor)]
    for t in (*io, *([] if dy is None else [dy])):
        fp.add(t)
    if impl == "cupy_cuda":
        inner = _launch.CupyLauncher(train=lib) if dy is not None else _launch.CupyLauncher(fwd=lib)
    else:
        inner = _launch.CatflipLauncher(lib)
    launcher = CountingLauncher(inner, [counter], fp, count)
    with contextlib.nullcontext() if dy is not None else torch.no_grad(), _Ops(fp, count):
        res = _call(impl, inputs, out, launcher)
        if dy is not None:
            res = torch.autograd.grad(res, [inputs[n] for n in grads], dy)
    ranges = [_span(t) for t in io if t.numel()]
    count.distinct_load_bytes, count.distinct_store_bytes = fp.distinct(0), fp.distinct(1)
    count.io_distinct_bytes = fp.distinct(2, ranges)
    return res, count


def _call(impl: str, inputs: dict, out, launcher) -> torch.Tensor:
    """The implementation's own Python with ``launcher``: cupy_cuda's launch plan (inference) or its
    autograd Function (training), at the SM count it assumes without a GPU; catflip's construction."""
    from wkvbench.impls import _gpu, bi_wkv7_catflip
    from wkvbench.impls.bi_wkv7_cupy import fwd, train

    if impl == "audiorwkv_catflip":
        return bi_wkv7_catflip.catflip(**inputs, launcher=launcher, out=out)
    x = [inputs[n] for n in ("r", "w", "k", "v", "a", "b")]
    g = inputs.get("g")
    if _gpu.training_call(out, *x, g):
        return train.bi_wkv7_train(*x, g, launcher=launcher, num_sms=_gpu.DEFAULT_SMS)
    plan = fwd.launch_plan(*x, g, out=out, num_sms=_gpu.DEFAULT_SMS)
    launcher(fwd.kernel_name(x[0].dtype, 64, plan.split), plan.grid, plan.block, plan.args, torch.device("cpu"))
    return plan.y
