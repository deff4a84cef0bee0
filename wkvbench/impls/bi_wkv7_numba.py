"""Bi-WKV7 as one fused recurrent Numba CUDA kernel: ``numba_cuda``.

Algorithm: the fused recurrent class of the official RWKV-7 CUDA kernel (BlinkDL/RWKV-LM, ``wkv7``
forward: a thread owns one value row of the state), written here from the recurrence of
CONTRACT section 1; Bi-WKV7 is AudioRWKV's bidirectional merge of a forward and a reverse scan.
For one (batch, head) the state is ``S[i, j]`` (i value row, j key column) and::

    sa_i    = sum_j S[i, j] a_j                     (the row's own projection on a)
    S[i, j] = S[i, j] d_j + sa_i b_j + v_i k_j,     d_j = exp(-exp(w_j))
    y_i     = sum_j S[i, j] r_j

Each row only reads itself, so rows evolve independently: a thread holds ``S[i, :]``, 64 fp32
values in a ``cuda.local.array`` that NVVM keeps in registers (the ``j`` loops have constant
trip counts and unroll; ptxas: 130 registers, 0 bytes stack or spill at sm_90), and needs
only ``v_i`` and the token's five key-side vectors ``r, d, k, a, b``.

Launch geometry: grid ``(64 / R, H, B)``, block ``2R`` threads. Threads ``0..R-1`` run the
forward scan, threads ``R..2R-1`` the reverse scan, both for value rows ``grp*R .. grp*R+R-1``
of head ``h`` of batch ``b``. ``R`` (rows per block) is 64 (one block per head), 32 or 16
(four blocks per head, one warp each), a launch parameter (guarded constant-trip loops keep
the prefetch registers static), chosen by :func:`choose_rows_per_block` so that small batches
still cover the SMs: batch 1 at H = 12 is 48 blocks at R = 16 instead of 12. The two halves
advance in lock-step: at step ``s`` the forward half works on token ``s``, the reverse half on
token ``T-1-s``. No flipped copy is ever made; the reverse half indexes tokens directly.

Staging through shared memory: each step's ``r, d, k, a, b`` (per direction) sit in a double-
buffered ``cuda.shared.array((2, 2, 5, 64), float32)`` (5,120 bytes, 16-byte aligned so the
dot products read it as ``ld.shared.v4``) plus the gate in ``(2, 2)``. The R threads of a
direction load the 320 values of step ``s+1`` into registers before the arithmetic of step
``s`` (so the global loads are in flight during it; lane 0 also loads the gate), compute step
``s`` from buffer ``s & 1``, write the prefetched values into buffer ``(s+1) & 1`` (the decay
already as ``exp(-exp(w))``, computed once per element instead of once per thread) and meet at
one ``cuda.syncthreads`` per step. Race freedom: in step ``s`` every thread reads only buffer
``s & 1`` and writes only buffer ``(s+1) & 1``. Those writes cannot overtake a slower thread's
reads of the same buffer, which happened in step ``s-1``, before the barrier ending step
``s-1``; and they are read in step ``s+1``, after the barrier ending step ``s``.

Gate merge, fused, one fp32 round trip per element: token ``t`` is reached by the forward half
at step ``t`` and by the reverse half at step ``T-1-t``. In steps with ``2s < T-1`` both halves
are the first at their tokens and store the gated partial (``g y_fwd`` or ``(1-g) y_rev``,
fp32) in a workspace ``ws`` laid out like ``y``; in steps with ``2s > T-1`` both are second and
write ``y = partial + ws`` in the I/O dtype, once. For odd T the middle token (``2s = T-1``) is
reached by both in the same step: the forward thread stores its partial, the reverse thread
keeps its own in a register and finishes after the loop. Race freedom: ``ws[b, t, h, i]`` is
written by exactly one thread and read by exactly one other thread of the same block (row
``i``, the other direction) at a strictly later step or after the loop, so at least one
``cuda.syncthreads`` -- which also orders the block's global-memory accesses -- separates the
write from the read. Blocks own disjoint (b, h, rows) sets, so no element is shared between
blocks, and each ``y`` element is written exactly once. The branch on ``2s`` vs ``T-1`` is
the same for both halves of a step, so the forward and reverse threads of a warp (R = 16)
do not diverge.

Bytes moved (``E = B*T*H*64`` elements, ``es`` bytes each): per block, ``r, w, k, a, b`` are
read once per direction (``64/R`` blocks per head read them, the repeats are L2 hits), ``v``
once per direction, the gate once per direction (lane 0), ``y`` written once; the workspace
adds one fp32 write and one fp32 read per element. HBM floor: ``es * (7E + B*T*H)`` (the op's
``bytes_moved``) plus ``8E``.

I/O dtypes: float32; float16 (converted on load and store); bfloat16 handled in-kernel with no
conversion pass: bf16 tensors are viewed as int16 (zero copy), widened exactly by ``bits << 16``
(libdevice ``int_as_float``) and narrowed with round-to-nearest-even on the bit pattern. The
state and every accumulation are fp32. The dtype handling is spliced into the kernel source
(see ``_KERNEL_TEMPLATE``) because numba-cuda compiles helper device functions for the current
device, which :func:`compile_report` does not have. One kernel per I/O dtype, compiled once per
process (explicit signature) and cached.

Devices: ``cuda``, zero copy through ``numba.cuda.as_cuda_array`` (``sync=False``: the launch
goes onto torch's current stream through ``numba.cuda.external_stream``, already ordered after
the producers); ``cpu`` only under the Numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), where
the same kernel body runs on numpy views of the CPU tensors (only the bf16 bit casts use numpy
views instead of libdevice, and the shared array drops ``alignment=``). No warp shuffles.
"""

