"""Bi-WKV7 as one fused recurrent Numba CUDA kernel: ``numba_cuda``.

The ``bi_wkv7`` op (docs/spec.md section 1): inputs ``[B, T, H, N]`` contiguous, N = 64, gate
``[B, T, H]`` or None (0.5), I/O float32/float16/bfloat16, any T >= 1; state and every
accumulation float32. Algorithm: the fused recurrent class of the official RWKV-7 CUDA kernel
(BlinkDL/RWKV-LM ``wkv7`` forward: a thread owns one value row of the state). For one (batch,
head) the state is ``S[i, j]`` (i value row, j key column) and::

    sa_i    = sum_j S[i, j] a_j
    S[i, j] = S[i, j] d_j + sa_i b_j + v_i k_j,     d_j = exp(-exp(w_j))
    y_i     = sum_j S[i, j] r_j

Rows evolve independently: a thread holds ``S[i, :]`` (64 float32 values in a
``cuda.local.array`` that NVVM keeps in registers) and needs only ``v_i`` and the token's
``r, d, k, a, b``.

Launch geometry: grid ``(64 / R, H, B)``, block ``2R`` threads. Threads ``0..R-1`` run the
forward scan, ``R..2R-1`` the reverse scan, both for value rows ``grp*R .. grp*R+R-1`` of one
(batch, head), in lock-step: at step ``s`` the forward half is at token ``s``, the reverse half
at ``T-1-s`` (no flipped copy). ``R`` in {64, 32, 16} is a launch argument, chosen by
:func:`choose_rows_per_block` so that small batches still cover the SMs.

Staging: each step's ``r, d, k, a, b`` per direction sit in a double-buffered
``cuda.shared.array((2, 2, 5, 64), float32)`` (5,120 bytes) plus the gate in ``(2, 2)``;
step ``s+1`` is loaded into registers before step ``s``'s arithmetic and written to buffer
``(s+1) & 1`` after it (``d`` already as ``exp(-exp(w))``); one ``cuda.syncthreads`` per step.
Race-free: in step ``s`` every thread reads only buffer ``s & 1`` and writes only ``(s+1) & 1``.

Gate merge, fused: the first direction to reach a token (steps with ``2s < T-1``) stores its
gated float32 partial in a workspace ``ws`` laid out like ``y``; the second (``2s > T-1``)
writes ``y = partial + ws`` once, in the I/O dtype. For odd T the middle token is reached by
both in the same step: the forward thread stores, the reverse thread keeps its partial in a
register and finishes after the loop. Each ``ws`` element is written by one thread and read by
one other thread of the same block at least one ``syncthreads`` later; blocks own disjoint
(b, h, rows) sets.

Bytes per element (``es`` bytes each): ``r, w, k, a, b, v`` read once per direction, the gate
once per direction and (b, t, h), ``y`` written once: the op's ``bytes_moved`` floor
``es * (7E + B*T*H)`` for ``E = B*T*H*64`` elements, plus ``8E`` for the workspace round trip.

bfloat16 tensors are viewed as int16 (zero copy), widened exactly by ``bits << 16`` and
narrowed with round-to-nearest-even in the kernel; the dtype handling is spliced into the
kernel source (``_KERNEL_TEMPLATE``). One kernel per I/O dtype, compiled once per process.
Training: with grad mode on and an input requiring grad the call goes through one autograd
Function (:mod:`wkvbench.impls._bi_wkv7_numba_train`, registered ``backward=True``): a training
forward (this kernel's template plus ``sa`` and state-checkpoint writes, same launch) and one
fused backward launch (grid ``(H, B)``, 256 threads: per direction a column and a row group of
64, both directions in lock-step, ``dg`` included, the directions combined by the same parking
merge in fp32, gradients written in the I/O dtype). Saved for backward (:func:`saved_bytes`),
fp32, per (token, head) and direction: ``sa`` 256 B + checkpoints every 16 scan steps (16-bit
I/O: 1280 B in all, 40 B per element of ``y``) or every 8 (float32: 2304 B, 72 B per element
of ``y``), plus the final state when ``T`` is not a multiple; the inputs are kept by reference.
Under ``no_grad`` nothing is saved and ``out=`` works; with a graph ``out=`` is refused.

Devices: ``cuda``, zero copy through ``numba.cuda.as_cuda_array`` on torch's current stream;
``cpu`` only under the Numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``). Design decisions,
compile statistics and GPU predictions: docs/notes/numba_bi_wkv7.md.
"""

