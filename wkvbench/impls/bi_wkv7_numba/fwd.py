"""The Bi-WKV7 forward kernels of ``numba_cuda``: the inference kernel and the training forward that saves.

One launch runs both scan directions and the gate merge, a thread per state row (grid
``(64 / R, H, B)``, block ``2R``). The training forward is the same template with ``sa`` and
state-checkpoint writes inserted. Algorithm, staging, merge and race-freedom: docs/notes/numba_bi_wkv7.md.
"""

from __future__ import annotations

import functools

import torch

from wkvbench.impls import _gpu
from wkvbench.impls.bi_wkv7_numba.common import (
    KINDS,
    NVEC,
    N,
    _flat,
    _flat_detached,
    expand_template,
    io_array,
    jit,
    kernel_function,
    launch,
    nt,
)

KERNEL = "bi_wkv7_kernel"
SAVE_KERNEL = "bi_wkv7_fwd_save_kernel"
#: Static shared memory of a forward block: the staged vectors of two steps and directions, and the gates.
SHARED_BYTES = (2 * 2 * NVEC * N + 4) * 4


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


def kernel_source(kind: str) -> str:
    """The inference kernel's Python source for I/O ``kind`` (f32, f16, bf16)."""
    if kind not in ("f32", "f16", "bf16"):
        raise ValueError(f"kind: no kernel variant {kind!r}; expected f32, f16 or bf16")
    return expand_template(_KERNEL_TEMPLATE, kind)


# ----------------------------------------------------------------------------- the training forward
# The training forward: the inference template plus three insertions (anchor -> new text). Each
# anchor must occur exactly once, so a changed inference template fails loudly here.
_FWD_SAVE_EDITS = (
    (
        "def bi_wkv7_kernel(r, w, k, v, a, b, g, has_g, out, ws, T, H, R):",
        "def bi_wkv7_fwd_save_kernel(r, w, k, v, a, b, g, has_g, out, ws, T, H, R, sa_out, ck, CP, NC):",
    ),
    (
        "        sa = (p0 + p1) + (p2 + p3)\n",
        "        sa = (p0 + p1) + (p2 + p3)\n"
        "        sa_out[dirn * cuda.gridDim.z * T * H * N + base + i] = sa  # [2, B, T, H, N], token order\n",
    ),
    (
        "        part = gate * ((p0 + p1) + (p2 + p3))\n",
        "        part = gate * ((p0 + p1) + (p2 + p3))\n"
        "        if s % CP == CP - 1 or s == T - 1:  # checkpoint: S after scan step s, row i\n"
        "            cko = (((dirn * cuda.gridDim.z + bb) * H + h) * NC + s // CP) * N * N + i * N\n"
        "            for j in range(N):\n"
        "                ck[cko + j] = S[j]\n",
    ),
)


def fwd_save_template() -> str:
    """The training forward's template: the inference template with the ``sa``/checkpoint writes inserted."""
    src = _KERNEL_TEMPLATE
    for anchor, new in _FWD_SAVE_EDITS:
        if src.count(anchor) != 1:
            raise RuntimeError(f"the inference kernel template changed: anchor {anchor.strip()!r} not found once")
        src = src.replace(anchor, new)
    return src


def _kernel_function(kind: str):
    """The (uncompiled) Python inference kernel for I/O ``kind``."""
    return kernel_function(_KERNEL_TEMPLATE, KERNEL, kind)


def _save_kernel_function(kind: str):
    """The (uncompiled) Python training-forward kernel for I/O ``kind``."""
    return kernel_function(fwd_save_template(), SAVE_KERNEL, kind)


def _signature(kind: str):
    arr = io_array(kind)
    return nt.void(arr, arr, arr, arr, arr, arr, arr, nt.int32, arr, nt.float32[::1], nt.int64, nt.int64, nt.int64)


def _save_signature(kind: str):
    io, f32, i64 = io_array(kind), nt.float32[::1], nt.int64
    return nt.void(*[io] * 7, nt.int32, io, f32, i64, i64, i64, f32, f32, i64, i64)


@functools.cache
def _kernel(kind: str):
    """The compiled (or simulated) inference kernel for I/O ``kind``: built once per process."""
    return jit(_kernel_function(kind), _signature(kind))


@functools.cache
def _save_kernel(kind: str):
    """The compiled (or simulated) training forward for I/O ``kind``: built once per process."""
    return jit(_save_kernel_function(kind), _save_signature(kind))


# ----------------------------------------------------------------------------- launches
def forward(r, w, k, v, a, b, g, out: torch.Tensor, rows_per_block: int) -> torch.Tensor:
    """The inference launch into ``out`` (inputs validated by the caller); returns ``out``."""
    B, T, H, _ = r.shape
    kind, dev = KINDS[r.dtype], r.device
    R = rows_per_block
    has_g = 0 if g is None else 1
    gg = torch.empty(1, dtype=r.dtype, device=dev) if g is None else g
    ws = torch.empty(B * T * H * N, dtype=torch.float32, device=dev)
    args = [*(_flat(x, kind) for x in (r, w, k, v, a, b, gg)), has_g, _flat(out, kind), ws, T, H, R]
    launch(_kernel(kind), (N // R, H, B), 2 * R, dev, args)
    return out


def forward_save(r, w, k, v, a, b, g, rows_per_block: int):
    """Training forward: ``(y, sa, ck)`` (``y`` as the inference kernel's, plus what the backward needs)."""
    B, T, H, _ = r.shape
    kind, dev = KINDS[r.dtype], r.device
    CP = _gpu.checkpoint_tokens(r.dtype)
    NC = -(-T // CP)
    y = torch.empty(r.shape, dtype=r.dtype, device=dev)
    sa = torch.empty(2 * B * T * H * N, dtype=torch.float32, device=dev)
    ck = torch.empty(2 * B * H * NC * N * N, dtype=torch.float32, device=dev)
    ws = torch.empty(B * T * H * N, dtype=torch.float32, device=dev)
    gg = torch.empty(1, dtype=r.dtype, device=dev) if g is None else g
    R = rows_per_block
    args = [*(_flat_detached(x, kind) for x in (r, w, k, v, a, b, gg)), int(g is not None)]
    args += [_flat_detached(y, kind), ws, T, H, R, sa, ck, CP, NC]
    launch(_save_kernel(kind), (N // R, H, B), 2 * R, dev, args)
    return y, sa, ck
