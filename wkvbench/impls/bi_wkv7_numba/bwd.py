"""The fused Bi-WKV7 backward kernel of ``numba_cuda``: both directions, the gate merge and ``dg`` in one launch.

Grid ``(H, B)``, block ``4N = 256`` threads: per direction a column group (``dr, dw, dk, da, db``)
and a row group (``dv``, ``dsa``, ``dg``), both directions in lock-step, their contributions
combined by the parking merge in fp32. It reads what the training forward (``fwd.py``) saves:
``sa`` and the state checkpoints. Math, ownership and race-freedom: docs/notes/numba_bi_wkv7.md.
"""

from __future__ import annotations

import functools

import torch

from wkvbench.impls import _gpu
from wkvbench.impls.bi_wkv7_numba import common
from wkvbench.impls.bi_wkv7_numba.common import N, io_array, jit, launch, nt

KERNEL = "bi_wkv7_bwd_kernel"
NSTAGE = 9  # vectors staged per step and direction in the backward: r, d, k, v, a, b, dy, gate*dy, sa
BWD_THREADS = 4 * N  # two directions x (column group + row group)
#: ``(max threads, min blocks per SM)`` for ptxas: the 256-thread block must fit 64K registers.
LAUNCH_BOUNDS = (BWD_THREADS, 1)
#: Static shared memory of a block: the staged vectors of both directions, ``dsa`` and ``r . q``.
SHARED_BYTES = (2 * NSTAGE * N + 4 * N) * 4

_BWD_TEMPLATE = """
def bi_wkv7_bwd_kernel(r, w, k, v, a, b, g, has_g, dy, sa_in, ck, ws, dr, dw, dk, dv, da, db, dg, T, H, CP, NC):
    h = cuda.blockIdx.x
    bb = cuda.blockIdx.y
    E = cuda.gridDim.y * T * H * N  # elements of one [B, T, H, N] tensor
    tid = cuda.threadIdx.x
    dirn = tid // (2 * N)  # 0: the forward scan's backward, 1: the reverse scan's
    col = (tid // N) % 2 == 0  # column group (dr, dw, dk, da, db) or row group (dv, dsa, dg)
    i = tid % N
    st = cuda.shared.array(shape=(2, NSTAGE, N), dtype=nt.float32$SMEM_ALIGN)  # r d k v a b dy dy' sa
    sdsa = cuda.shared.array(shape=(2, N), dtype=nt.float32)
    srq = cuda.shared.array(shape=(2, N), dtype=nt.float32)
    X = cuda.local.array(N, dtype=nt.float32)  # column group: column i of S; row group: row i of dS
    dS = cuda.local.array(N, dtype=nt.float32)  # column group: column i of dS
    zero = nt.float32(0.0)
    one = nt.float32(1.0)
    cbase = ((dirn * cuda.gridDim.y + bb) * H + h) * NC * N * N + i  # column i of this direction's checkpoint 0
    for j in range(N):
        X[j] = zero
        dS[j] = zero
    if col:  # S after the last scan step (the last checkpoint)
        last = cbase + (NC - 1) * N * N
        for j in range(N):
            X[j] = ck[last + j * N]

    for s in range(T):
        u = T - 1 - s  # scan index of this step, both directions
        tt = u + dirn * (s - u)  # the token: u forward, T-1-u = s reverse
        gidx = (bb * T + tt) * H + h
        idx = gidx * N + i
        gt = $LD(g, gidx) if has_g else nt.float32(0.5)
        gate = gt if dirn == 0 else one - gt
        ri = zero
        ki = zero
        ai = zero
        bi = zero
        ew = zero
        di = one
        dygi = zero
        if col:
            ri = $LD(r, idx)
            ki = $LD(k, idx)
            ai = $LD(a, idx)
            bi = $LD(b, idx)
            ew = nt.float32(math.exp($LD(w, idx)))
            di = nt.float32(math.exp(-ew))
            st[dirn, 0, i] = ri
            st[dirn, 2, i] = ki
            st[dirn, 3, i] = $LD(v, idx)
            st[dirn, 4, i] = ai
            st[dirn, 5, i] = bi
        else:
            dyi = $LD(dy, idx)
            dygi = gate * dyi
            st[dirn, 1, i] = nt.float32(math.exp(-nt.float32(math.exp($LD(w, idx)))))
            st[dirn, 6, i] = dyi
            st[dirn, 7, i] = dygi
            st[dirn, 8, i] = sa_in[dirn * E + idx]
        cuda.syncthreads()

        q = zero
        dki = zero
        dbi = zero
        ddi = zero
        dvi = zero
        if col:  # q = S_u^T dy; dS += dy' r^T; dk = dS^T v; db = dS^T sa; S_prev; dd (column i)
            inv_d = one / di
            for j in range(N):
                vj = st[dirn, 3, j]
                saj = st[dirn, 8, j]
                q += X[j] * st[dirn, 6, j]
                dS[j] += st[dirn, 7, j] * ri
                dki += dS[j] * vj
                dbi += dS[j] * saj
                X[j] = (X[j] - vj * ki - saj * bi) * inv_d
                ddi += dS[j] * X[j]
            if u % CP == 0:  # re-seed S_prev: the checkpoint of scan step u-1, or 0 before step 0
                ddi = zero
                if u == 0:
                    for j in range(N):
                        X[j] = zero
                else:
                    prev = cbase + (u // CP - 1) * N * N
                    for j in range(N):
                        X[j] = ck[prev + j * N]
                        ddi += dS[j] * X[j]
            srq[dirn, i] = ri * q
        else:  # row i of dS: dS += dy' r^T; dv = dS k; dsa = dS b; dS = dS diag(d) + dsa a^T
            dsai = zero
            for j in range(N):
                X[j] += dygi * st[dirn, 0, j]
                dvi += X[j] * st[dirn, 2, j]
                dsai += X[j] * st[dirn, 5, j]
            sdsa[dirn, i] = dsai
            for j in range(N):
                X[j] = X[j] * st[dirn, 1, j] + dsai * st[dirn, 4, j]
        cuda.syncthreads()

        g0 = zero  # column group: dr, dw, dk, da, db; row group: dv and (row thread 0) dg
        g1 = zero
        g2 = zero
        g3 = zero
        g4 = zero
        if col:  # da = S_prev^T dsa; dS = dS diag(d) + dsa a^T (column i)
            dai = zero
            for j in range(N):
                dsaj = sdsa[dirn, j]
                dai += X[j] * dsaj
                dS[j] = dS[j] * di + dsaj * ai
            g0 = gate * q
            g1 = ddi * di * -ew
            g2 = dki
            g3 = dai
            g4 = dbi
        else:
            g0 = dvi
            if has_g and i == 0:  # dg = dy . (yf - yb); this direction's share is +-(r . q)
                p = zero
                for j in range(N):
                    p += srq[dirn, j]
                g1 = p if dirn == 0 else -p

        # lock-step merge: the first direction to reach the token parks, the second adds and stores
        mid = 2 * s == T - 1
        first = 2 * s < T - 1 or (mid and dirn == 0)
        if first:
            if col:
                ws[idx] = g0
                ws[E + idx] = g1
                ws[2 * E + idx] = g2
                ws[4 * E + idx] = g3
                ws[5 * E + idx] = g4
            else:
                ws[3 * E + idx] = g0
                if has_g and i == 0:
                    ws[6 * E + gidx] = g1
        if mid:  # both directions are at this token now: the parked values first
            cuda.syncthreads()
        if not first:
            if col:
                $ST(dr, idx, g0 + ws[idx])
                $ST(dw, idx, g1 + ws[E + idx])
                $ST(dk, idx, g2 + ws[2 * E + idx])
                $ST(da, idx, g3 + ws[4 * E + idx])
                $ST(db, idx, g4 + ws[5 * E + idx])
            else:
                $ST(dv, idx, g0 + ws[3 * E + idx])
                if has_g and i == 0:
                    $ST(dg, gidx, g1 + ws[6 * E + gidx])
"""


