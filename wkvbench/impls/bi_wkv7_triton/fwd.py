"""The Bi-WKV7 forward kernels in Triton: the recurrent kernel, the chunked kernel, their configs and launches.

Both kernels run both scan directions and the gate merge in one launch; with ``save=True`` (the
training forward) they also write the fp32 16-token chunk-entry states the backwards read.
Algorithms, merge protocol, configs and traffic: docs/notes/triton_bi_wkv7.md.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wkvbench.impls import _gpu
from wkvbench.impls.bi_wkv7_triton.common import _OUT_KIND, HAS_TRITON, HEAD_SIZES, TL_PTR, _next_pow2, tl, triton
from wkvbench.registry import ALL_DTYPES

CHUNK_LENS = (16, 32, 64)


RECURRENT_BLOCKS = (4, 8, 16)
CHUNKED_BLOCKS = (8, 16, 32, 64)


def recurrent_config(B: int, H: int, sms: int = _gpu.DEFAULT_SMS) -> dict:
    """Value-block size of the recurrent kernel: >= 4 one-warp programs per SM when the shape allows."""
    nvb = min(16, max(4, _next_pow2(-(-4 * sms // (B * H)))))
    return {"BV": 64 // nvb, "num_warps": 1}


def _chunked_warps(BV: int, exact: bool, save: bool = False) -> int:
    """4 warps (<= 255 registers, no spills, 2 programs per SM); 8 where 4 would spill at sm_90."""
    return 8 if (BV == 64 or exact or (save and BV == 32)) else 4


def chunked_blocks(exact: bool, tc: bool = False) -> tuple[int, ...]:
    """Value-block sizes the chunked kernel launches (float32-exact BV = 64 spills at sm_90, and so
    does 3xTF32 (``tc``) BV = 8)."""
    blocks = CHUNKED_BLOCKS[:-1] if exact else CHUNKED_BLOCKS
    return tuple(bv for bv in blocks if bv != 8) if exact and tc else blocks


def chunked_config(B: int, H: int, sms: int = _gpu.DEFAULT_SMS, exact: bool = False, tc: bool = False) -> dict:
    """Chunk length, value block and warps of the chunked kernel.

    The most value blocks (parallelism) whose ``2 B H N / BV`` programs still run in one wave
    (2 resident programs per SM at 4 warps, 1 at 8 warps: both use ~250 registers a thread);
    if none fits, the largest block (the least duplicated key-side work, so the least total work).
    """
    blocks = chunked_blocks(exact, tc)
    for BV in blocks:
        warps = _chunked_warps(BV, exact)
        if 2 * B * H * (64 // BV) <= (2 if warps == 4 else 1) * sms:
            return {"L": 16, "BV": BV, "num_warps": warps}
    return {"L": 16, "BV": blocks[-1], "num_warps": _chunked_warps(blocks[-1], exact)}


if HAS_TRITON:
    from wkvbench.impls.bi_wkv7_triton.common import (
        _exp,
        _head_prologue,
        _hi_dot,
        _lo_dot,
        _to_out,
        _unit_lower_inverse,
    )

    # ------------------------------------------------------------------------------ recurrent
    @triton.jit
    def _rec_load(r, w, k, v, a, b, g, base, gbase, t, stride_t, g_st, offs_k, offs_v):
        """Raw inputs of token t (one head): five key vectors [N], v block [BV], gate scalar."""
        off = base + t.to(tl.int64) * stride_t
        rt = tl.load(r + off + offs_k[None, :])
        wt = tl.load(w + off + offs_k[None, :])
        kt = tl.load(k + off + offs_k[None, :])
        at = tl.load(a + off + offs_k[None, :])
        bt = tl.load(b + off + offs_k[None, :])
        vt = tl.load(v + off + offs_v[:, None])
        gt = tl.load(g + gbase + t.to(tl.int64) * g_st).to(tl.float32)
        return rt, wt, kt, at, bt, vt, gt

    @triton.jit
    def _rec_step(S, rt, wt, kt, at, bt, vt):
        """One token of WKV7 on a [BV, N] block of state rows; returns (S_t, y_t[BV])."""
        d = _exp(-_exp(wt.to(tl.float32)))
        sa = tl.sum(S * at.to(tl.float32), axis=1, keep_dims=True)
        S = S * d + sa * bt.to(tl.float32) + vt.to(tl.float32) * kt.to(tl.float32)
        y = tl.sum(S * rt.to(tl.float32), axis=1)
        return S, y

    @triton.jit
    def _save_states(st, Sf, Sr, tf, tr, T, C, pid_bh, BH, offs_v, offs_n, N: tl.constexpr):
        """Training forward: a direction's state where it enters a 16-token chunk, fp32 [2, B, H, C, N, N].

        Forward: before token 16c; reverse: before token min(16c + 15, T - 1) in its scan order.
        """
        tile = offs_v[:, None] * N + offs_n[None, :]
        if tf % 16 == 0:  # a uniform branch: the stores issue once per 16 steps
            tl.store(st + (pid_bh.to(tl.int64) * C + tf // 16) * (N * N) + tile, Sf)
        if (tr % 16 == 15) | (tr == T - 1):
            tl.store(st + ((BH + pid_bh).to(tl.int64) * C + tr // 16) * (N * N) + tile, Sr)

    @triton.jit
    def _bi_wkv7_recurrent_kernel(
        r, w, k, v, a, b, g, y, ws, st, T, H, g_sb, g_st, g_sh,
        N: tl.constexpr, BV: tl.constexpr, OUT_KIND: tl.constexpr, SAVE: tl.constexpr,
    ):  # fmt: skip
        pid_v = tl.program_id(0)
        pid_bh = tl.program_id(1)
        BH = tl.num_programs(1)
        C = (T + 15) // 16
        _, _, stride_t, base, gbase, offs_k = _head_prologue(pid_bh, T, H, g_sb, g_sh, N)
        offs_v = pid_v * BV + tl.arange(0, BV)
        Sf = tl.zeros([BV, N], dtype=tl.float32)
        Sr = tl.zeros([BV, N], dtype=tl.float32)
        zero = pid_v * 0  # a runtime int32 zero: token indices stay tensors in every branch
        # prefetch step 0: forward token 0, reverse token T-1
        rf, wf, kf, af, bf, vf, gf = _rec_load(r, w, k, v, a, b, g, base, gbase, zero, stride_t, g_st, offs_k, offs_v)
        rr, wr, kr, ar, br, vr, gr = _rec_load(
            r, w, k, v, a, b, g, base, gbase, zero + T - 1, stride_t, g_st, offs_k, offs_v
        )
        half_up = (T + 1) // 2
        # first half of the steps: the forward token s and the reverse token T-1-s are both seen
        # for the first time (except the middle token of an odd T): write gated partials.
        for s in range(0, half_up):
            tf = zero + s
            tr = zero + T - 1 - s
            nf = tl.minimum(tf + 1, T - 1)
            nr = tl.maximum(tr - 1, 0)
            rf2, wf2, kf2, af2, bf2, vf2, gf2 = _rec_load(
                r, w, k, v, a, b, g, base, gbase, nf, stride_t, g_st, offs_k, offs_v
            )
            rr2, wr2, kr2, ar2, br2, vr2, gr2 = _rec_load(
                r, w, k, v, a, b, g, base, gbase, nr, stride_t, g_st, offs_k, offs_v
            )
            if SAVE:
                _save_states(st, Sf, Sr, tf, tr, T, C, pid_bh, BH, offs_v, offs_k, N)
            Sf, yf = _rec_step(Sf, rf, wf, kf, af, bf, vf)
            Sr, yr = _rec_step(Sr, rr, wr, kr, ar, br, vr)
            pf = gf * yf
            pr = (1.0 - gr) * yr
            mid = (offs_v * 0 + tf) == tr  # [BV] broadcast of the scalar condition
            off_f = base + tf.to(tl.int64) * stride_t + offs_v
            off_r = base + tr.to(tl.int64) * stride_t + offs_v
            tl.store(ws + off_f, pf, mask=~mid)
            tl.store(ws + off_r, pr, mask=~mid)
            tl.store(y + off_f, _to_out(pf + pr, OUT_KIND), mask=mid)
            rf, wf, kf, af, bf, vf, gf = rf2, wf2, kf2, af2, bf2, vf2, gf2
            rr, wr, kr, ar, br, vr, gr = rr2, wr2, kr2, ar2, br2, vr2, gr2
        tl.debug_barrier()  # every workspace write above precedes every read below (one CTA)
        for s in range(half_up, T):
            tf = zero + s
            tr = zero + T - 1 - s
            nf = tl.minimum(tf + 1, T - 1)
            nr = tl.maximum(tr - 1, 0)
            rf2, wf2, kf2, af2, bf2, vf2, gf2 = _rec_load(
                r, w, k, v, a, b, g, base, gbase, nf, stride_t, g_st, offs_k, offs_v
            )
            rr2, wr2, kr2, ar2, br2, vr2, gr2 = _rec_load(
                r, w, k, v, a, b, g, base, gbase, nr, stride_t, g_st, offs_k, offs_v
            )
            if SAVE:
                _save_states(st, Sf, Sr, tf, tr, T, C, pid_bh, BH, offs_v, offs_k, N)
            Sf, yf = _rec_step(Sf, rf, wf, kf, af, bf, vf)
            Sr, yr = _rec_step(Sr, rr, wr, kr, ar, br, vr)
            off_f = base + tf.to(tl.int64) * stride_t + offs_v
            off_r = base + tr.to(tl.int64) * stride_t + offs_v
            of = tl.load(ws + off_f, cache_modifier=".cg")
            orv = tl.load(ws + off_r, cache_modifier=".cg")
            tl.store(y + off_f, _to_out(gf * yf + of, OUT_KIND))
            tl.store(y + off_r, _to_out((1.0 - gr) * yr + orv, OUT_KIND))
            rf, wf, kf, af, bf, vf, gf = rf2, wf2, kf2, af2, bf2, vf2, gf2
            rr, wr, kr, ar, br, vr, gr = rr2, wr2, kr2, ar2, br2, vr2, gr2

    # ------------------------------------------------------------------------------ chunked
    @triton.jit
    def _chunk_load(r, w, k, v, a, b, g, base, gbase, c, dirn, T, stride_t, g_st, offs_l, offs_n, offs_v,
                    L: tl.constexpr):  # fmt: skip
        """Raw inputs of chunk c in processing order (reversed rows for the reverse direction)."""
        tok = c * L + offs_l + dirn * (L - 1 - 2 * offs_l)
        valid = tok < T
        off = base + tok.to(tl.int64) * stride_t
        m2 = valid[:, None]
        rt = tl.load(r + off[:, None] + offs_n[None, :], mask=m2, other=0.0)
        wt = tl.load(w + off[:, None] + offs_n[None, :], mask=m2, other=0.0)
        kt = tl.load(k + off[:, None] + offs_n[None, :], mask=m2, other=0.0)
        at = tl.load(a + off[:, None] + offs_n[None, :], mask=m2, other=0.0)
        bt = tl.load(b + off[:, None] + offs_n[None, :], mask=m2, other=0.0)
        vt = tl.load(v + off[:, None] + offs_v[None, :], mask=m2, other=0.0)
        gt = tl.load(g + gbase + tok.to(tl.int64) * g_st, mask=valid, other=0.0).to(tl.float32)
        return rt, wt, kt, at, bt, vt, gt

    @triton.jit
    def _bi_wkv7_chunked_kernel(
        r, w, k, v, a, b, g, y, ws, cnt, st, T, H, g_sb, g_st, g_sh, C, swap,
        N: tl.constexpr, BV: tl.constexpr, L: tl.constexpr, OUT_KIND: tl.constexpr,
        PREC: tl.constexpr, VKIND: tl.constexpr, SAVE: tl.constexpr,
    ):  # fmt: skip
        pid_v = tl.program_id(0)
        dirn = tl.program_id(1) ^ (swap & 1)  # swap bit 0 flips which direction the grid's first program runs
        hold = swap >> 1  # tests: spins a first ticket holder makes before releasing (0: none)
        pid_bh = tl.program_id(2)
        NVB = tl.num_programs(0)
        _, _, stride_t, base, gbase, offs_n = _head_prologue(pid_bh, T, H, g_sb, g_sh, N)
        offs_l = tl.arange(0, L)
        offs_v = pid_v * BV + tl.arange(0, BV)
        rows = offs_l[:, None]
        cols = offs_l[None, :]
        MID: tl.constexpr = L // 2
        cnt_base = (pid_bh * NVB + pid_v).to(tl.int64) * C
        S = tl.zeros([BV, N], dtype=tl.float32)
        c0 = dirn * (C - 1)
        rt, wt, kt, at, bt, vt, gt = _chunk_load(
            r, w, k, v, a, b, g, base, gbase, c0, dirn, T, stride_t, g_st, offs_l, offs_n, offs_v, L
        )
        for i in range(0, C):
            c = i + dirn * (C - 1 - 2 * i)  # chunk index in time
            cn = tl.minimum(i + 1, C - 1)
            cn = cn + dirn * (C - 1 - 2 * cn)
            rt2, wt2, kt2, at2, bt2, vt2, gt2 = _chunk_load(
                r, w, k, v, a, b, g, base, gbase, cn, dirn, T, stride_t, g_st, offs_l, offs_n, offs_v, L
            )
            tok = c * L + offs_l + dirn * (L - 1 - 2 * offs_l)
            valid = tok < T
            # ---- key side: decays, factored operands (no state involved)
            lg = tl.where(valid[:, None], -_exp(wt.to(tl.float32)), 0.0)  # identity tokens past T
            G = tl.cumsum(lg, axis=0)
            Gm = tl.sum(tl.where(rows <= MID, lg, 0.0), axis=0)  # G at the middle row
            GL = tl.sum(lg, axis=0)
            E = _exp(G - Gm[None, :])  # e^(G_t - G_m), bounded both ways
            Ei = 1.0 / E
            eGm = _exp(Gm)
            eGLm = _exp(GL - Gm)
            r32 = rt.to(tl.float32)
            k32 = kt.to(tl.float32)
            a_m = at.to(tl.float32) * E * _exp(-lg)  # a e^(Gx - Gm)
            b_m = bt.to(tl.float32) * Ei  # b e^(Gm - G)
            k_m = k32 * Ei
            r_m = r32 * E
            Aab = tl.where(rows > cols, _hi_dot(a_m, tl.trans(b_m), None, PREC), 0.0)
            Aak = tl.where(rows > cols, _hi_dot(a_m, tl.trans(k_m), None, PREC), 0.0)
            Arb = tl.where(rows >= cols, _hi_dot(r_m, tl.trans(b_m), None, PREC), 0.0)
            Ark = tl.where(rows >= cols, _hi_dot(r_m, tl.trans(k_m), None, PREC), 0.0)
            Z = _unit_lower_inverse(Aab, L, PREC)
            W = _hi_dot(Z, a_m * eGm[None, :], None, PREC)  # Z (a e^Gx)
            U = _hi_dot(Z, Aak, None, PREC)
            Q = _hi_dot(Arb, W, r_m * eGm[None, :], PREC)  # r e^G + Arb W
            Yv = _hi_dot(Arb, U, Ark, PREC)
            Bd = b_m * eGLm[None, :]  # b e^(GL - G)
            Kd = k_m * eGLm[None, :]
            # ---- state side: the sequential part
            v32 = vt.to(tl.float32)
            St = tl.trans(S)  # [N, BV]
            SA = _lo_dot(U, v32, _hi_dot(W, St, None, PREC), PREC, VKIND)  # [L, BV]
            if SAVE:  # training forward (L = 16): the chunk-entry state, layout as _save_states
                tile = offs_v[:, None] * N + offs_n[None, :]
                tl.store(st + ((dirn * tl.num_programs(2) + pid_bh).to(tl.int64) * C + c) * (N * N) + tile, S)
            Yc = _lo_dot(Yv, v32, _hi_dot(Q, St, None, PREC), PREC, VKIND)
            S = S * _exp(GL)[None, :]
            S = _hi_dot(tl.trans(SA), Bd, S, PREC)
            S = _lo_dot(tl.trans(v32), Kd, S, PREC, VKIND)
            # ---- gated merge with the other direction's program (ticket per [L, BV] tile)
            gf = gt + dirn * (1.0 - 2.0 * gt)  # g for the forward scan, 1 - g for the reverse
            part = Yc * gf[:, None]
            off = base + tok.to(tl.int64)[:, None] * stride_t + offs_v[None, :]
            m2 = valid[:, None]
            cp = cnt + cnt_base + c
            ticket = tl.atomic_add(cp, 1, sem="acq_rel", scope="gpu")
            if ticket == 0:
                tl.store(ws + off, part, mask=m2)
                for _ in range(0, hold):  # tests only: keep the partner waiting
                    tl.atomic_add(cp, 0, sem="relaxed", scope="gpu")
                tl.debug_barrier()  # all threads' partial stores before the releasing atomic
                tl.atomic_add(cp, 2, sem="release", scope="gpu")
            else:
                flag = ticket
                while flag < 3:  # 1: the partner holds its ticket but has not released (3 or 4: done)
                    flag = tl.atomic_add(cp, 0, sem="acquire", scope="gpu")
                if (hold > 0) & (ticket == 1):  # tests only: mark a tile whose second arrival waited (4 -> 8)
                    tl.atomic_add(cp, 4, sem="relaxed", scope="gpu")
                other = tl.load(ws + off, mask=m2, other=0.0, cache_modifier=".cg")
                tl.store(y + off, _to_out(part + other, OUT_KIND), mask=m2)
            rt, wt, kt, at, bt, vt, gt = rt2, wt2, kt2, at2, bt2, vt2, gt2


def _prepare(r, g, out):
    """Output, float32 workspace (``out`` itself for float32 I/O) and gate pointer/strides."""
    B, T, H, N = r.shape
    if N not in HEAD_SIZES:
        raise ValueError(f"r: head size {N} not supported by the Triton kernels (supported: {HEAD_SIZES})")
    out = _gpu.check_out(out, r)
    ws = out if r.dtype == torch.float32 else torch.empty(r.shape, dtype=torch.float32, device=r.device)
    if g is None:  # one 0.5 read with zero strides: no separate kernel variant
        gate, g_strides = torch.full((1,), 0.5, dtype=r.dtype, device=r.device), (0, 0, 0)
    else:
        gate, g_strides = g, (T * H, H, 1)
    return B, T, H, N, out, ws, gate, g_strides


def _saved(r: Tensor, save: bool, ws: Tensor) -> Tensor:
    """The training forward's fp32 ``states [2, B, H, ceil(T/16), N, N]``; without ``save`` the
    workspace (a valid pointer the kernel never writes)."""
    B, T, H, N = r.shape
    return torch.empty(2, B, H, -(-T // 16), N, N, dtype=torch.float32, device=r.device) if save else ws


def bi_wkv7_recurrent(
    r, w, k, v, a, b, g=None, *, out=None, block_v: int | None = None, save: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """Launch the recurrent kernel (both directions and the merge in one launch).

    ``save=True`` (the training forward) returns ``(y, states)``, see :func:`_saved`.
    """
    B, T, H, N, out, ws, gate, gs = _prepare(r, g, out)
    st = _saved(r, save, ws)
    cfg = recurrent_config(B, H, _gpu.sm_count(r.device))
    BV = block_v or (min(cfg["BV"], 8) if save else cfg["BV"])  # BV = 16 with SAVE: 255 registers at sm_90
    if BV not in RECURRENT_BLOCKS:
        raise ValueError(f"block_v: must be one of {RECURRENT_BLOCKS}, got {block_v!r}")
    _bi_wkv7_recurrent_kernel[(N // BV, B * H)](
        r, w, k, v, a, b, gate, out, ws, st, T, H, *gs,
        N=N, BV=BV, OUT_KIND=_OUT_KIND[r.dtype], SAVE=bool(save), num_warps=cfg["num_warps"], num_stages=1,
    )  # fmt: skip
    return (out, st) if save else out


def bi_wkv7_chunked(
    r, w, k, v, a, b, g=None, *, out=None, tf32: bool = False, chunk_len: int | None = None,
    block_v: int | None = None, swap: int = 0, save: bool = False, hold: int = 0, tickets: Tensor | None = None,
    tc: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:  # fmt: skip
    """Launch the chunked kernel. ``tf32`` only changes float32 inputs (TF32 instead of exact dots);
    so does ``tc`` (3xTF32 split dots on tensor cores, float32 accuracy: ``common._hi_dot``).

    ``swap=1`` lets the reverse-direction program of each pair come first in the grid (tests
    use it to exercise both roles of the merge). ``save=True`` (the training forward, L = 16)
    returns ``(y, states)``, see :func:`_saved`. Tests only: ``hold > 0`` makes each tile's first
    ticket holder spin ``hold`` atomics before releasing, so a partner arriving meanwhile takes
    the wait path and marks its tile (ticket 8 instead of 4) in ``tickets``, a caller's zeroed
    int32 buffer of ``B * H * (N / BV) * ceil(T / L)`` tiles.
    """
    B, T, H, N, out, ws, gate, gs = _prepare(r, g, out)
    if save and chunk_len not in (None, 16):
        raise ValueError(f"chunk_len: the training forward saves 16-token chunk states, got {chunk_len!r}")
    st = _saved(r, save, ws)
    if tf32 and tc:
        raise ValueError("tc: 3xTF32 dots and tf32=True exclude each other")
    exact = r.dtype == torch.float32 and not tf32  # tc: the exact variant's blocks and warps (as many registers)
    prec = (2 if tc else 0) if exact else 1
    cfg = chunked_config(B, H, _gpu.sm_count(r.device), exact=exact, tc=tc)
    L = chunk_len or cfg["L"]
    if L not in CHUNK_LENS:
        raise ValueError(f"chunk_len: must be one of {CHUNK_LENS}, got {chunk_len!r}")
    BV = block_v or cfg["BV"]
    if BV not in CHUNKED_BLOCKS:
        raise ValueError(f"block_v: must be one of {CHUNKED_BLOCKS}, got {block_v!r}")
    C = -(-T // L)
    nvb = N // BV
    if not (isinstance(hold, int) and 0 <= hold < 2**30) or swap not in (0, 1):
        raise ValueError(f"hold/swap: expected 0 <= hold < 2**30 and swap in (0, 1), got {hold!r}, {swap!r}")
    if tickets is None:
        tickets = torch.zeros(B * H * nvb * C, dtype=torch.int32, device=r.device)
    elif tickets.dtype != torch.int32 or tickets.numel() != B * H * nvb * C or tickets.device != r.device:
        raise ValueError(f"tickets: expected {B * H * nvb * C} int32 zeros on {r.device}")
    _bi_wkv7_chunked_kernel[(nvb, 2, B * H)](
        r, w, k, v, a, b, gate, out, ws, tickets, st, T, H, *gs, C, int(swap) | (hold << 1),
        N=N, BV=BV, L=L, OUT_KIND=_OUT_KIND[r.dtype], PREC=prec,
        VKIND=2 if r.dtype == torch.float16 else 0, SAVE=bool(save), num_warps=_chunked_warps(BV, exact, save),
        num_stages=1,
    )  # fmt: skip
    return (out, st) if save else out


# ---------------------------------------------------------------------------------- compile report
def kernel_variants() -> list[dict]:
    """Every forward kernel specialisation launched, inference and training (``_compile.triton_compile_rows`` form)."""
    out = []
    for dtype in ALL_DTYPES:
        p = TL_PTR[dtype]
        dt = str(dtype).replace("torch.", "")
        io = {n: p for n in ("r", "w", "k", "v", "a", "b", "g", "y")}
        for BV, save in [(bv, sv) for sv in (False, True) for bv in RECURRENT_BLOCKS if bv <= (8 if sv else 16)]:
            sig = dict(io, ws="*fp32", st="*fp32", T="i32", H="i32", g_sb="i32", g_st="i32",
                       g_sh="i32", N="constexpr", BV="constexpr", OUT_KIND="constexpr", SAVE="constexpr")  # fmt: skip
            const = {"N": 64, "BV": BV, "OUT_KIND": _OUT_KIND[dtype], "SAVE": save}
            out.append(dict(impl="triton_recurrent", fn=_bi_wkv7_recurrent_kernel, signature=sig, constexprs=const,
                            options={"num_warps": 1, "num_stages": 1}, align=True,
                            config=f"{dt} BV={BV} warps=1" + (" save" if save else "")))  # fmt: skip
        for tf32, tc in ((False, False), (True, False), (False, True)) if dtype == torch.float32 else ((False, False),):
            exact = dtype == torch.float32 and not tf32
            prec = (2 if tc else 0) if exact else 1
            for BV, save in [(bv, sv) for sv in (False, True) for bv in chunked_blocks(exact, tc)]:
                sig = dict(io, ws="*fp32", cnt="*i32", st="*fp32", T="i32", H="i32", g_sb="i32",
                           g_st="i32", g_sh="i32", C="i32", swap="i32", N="constexpr", BV="constexpr", L="constexpr",
                           OUT_KIND="constexpr", PREC="constexpr", VKIND="constexpr", SAVE="constexpr")  # fmt: skip
                const = {"N": 64, "BV": BV, "L": 16, "OUT_KIND": _OUT_KIND[dtype], "PREC": prec,
                         "VKIND": 2 if dtype == torch.float16 else 0, "SAVE": save}  # fmt: skip
                nw = _chunked_warps(BV, exact, save)
                dots = ("tf32x3" if tc else "ieee") if exact else ("tf32+fp16" if dtype == torch.float16 else "tf32")
                impl = "triton_chunked_tc" if tc else ("triton_chunked_tf32" if tf32 else "triton_chunked")
                out.append(dict(impl=impl, fn=_bi_wkv7_chunked_kernel,
                                signature=sig, constexprs=const, options={"num_warps": nw, "num_stages": 1},
                                config=f"{dt} L=16 BV={BV} warps={nw} dots={dots}" + (" save" if save else ""),
                                align=True))  # fmt: skip
    return out