from __future__ import annotations

import functools
import inspect
import linecache
import math
import re
import warnings

import numpy as np
import torch

from wkvbench.impls import _gpu
from wkvbench.ops import validate_bi_wkv7
from wkvbench.registry import register_impl

cuda, _IMPORT_ERROR = _gpu.try_import("numba.cuda")  # numba-cuda; None also for a broken CUDA-bindings install
numba, _ = _gpu.try_import("numba") if cuda is not None else (None, "")
nt, _ = _gpu.try_import("numba.types") if cuda is not None else (None, "")
SIMULATOR = cuda is not None and _gpu.numba_simulating()


if SIMULATOR:
    _gpu.numba_simulator_shared_arrays_threadsafe()

N = 64  # head size (the only one compiled)
NVEC = 5  # key-side vectors staged per step and direction: r, d, k, a, b
ROWS_CHOICES = (64, 32, 16)  # value rows per block (per direction), a launch parameter
MAXPER = N // min(ROWS_CHOICES)
KINDS = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
_DTYPES = tuple(KINDS)


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
    return expand_template(_KERNEL_TEMPLATE, kind)


def expand_template(template: str, kind: str) -> str:
    """A kernel template with ``$LD``/``$ST``/``$SMEM_ALIGN`` expanded for I/O ``kind`` (also the training kernels')."""
    key = kind + "_sim" if (SIMULATOR and kind == "bf16") else kind
    lines = []
    template = template.replace("$SMEM_ALIGN", ", alignment=16" if _smem_alignment_supported() else "")
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
    namespace = kernel_namespace()
    exec(compile(src, filename, "exec"), namespace)
    return namespace["bi_wkv7_kernel"]


def kernel_namespace() -> dict:
    """The globals a generated kernel's source runs in."""
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
    return namespace


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
    ok, why = _gpu.nvvm_status()  # without libNVVM no kernel compiles, whatever the driver says
    if not ok:
        return False, f"{why}; {_gpu.NVVM_NEEDS}"
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