def kernel_source(kind: str) -> str:
    """Python source of the backward kernel for I/O ``kind`` (f32, f16, bf16)."""
    if kind not in ("f32", "f16", "bf16"):
        raise ValueError(f"kind: no kernel variant {kind!r}; expected f32, f16 or bf16")
    return common.expand_template(_BWD_TEMPLATE, kind)


def _kernel_function(kind: str):
    return common.kernel_function(_BWD_TEMPLATE, KERNEL, kind, NSTAGE=NSTAGE)


def _signature(kind: str):
    io, f32, i64 = io_array(kind), nt.float32[::1], nt.int64
    return nt.void(*[io] * 7, nt.int32, io, f32, f32, f32, *[io] * 7, i64, i64, i64, i64)


@functools.cache
def _kernel(kind: str):
    return jit(_kernel_function(kind), _signature(kind), launch_bounds=LAUNCH_BOUNDS)


def backward(r, w, k, v, a, b, g, dy, sa, ck):
    """The backward launch: ``(dr, dw, dk, dv, da, db, dg)`` in the I/O dtype (``dg`` None without ``g``)."""
    B, T, H, _ = r.shape
    kind, dev = common.KINDS[r.dtype], r.device
    CP = _gpu.checkpoint_tokens(r.dtype)
    E = B * T * H * N
    grads = [torch.empty(r.shape, dtype=r.dtype, device=dev) for _ in range(6)]
    dg = torch.empty((1,) if g is None else g.shape, dtype=r.dtype, device=dev)
    ws = torch.empty(6 * E + B * T * H, dtype=torch.float32, device=dev)
    gg = torch.empty(1, dtype=r.dtype, device=dev) if g is None else g
    args = [*(common._flat_detached(x, kind) for x in (r, w, k, v, a, b, gg)), int(g is not None)]
    args += [common._flat_detached(dy, kind), sa, ck, ws]
    args += [*(common._flat_detached(x, kind) for x in (*grads, dg)), T, H, CP, -(-T // CP)]
    launch(_kernel(kind), (H, B), BWD_THREADS, dev, args)
    return (*grads, None if g is None else dg)