from __future__ import annotations

import functools
import inspect
import linecache
import math
import os
import re
import shutil
import subprocess
import tempfile
import warnings

import torch

from wkvbench.ops import validate_bi_wkv7
from wkvbench.registry import register_impl

try:  # numba-cuda provides numba.cuda; the import must not take the registry down
    import numba
    import numba.types as nt
    from numba import cuda

    try:
        from numba.cuda.core import config as _numba_config
    except ImportError:  # older numba-cuda: the flag lives on numba.config
        from numba import config as _numba_config
    SIMULATOR = bool(getattr(_numba_config, "ENABLE_CUDASIM", False))
    _IMPORT_ERROR = ""
except Exception as _exc:  # ImportError, or a broken CUDA-bindings install
    numba = None
    nt = None
    cuda = None
    SIMULATOR = False
    _IMPORT_ERROR = f"{type(_exc).__name__}: {_exc}"

import numpy as np


def _make_simulator_shared_arrays_threadsafe() -> None:
    """Work around a race in the CUDA simulator's ``cuda.shared.array`` (numba-cuda <= 0.30).

    The simulator runs one Python thread per CUDA thread and gives every thread of a block the
    same numpy array for a ``cuda.shared.array`` call site by a check-then-set on a dict
    (``FakeCUDAShared.array``) without a lock. When the GIL switches between the check and the
    set, two threads of one block get different arrays: staged values written by one thread are
    never seen by another, which reads whatever ``np.empty`` returned (seen here once as a
    float32 result off by 1.6e-3: stale memory from an earlier bf16 launch). This replaces the
    method by the same logic under a lock, keyed exactly as the original (caller's file, line).
    Real GPUs are unaffected; this runs only when the simulator is on.
    """
    import sys
    import threading

    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    cls = kernelapi.FakeCUDAShared
    if getattr(cls, "_wkvbench_threadsafe", False):
        return
    original = cls.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # dynamic shared memory / unsupported: as before
            return original(self, shape, dtype, alignment)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                if isinstance(dtype, numba.types.Type):
                    dtype = numpy_support.as_dtype(dtype)
                res = np.empty(shape, dtype)
                self._allocations[caller] = res
        return res

    cls.array = array
    cls._wkvbench_threadsafe = True


if SIMULATOR:
    try:
        _make_simulator_shared_arrays_threadsafe()
    except Exception as _exc:  # a changed simulator layout: keep the original (racy) behaviour
        warnings.warn(f"numba_cuda: could not patch the simulator's shared arrays: {_exc}", stacklevel=1)