def choose_rows_per_block(batch_heads: int, sms: int = _gpu.DEFAULT_SMS) -> int:
    """Value rows per block: the largest of 64/32/16 that gives at least one block per SM, else 16.

    Fewer rows per block multiply the blocks (batch 1 at H = 12: 48 blocks at 16 rows instead
    of 12 at 64) at the price of each block loading the token's key-side vectors itself
    (64/R times the L2 reads of r, w, k, a, b).
    """
    for R in ROWS_CHOICES:
        if batch_heads * (N // R) >= sms:
            return R
    return ROWS_CHOICES[-1]


def saved_bytes(B: int, T: int, H: int, N: int = N, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes the training forward saves for the backward (fp32 ``sa`` + checkpoints, both directions)."""
    from wkvbench.impls import _bi_wkv7_numba_train as _train

    return _train.saved_bytes(B, T, H, N, dtype)


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
    backward=True,
    check=_check,
    description="fused recurrent Numba CUDA kernel: a thread per state row, both directions and the gate in one "
    "launch; differentiable (fused backward)",
)
def numba_cuda(r, w, k, v, a, b, g=None, *, out=None, rows_per_block: int | None = None):
    """Fused recurrent Numba CUDA kernel: a thread per state row, both directions and the gate in one launch.

    With grad mode on and an input requiring grad, the output carries an autograd graph (training
    forward saving ``sa`` and checkpoints, fused backward; ``out=`` is then refused); otherwise
    the inference kernel runs and nothing is saved.
    """
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
    train = _gpu.training_call(out, r, w, k, v, a, b, g)
    out = None if train else _gpu.check_out(out, r)
    if rows_per_block is None:
        R = choose_rows_per_block(B * H, _gpu.sm_count(dev))
    elif rows_per_block in ROWS_CHOICES:
        R = rows_per_block
    else:
        raise ValueError(f"rows_per_block: must be one of {ROWS_CHOICES}, got {rows_per_block!r}")
    if B > 65535 or H > 65535:
        raise ValueError(f"r: batch {B} and heads {H} must each be <= 65535 (CUDA grid y/z limit)")
    if train:
        from wkvbench.impls import _bi_wkv7_numba_train as _train

        return _train.BiWKV7Numba.apply(r, w, k, v, a, b, g, R)
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
def compile_report(cc: int = 90) -> list[dict]:
    """Compile the kernels of every I/O dtype for ``sm_<cc>`` without a GPU; resource use per kernel.

    Inference, training forward and backward kernels (:mod:`wkvbench.impls._bi_wkv7_numba_train`).

    Must run without ``NUMBA_ENABLE_CUDASIM`` (the caller uses a clean subprocess). PTX comes from
    ``numba.cuda.compile_ptx`` (libNVVM, and NVRTC for the target check); registers, shared memory
    and spills from ``ptxas -v`` when a ptxas is found (else only the PTX-declared memory). A
    missing numba-cuda, libNVVM or NVRTC gives a ``skipped`` row naming what brings it.
    """
    if cuda is None:
        return _gpu.skipped_rows(["numba_cuda"], _gpu.ToolMissing.extra("numba", _IMPORT_ERROR))
    if SIMULATOR:
        raise RuntimeError("compile_report needs NUMBA_ENABLE_CUDASIM unset (run it in a clean subprocess)")
    return _gpu.report_or_skip(["numba_cuda"], lambda: _compile_rows(cc))


def _compile_rows(cc: int) -> list[dict]:
    ok, why = _gpu.nvvm_status()
    if not ok:
        raise _gpu.ToolMissing(_gpu.NVVM_NEEDS, why)
    _gpu.nvrtc_version()  # numba-cuda checks the target against NVRTC's list
    from importlib.metadata import version

    try:
        nc = f"numba-cuda {version('numba-cuda')}"
    except Exception:
        nc = f"numba {numba.__version__}"
    ptxas = _gpu.find_ptxas()
    ptxas_name = f"ptxas {_gpu.tool_release(ptxas)}" if ptxas else ""
    from wkvbench.impls import _bi_wkv7_numba_train as _train

    rows_r = "/".join(map(str, ROWS_CHOICES))
    dtypes = {kind: str(dtype).replace("torch.", "") for dtype, kind in KINDS.items()}
    todo = [
        ("bi_wkv7_kernel", kind, _kernel_function(kind), _signature(kind), (2 * 2 * NVEC * N + 4) * 4, "2R", None)
        for kind in KINDS.values()
    ]
    rows = []
    for name, kind, fn, sig, shared, block, bounds in todo + _train.report_kernels():
        ptx, _ = cuda.compile_ptx(fn, sig, cc=(cc // 10, cc % 10), launch_bounds=bounds)
        row = {
            "impl": "numba_cuda",
            "kernel": name,
            "config": f"dtype={dtypes[kind]} N={N} "
            + (f"R={rows_r} ({block} thr)" if block == "2R" else f"block={block} (H, B) grid"),
            "registers": None,
            "shared_bytes": shared,
            "local_bytes": sum(int(x) for x in re.findall(r"\.local \.align \d+ \.b8 \S+\[(\d+)\]", ptx)),
            "compiler": nc,
        }
        if ptxas is not None:
            entries = [st for st in _gpu.parse_ptxas(_gpu.run_ptxas(ptxas, ptx, cc)).values() if st["registers"]]
            if len(entries) != 1:
                raise RuntimeError(f"ptxas -v: expected one kernel with a register count, found {len(entries)}")
            row.update(_gpu.resource_row(entries[0]), compiler=f"{nc} + {ptxas_name}")
        rows.append(row)
    return rows
