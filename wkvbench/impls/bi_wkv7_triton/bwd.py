"""The per-token Bi-WKV7 backward in Triton (``triton_recurrent``'s), from the training forward's chunk states.

One launch, grid ``(N / BV, 2, B * H)``, computes ``dr, dw, dk, dv, da, db`` (both directions
summed) and ``dg``. A program walks its direction's 16-token chunks in reverse scan order:
recomputes the chunk's forward from its saved entry state (keeping ``sa`` and the state after
position 7), then steps back through it, rebuilding earlier states by division and re-seeding at
positions 8 and 0. Partials meet in zeroed fp32 buffers via ``tl.atomic_add``. The step
equations and why recompute and re-seed: docs/notes/triton_bi_wkv7.md ("Training").
"""

from __future__ import annotations

import torch

from wkvbench.impls import _gpu
from wkvbench.impls.bi_wkv7_triton.common import HAS_TRITON, TL_PTR, tl, triton

CHUNK = 16  # tokens per saved state (the layout the chunked backward shares)
MID = 8  # the re-seed position inside a chunk
BLOCKS = (16, 32, 64)


def backward_config(B: int, H: int, sms: int) -> dict:
    """Value block and warps: the largest block (fewest atomics; deterministic at 64) with >= 1 program per SM."""
    for BV in BLOCKS[::-1]:
        if 2 * B * H * (64 // BV) >= sms:
            break
    return {"BV": BV, "num_warps": warps(BV)}


def warps(BV: int) -> int:
    """Warps per program: 4 up to BV = 32, 8 at 64 (sm_90: 160-245 registers, no spills; 2 warps at BV = 16: 255)."""
    return {16: 4, 32: 4, 64: 8}[BV]


if HAS_TRITON:
    from wkvbench.impls.bi_wkv7_triton.common import _exp, _head_prologue

    @triton.jit
    def _tok_load(r, w, k, v, a, b, g, base, gbase, t, T, stride_t, g_st, offs_n, offs_v):
        """Inputs of token t as float32 (identity token, d = 1, when t >= T); t is clamped for the address."""
        tc = tl.minimum(t, T - 1)
        off = base + tc.to(tl.int64) * stride_t
        ok = t < T
        rt = tl.where(ok, tl.load(r + off + offs_n).to(tl.float32), 0.0)
        wt = tl.load(w + off + offs_n).to(tl.float32)
        kt = tl.where(ok, tl.load(k + off + offs_n).to(tl.float32), 0.0)
        at = tl.where(ok, tl.load(a + off + offs_n).to(tl.float32), 0.0)
        bt = tl.where(ok, tl.load(b + off + offs_n).to(tl.float32), 0.0)
        vt = tl.where(ok, tl.load(v + off + offs_v).to(tl.float32), 0.0)
        ew = _exp(wt)
        d = tl.where(ok, _exp(-ew), 1.0)
        gt = tl.load(g + gbase + tc.to(tl.int64) * g_st).to(tl.float32)
        return rt, ew, d, kt, at, bt, vt, gt

    @triton.jit
    def _fwd_pos(S, SAc, p, r, w, k, v, a, b, g, base, gbase, t, T, stride_t, g_st, offs_n, offs_v, rows):
        """One recomputed forward token (position p of the chunk): S advanced, ``sa`` put in row p of SAc."""
        rt, ew, d, kt, at, bt, vt, gt = _tok_load(
            r, w, k, v, a, b, g, base, gbase, t, T, stride_t, g_st, offs_n, offs_v
        )
        sa = tl.sum(S * at[None, :], axis=1)
        SAc = tl.where(rows == p, sa[None, :], SAc)
        S = S * d[None, :] + sa[:, None] * bt[None, :] + vt[:, None] * kt[None, :]
        return S, SAc

    @triton.jit
    def _bi_wkv7_bwd_kernel(
        r, w, k, v, a, b, g, dy, st, dr, dw, dk, dv, da, db, dg, T, H, g_sb, g_st, g_sh,
        N: tl.constexpr, BV: tl.constexpr, HAS_G: tl.constexpr,
    ):  # fmt: skip
        L: tl.constexpr = 16
        HALF: tl.constexpr = 8
        pid_v = tl.program_id(0)
        dirn = tl.program_id(1)
        pid_bh = tl.program_id(2)
        BH = tl.num_programs(2)
        C = (T + L - 1) // L
        bidx, h, stride_t, base, gbase, offs_n = _head_prologue(pid_bh, T, H, g_sb, g_sh, N)
        offs_v = pid_v * BV + tl.arange(0, BV)
        tile = offs_v[:, None] * N + offs_n[None, :]
        rows = tl.arange(0, L)[:, None]
        zn = offs_n * 0
        zv = offs_v * 0
        sgn = 1.0 - 2.0 * dirn  # dg = dy . (y_fwd - y_rev)
        ck0 = st + (dirn * BH + pid_bh).to(tl.int64) * C * (N * N)
        dS = tl.zeros([BV, N], dtype=tl.float32)
        for i in range(0, C):
            c = (C - 1 - i) + dirn * (2 * i - (C - 1))  # chunk in time: last in scan order first
            t0 = c * L + dirn * (L - 1)  # token of position 0; position p is t0 + p * step
            step = 1 - 2 * dirn
            # ---- 1. recompute the chunk from its entry checkpoint: sa of every position, S after 7 and 15
            S = tl.load(ck0 + c.to(tl.int64) * (N * N) + tile)
            SAc = tl.zeros([L, BV], dtype=tl.float32)
            for p in range(0, HALF):
                S, SAc = _fwd_pos(S, SAc, p, r, w, k, v, a, b, g, base, gbase, t0 + p * step, T, stride_t, g_st,
                                  offs_n, offs_v, rows)  # fmt: skip
            Smid = S
            for p in range(HALF, L):
                S, SAc = _fwd_pos(S, SAc, p, r, w, k, v, a, b, g, base, gbase, t0 + p * step, T, stride_t, g_st,
                                  offs_n, offs_v, rows)  # fmt: skip
            # ---- 2. the backward over positions 15..0
            for pp in range(0, L):
                p = L - 1 - pp
                t = t0 + p * step
                rt, ew, d, kt, at, bt, vt, gt = _tok_load(
                    r, w, k, v, a, b, g, base, gbase, t, T, stride_t, g_st, offs_n, offs_v
                )
                ok = t < T
                tc = tl.minimum(t, T - 1).to(tl.int64)
                off_n = base + tc * stride_t + offs_n
                off_v = base + tc * stride_t + offs_v
                dyt = tl.where(ok, tl.load(dy + off_v).to(tl.float32), 0.0)
                sat = tl.sum(tl.where(rows == p, SAc, 0.0), axis=0)
                gp = gt + dirn * (1.0 - 2.0 * gt)  # g forward, 1 - g reverse
                q = tl.sum(S * dyt[:, None], axis=0)  # S_t^T dy
                dS += (gp * dyt)[:, None] * rt[None, :]
                dvt = tl.sum(dS * kt[None, :], axis=1)
                dkt = tl.sum(dS * vt[:, None], axis=0)
                dbt = tl.sum(dS * sat[:, None], axis=0)
                dsa = tl.sum(dS * bt[None, :], axis=1)
                Sp = (S - vt[:, None] * kt[None, :] - sat[:, None] * bt[None, :]) / d[None, :]
                Sp = tl.where((zv[:, None] + p) == HALF, Smid, Sp)
                if p == 0:
                    Sp = tl.load(ck0 + c.to(tl.int64) * (N * N) + tile)
                dat = tl.sum(Sp * dsa[:, None], axis=0)
                dd = tl.sum(dS * Sp, axis=0)
                dS = dS * d[None, :] + dsa[:, None] * at[None, :]
                S = Sp
                mn = (zn + t) < T
                tl.atomic_add(dr + off_n, gp * q, mask=mn, sem="relaxed")
                tl.atomic_add(dk + off_n, dkt, mask=mn, sem="relaxed")
                tl.atomic_add(db + off_n, dbt, mask=mn, sem="relaxed")
                tl.atomic_add(da + off_n, dat, mask=mn, sem="relaxed")
                tl.atomic_add(dw + off_n, -dd * d * ew, mask=mn, sem="relaxed")
                tl.atomic_add(dv + off_v, dvt, mask=(zv + t) < T, sem="relaxed")
                if HAS_G:
                    dgt = sgn * tl.sum(rt * q, axis=0)
                    tl.atomic_add(dg + (bidx.to(tl.int64) * T + tc) * H + h, dgt, mask=ok, sem="relaxed")


def recurrent_backward(r, w, k, v, a, b, g, dy, states, block_v: int | None = None):
    """The per-token backward kernel: ``(dr, dw, dk, dv, da, db, dg or None)`` in the I/O dtype."""
    B, T, H, N = r.shape
    cfg = backward_config(B, H, _gpu.sm_count(r.device))
    BV = block_v or cfg["BV"]
    if BV not in BLOCKS:
        raise ValueError(f"block_v: must be one of {BLOCKS}, got {block_v!r}")
    acc = torch.zeros(6, B, T, H, N, dtype=torch.float32, device=r.device)
    dg = torch.zeros(B, T, H, dtype=torch.float32, device=r.device)
    if g is None:
        gate, gs = torch.full((1,), 0.5, dtype=r.dtype, device=r.device), (0, 0, 0)
    else:
        gate, gs = g, (T * H, H, 1)
    _bi_wkv7_bwd_kernel[(N // BV, 2, B * H)](
        r, w, k, v, a, b, gate, dy, states, *acc, dg, T, H, *gs,
        N=N, BV=BV, HAS_G=g is not None, num_warps=warps(BV), num_stages=1,
    )  # fmt: skip
    grads = tuple(x.to(r.dtype) for x in acc)
    return (*grads, None if g is None else dg.to(g.dtype))


# ---------------------------------------------------------------------------------- compile report
def kernel_variants() -> list[dict]:
    """The backward kernel's specialisations (``_compile.triton_compile_rows`` form)."""
    out = []
    for dtype, p in TL_PTR.items():
        dt = str(dtype).replace("torch.", "")
        sig = {n: p for n in ("r", "w", "k", "v", "a", "b", "g", "dy")}
        sig.update({n: "*fp32" for n in ("st", "dr", "dw", "dk", "dv", "da", "db", "dg")})
        sig.update({n: "i32" for n in ("T", "H", "g_sb", "g_st", "g_sh")})
        sig.update(N="constexpr", BV="constexpr", HAS_G="constexpr")
        for BV in BLOCKS:
            for has_g in (True, False):
                out.append(dict(impl="triton_* (backward)", fn=_bi_wkv7_bwd_kernel, signature=sig,
                                constexprs={"N": 64, "BV": BV, "HAS_G": has_g},
                                options={"num_warps": warps(BV), "num_stages": 1},
                                config=f"{dt} BV={BV} warps={warps(BV)} gate={'yes' if has_g else 'no'}",
                                align=True))  # fmt: skip
    return out