N = 64  # head size (the only one compiled)
NVEC = 5  # key-side vectors staged per step and direction: r, d, k, a, b
ROWS_CHOICES = (64, 32, 16)  # value rows per block (per direction), a launch parameter
MAXPER = N // min(ROWS_CHOICES)
KINDS = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
_DTYPES = tuple(KINDS)
_ASSUMED_SMS = 132  # H100 SXM, for the rows-per-block choice when no device can be asked


# ----------------------------------------------------------------------------- the kernel
# The kernel is generated from this template per I/O kind, with $LD(x, i) (load as fp32) and
# $ST(x, i, f) (store fp32 f) expanded inline. Helper device functions would need a current
# GPU to compile (numba-cuda compiles them for the current device), which compile_report has
# not, so the dtype handling is spliced into the source instead.
_KERNEL_TEMPLATE = """
def bi_wkv7_kernel(r, w, k, v, a, b, g, has_g, out, ws, T, H, R):
    grp = cuda.blockIdx.x
    h = cuda.blockIdx.y
    bb = cuda.blockIdx.z
    tid = cuda.threadIdx.x
    dirn = tid // R  # 0: forward half, 1: reverse half
    lane = tid - dirn * R
    i = grp * R + lane  # the value row this thread owns
    PER = N // R  # elements of each staged vector this thread loads per step (<= MAXPER)
    sm = cuda.shared.array(shape=(2, 2, NVEC, N), dtype=nt.float32$SMEM_ALIGN)
    S = cuda.local.array(N, dtype=nt.float32)
    smg = cuda.shared.array(shape=(2, 2), dtype=nt.float32)  # the gate of the staged step
    pre = cuda.local.array((NVEC, MAXPER), dtype=nt.float32)
    zero = nt.float32(0.0)
    one = nt.float32(1.0)
    for j in range(N):
        S[j] = zero

    # prologue: stage step 0 (token 0 forward, token T-1 reverse) into buffer 0
    t = (T - 1) * dirn
    base = ((bb * T + t) * H + h) * N
    for q in range(MAXPER):  # constant trip count: unrolled, pre[] stays in registers
        if q < PER:
            j = lane + q * R
            sm[0, dirn, 0, j] = $LD(r, base + j)
            sm[0, dirn, 1, j] = math.exp(-math.exp($LD(w, base + j)))
            sm[0, dirn, 2, j] = $LD(k, base + j)
            sm[0, dirn, 3, j] = $LD(a, base + j)
            sm[0, dirn, 4, j] = $LD(b, base + j)
    if lane == 0:
        smg[0, dirn] = $LD(g, (bb * T + t) * H + h) if has_g else nt.float32(0.5)
    cuda.syncthreads()

    ymid = zero
    preg = nt.float32(0.5)  # the gate when g is None
    for s in range(T):
        cur = s & 1
        t = s + dirn * (T - 1 - 2 * s)  # forward: s, reverse: T-1-s
        base = ((bb * T + t) * H + h) * N
        more = s + 1 < T
        if more:  # prefetch step s+1 into registers; consumed after the arithmetic
            basen = base + (1 - 2 * dirn) * H * N
            for q in range(MAXPER):  # constant trip count: unrolled, pre[] stays in registers
                if q < PER:
                    j = lane + q * R
                    pre[0, q] = $LD(r, basen + j)
                    pre[1, q] = $LD(w, basen + j)
                    pre[2, q] = $LD(k, basen + j)
                    pre[3, q] = $LD(a, basen + j)
                    pre[4, q] = $LD(b, basen + j)
            if lane == 0 and has_g:
                preg = $LD(g, (bb * T + t + 1 - 2 * dirn) * H + h)
        vi = $LD(v, base + i)
        gt = smg[cur, dirn]
        gate = gt if dirn == 0 else one - gt

        # sa = S[i, :] . a  (four partial sums shorten the dependency chain)
        p0 = zero
        p1 = zero
        p2 = zero
        p3 = zero
        for j in range(0, N, 4):
            p0 += S[j] * sm[cur, dirn, 3, j]
            p1 += S[j + 1] * sm[cur, dirn, 3, j + 1]
            p2 += S[j + 2] * sm[cur, dirn, 3, j + 2]
            p3 += S[j + 3] * sm[cur, dirn, 3, j + 3]
        sa = (p0 + p1) + (p2 + p3)

        # S[i, :] = S[i, :] * d + sa * b + v_i * k ;  y_i = S[i, :] . r
        p0 = zero
        p1 = zero
        p2 = zero
        p3 = zero
        for j in range(0, N, 4):
            x0 = S[j] * sm[cur, dirn, 1, j] + sa * sm[cur, dirn, 4, j] + vi * sm[cur, dirn, 2, j]
            x1 = S[j + 1] * sm[cur, dirn, 1, j + 1] + sa * sm[cur, dirn, 4, j + 1] + vi * sm[cur, dirn, 2, j + 1]
            x2 = S[j + 2] * sm[cur, dirn, 1, j + 2] + sa * sm[cur, dirn, 4, j + 2] + vi * sm[cur, dirn, 2, j + 2]
            x3 = S[j + 3] * sm[cur, dirn, 1, j + 3] + sa * sm[cur, dirn, 4, j + 3] + vi * sm[cur, dirn, 2, j + 3]
            S[j] = x0
            S[j + 1] = x1
            S[j + 2] = x2
            S[j + 3] = x3
            p0 += x0 * sm[cur, dirn, 0, j]
            p1 += x1 * sm[cur, dirn, 0, j + 1]
            p2 += x2 * sm[cur, dirn, 0, j + 2]
            p3 += x3 * sm[cur, dirn, 0, j + 3]
        part = gate * ((p0 + p1) + (p2 + p3))

        # fused gate merge: the first direction to reach a token parks its gated partial
        idx = base + i
        if 2 * s < T - 1:
            ws[idx] = part
        elif 2 * s > T - 1:
            $ST(out, idx, part + ws[idx])
        elif dirn == 0:  # odd T, middle token, reached by both now: forward parks
            ws[idx] = part
        else:  # reverse keeps its partial and finishes after the next barrier
            ymid = part

        if more:  # stage step s+1 into the other buffer
            nxt = 1 - cur
            for q in range(MAXPER):  # constant trip count: unrolled, pre[] stays in registers
                if q < PER:
                    j = lane + q * R
                    sm[nxt, dirn, 0, j] = pre[0, q]
                    sm[nxt, dirn, 1, j] = math.exp(-math.exp(pre[1, q]))
                    sm[nxt, dirn, 2, j] = pre[2, q]
                    sm[nxt, dirn, 3, j] = pre[3, q]
                    sm[nxt, dirn, 4, j] = pre[4, q]
            if lane == 0:
                smg[nxt, dirn] = preg
        cuda.syncthreads()

    if dirn == 1 and (T & 1) == 1:  # odd T: the middle token, after the barrier above
        idx = ((bb * T + (T - 1) // 2) * H + h) * N + i
        $ST(out, idx, ymid + ws[idx])
"""

# Load (fp32 value) expressions and store statements per I/O kind. bf16 arrays are int16 views:
# widening is exact (bits << 16); narrowing rounds to nearest even on the bit pattern.
_LOADS = {
    "f32": "{x}[{i}]",
    "f16": "nt.float32({x}[{i}])",
    "bf16": "libdevice.int_as_float(nt.int32(nt.int32({x}[{i}]) << nt.int32(16)))",
    "bf16_sim": "_sim_ld_bf16({x}, {i})",
}
_STORES = {
    "f32": ["{x}[{i}] = {f}"],
    "f16": ["{x}[{i}] = nt.float16({f})"],
    "bf16": [
        "_f = {f}",
        "_u = nt.int64(libdevice.float_as_int(_f)) & 0xFFFFFFFF",
        "_hi = (_u + 0x7FFF + ((_u >> 16) & 1)) >> 16",
        "if _f != _f:",
        "    _hi = nt.int64(0x7FC0)",
        "{x}[{i}] = nt.int16(_hi)",
    ],
    "bf16_sim": ["_sim_st_bf16({x}, {i}, {f})"],
}


def _sim_ld_bf16(x, idx):
    return np.uint32((int(x[idx]) & 0xFFFF) << 16).view(np.float32)


def _sim_st_bf16(x, idx, f):
    f = np.float32(f)
    if f != f:
        hi = 0x7FC0
    else:
        u = int(f.view(np.uint32))
        hi = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    x[idx] = np.uint16(hi).view(np.int16)


def _split_args(text: str) -> list[str]:
    """Split a macro's argument list on top-level commas."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        cur += ch
    parts.append(cur.strip())
    return parts


def _macro_call(line: str, name: str) -> tuple[int, int, list[str]] | None:
    """Locate ``$name(...)`` in ``line``: (start, end, args) or None."""
    start = line.find("$" + name + "(")
    if start < 0:
        return None
    pos, depth = start + len(name) + 2, 1
    while depth:
        depth += {"(": 1, ")": -1}.get(line[pos], 0)
        pos += 1
    return start, pos, _split_args(line[start + len(name) + 2 : pos - 1])


def _smem_alignment_supported() -> bool:
    """Whether this numba-cuda's ``cuda.shared.array`` takes ``alignment=`` (16 lets NVVM emit ld.shared.v4)."""
    if SIMULATOR:  # no cuda.shared outside a simulated kernel, and alignment means nothing there
        return False
    try:
        return "alignment" in inspect.signature(cuda.shared.array).parameters
    except (TypeError, ValueError):
        return False


def kernel_source(kind: str) -> str:
    """The kernel's Python source for I/O ``kind`` (f32, f16, bf16)."""
    if kind not in ("f32", "f16", "bf16"):
        raise ValueError(f"kind: no kernel variant {kind!r}; expected f32, f16 or bf16")
    key = kind + "_sim" if (SIMULATOR and kind == "bf16") else kind
    lines = []
    template = _KERNEL_TEMPLATE.replace("$SMEM_ALIGN", ", alignment=16" if _smem_alignment_supported() else "")
    for line in template.splitlines():
        while (m := _macro_call(line, "LD")) is not None:
            x, i = m[2]
            line = line[: m[0]] + _LOADS[key].format(x=x, i=i) + line[m[1] :]
        m = _macro_call(line, "ST")
        if m is not None:
            indent = line[: m[0]]
            x, i, f = m[2]
            lines.extend(indent + st.format(x=x, i=i, f=f) for st in _STORES[key])
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def _kernel_function(kind: str):
    """The (uncompiled) Python kernel function for I/O ``kind``."""
    src = kernel_source(kind)
    filename = f"<wkvbench numba bi_wkv7_kernel {kind}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)  # readable tracebacks
    namespace = {
        "cuda": cuda,
        "nt": nt,
        "math": math,
        "np": np,
        "N": N,
        "NVEC": NVEC,
        "MAXPER": MAXPER,
        "_sim_ld_bf16": _sim_ld_bf16,
        "_sim_st_bf16": _sim_st_bf16,
    }
    if not SIMULATOR:
        from numba.cuda import libdevice

        namespace["libdevice"] = libdevice
    exec(compile(src, filename, "exec"), namespace)
    return namespace["bi_wkv7_kernel"]


def _signature(kind: str):
    io = {"f32": nt.float32, "f16": nt.float16, "bf16": nt.int16}[kind]
    arr = io[::1]
    return nt.void(arr, arr, arr, arr, arr, arr, arr, nt.int32, arr, nt.float32[::1], nt.int64, nt.int64, nt.int64)


@functools.cache
def _kernel(kind: str):
    """The compiled (or simulated) kernel for I/O ``kind``: built once per process."""
    fn = _kernel_function(kind)
    if SIMULATOR:
        return cuda.jit(fn)
    return cuda.jit(_signature(kind))(fn)


# ----------------------------------------------------------------------------- launching
def _check(device: torch.device) -> tuple[bool, str]:
    if cuda is None:
        return False, f"numba-cuda not installed ({_IMPORT_ERROR})"
    if device.type == "cpu":
        if not SIMULATOR:
            return False, "CPU needs NUMBA_ENABLE_CUDASIM=1 (wkvbench --interpret)"
        return True, "ok"
    if SIMULATOR:
        return False, "NUMBA_ENABLE_CUDASIM=1 is set: numba runs the CPU simulator, not the GPU"
    try:
        if not cuda.is_available():
            return False, "numba-cuda sees no CUDA device"
    except Exception as exc:
        return False, f"numba-cuda cannot reach the GPU: {exc}"
    return True, "ok"


@functools.cache
def _device_ok(device_type: str, index: int | None) -> tuple[bool, str]:
    """``_check`` once per device: the launch path does not ask the driver on every call."""
    return _check(torch.device(device_type, index))


@functools.cache
def _sm_count(index: int) -> int:
    try:
        with cuda.gpus[index]:
            return int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
    except Exception:
        return _ASSUMED_SMS


def choose_rows_per_block(batch_heads: int, sms: int = _ASSUMED_SMS) -> int:
    """Value rows per block: the largest of 64/32/16 that gives at least one block per SM, else 16.

    Fewer rows per block multiply the blocks (batch 1 at H = 12: 48 blocks at 16 rows instead
    of 12 at 64) at the price of each block loading the token's key-side vectors itself
    (64/R times the L2 reads of r, w, k, a, b).
    """
    for R in ROWS_CHOICES:
        if batch_heads * (N // R) >= sms:
            return R
    return ROWS_CHOICES[-1]


def _flat(x: torch.Tensor, kind: str) -> torch.Tensor:
    return (x.view(torch.int16) if kind == "bf16" else x).reshape(-1)


@register_impl(
    "bi_wkv7",
    name="numba_cuda",
    backend="numba",
    devices=("cuda", "cpu"),
    dtypes=_DTYPES,
    head_sizes=(N,),
    priority=15,
    check=_check,
    description="fused recurrent Numba CUDA kernel: a thread per state row, both directions and the gate in one launch",
)
def numba_cuda(r, w, k, v, a, b, g=None, *, out=None, rows_per_block: int | None = None):
    """Fused recurrent Numba CUDA kernel: a thread per state row, both directions and the gate in one launch."""
    if cuda is None:
        raise RuntimeError(f"numba_cuda: numba-cuda is not installed ({_IMPORT_ERROR})")
    # shapes, dtypes and devices of the inputs and the gate: the op's own validation (no value checks)
    validate_bi_wkv7(r, w, k, v, a, b, g, check_values=False)
    B, T, H, n = r.shape
    if n != N:
        raise ValueError(f"r: head size {n} not supported by numba_cuda (compiled for N = {N})")
    if r.dtype not in KINDS:
        raise TypeError(f"r: dtype {r.dtype} not supported by numba_cuda; use float32, float16 or bfloat16")
    kind = KINDS[r.dtype]
    dev = r.device
    ok, why = _device_ok(dev.type, dev.index)
    if not ok:
        raise ValueError(f"r: numba_cuda cannot run on {dev}: {why}")
    if out is None:
        out = torch.empty_like(r)
    elif tuple(out.shape) != tuple(r.shape) or out.dtype != r.dtype or out.device != dev or not out.is_contiguous():
        raise ValueError(
            f"out: expected a contiguous {r.dtype} tensor of shape {tuple(r.shape)} on {dev}, "
            f"got {out.dtype} {tuple(out.shape)} on {out.device}"
        )
    if rows_per_block is None:
        R = choose_rows_per_block(B * H, _ASSUMED_SMS if dev.type == "cpu" else _sm_count(dev.index or 0))
    elif rows_per_block in ROWS_CHOICES:
        R = rows_per_block
    else:
        raise ValueError(f"rows_per_block: must be one of {ROWS_CHOICES}, got {rows_per_block!r}")
    if B > 65535 or H > 65535:
        raise ValueError(f"r: batch {B} and heads {H} must each be <= 65535 (CUDA grid y/z limit)")
    has_g = 0 if g is None else 1
    gg = torch.empty(1, dtype=r.dtype, device=dev) if g is None else g
    ws = torch.empty(B * T * H * N, dtype=torch.float32, device=dev)
    tensors = [_flat(x, kind) for x in (r, w, k, v, a, b, gg)]
    grid, block = (N // R, H, B), 2 * R
    kern = _kernel(kind)
    if dev.type == "cpu":  # simulator: numpy views share memory with the tensors
        arrs = [x.numpy() for x in tensors]
        kern[grid, block](*arrs, has_g, _flat(out, kind).numpy(), ws.numpy(), T, H, R)
        return out
    with cuda.gpus[dev.index or 0]:
        stream = cuda.external_stream(torch.cuda.current_stream(dev).cuda_stream)
        # sync=False: the kernel runs on torch's own current stream, already ordered after the producers
        arrs = [cuda.as_cuda_array(x, sync=False) for x in (*tensors, _flat(out, kind), ws)]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Gg]rid size.*")  # batch-1 grids are small by design
            kern[grid, block, stream](*arrs[:7], has_g, arrs[7], arrs[8], T, H, R)
    return out


# ----------------------------------------------------------------------------- compile report
def _find_ptxas() -> str | None:
    cands = [os.environ.get("PTXAS", ""), shutil.which("ptxas") or ""]
    nvcc = shutil.which("nvcc") or "/usr/local/bin/nvcc"
    cands.append(os.path.join(os.path.dirname(nvcc), "ptxas"))
    try:
        import triton

        cands.append(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas"))
    except Exception:
        pass
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def _ptxas_stats(ptxas: str, ptx: str, cc: int) -> tuple[dict, str]:
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        proc = subprocess.run(
            [ptxas, f"-arch=sm_{cc}", "-v", "-o", os.path.join(tmp, "k.cubin"), src],
            capture_output=True,
            text=True,
            timeout=120,
        )
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"ptxas failed: {text.strip()[-2000:]}")

    def num(pattern):
        m = re.search(pattern, text)
        return int(m.group(1)) if m else 0

    stats = {
        "registers": num(r"Used (\d+) registers"),
        "shared_bytes": num(r"(\d+) bytes smem"),
        "stack_bytes": num(r"(\d+) bytes stack frame"),
        "spill_stores": num(r"(\d+) bytes spill stores"),
        "spill_loads": num(r"(\d+) bytes spill loads"),
    }
    m = re.search(
        r"Cuda compilation tools, release ([\d.]+)",
        subprocess.run([ptxas, "--version"], capture_output=True, text=True, timeout=60).stdout,
    )
    return stats, (f"ptxas {m.group(1)}" if m else "ptxas")


def compile_report(cc: int = 90) -> list[dict]:
    """Compile the kernel of every I/O dtype for ``sm_<cc>`` without a GPU; resource use per kernel.

    Must run without ``NUMBA_ENABLE_CUDASIM`` (the caller uses a clean subprocess). PTX comes from
    ``numba.cuda.compile_ptx``; registers, shared memory and spills from ``ptxas -v`` when a
    ptxas is found (else only the PTX-declared shared memory is reported).
    """
    if cuda is None:
        raise RuntimeError(f"numba-cuda not installed ({_IMPORT_ERROR})")
    if SIMULATOR:
        raise RuntimeError("compile_report needs NUMBA_ENABLE_CUDASIM unset (run it in a clean subprocess)")
    from importlib.metadata import version

    try:
        nc = f"numba-cuda {version('numba-cuda')}"
    except Exception:
        nc = f"numba {numba.__version__}"
    ptxas = _find_ptxas()
    rows = []
    for dtype, kind in KINDS.items():
        ptx, _ = cuda.compile_ptx(_kernel_function(kind), _signature(kind), cc=(cc // 10, cc % 10))
        row = {
            "impl": "numba_cuda",
            "kernel": "bi_wkv7_kernel",
            "config": f"dtype={str(dtype).replace('torch.', '')} N={N} R={'/'.join(map(str, ROWS_CHOICES))} (2R thr)",
            "registers": None,
            "shared_bytes": (2 * 2 * NVEC * N + 4) * 4,
            "local_bytes": None,
            "compiler": nc,
        }
        if ptxas is not None:
            st, ptxas_name = _ptxas_stats(ptxas, ptx, cc)
            row.update(
                registers=st["registers"],
                shared_bytes=st["shared_bytes"],
                local_bytes=st["stack_bytes"] + st["spill_stores"],
                spill_bytes=st["spill_stores"] + st["spill_loads"],
                compiler=f"{nc} + {ptxas_name}",
            )
        else:
            row["local_bytes"] = sum(int(x) for x in re.findall(r"\.local \.align \d+ \.b8 \S+\[(\d+)\]", ptx))
        rows.append(row)
    return rows
