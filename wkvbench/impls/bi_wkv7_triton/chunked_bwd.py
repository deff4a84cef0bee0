"""The chunked (WY / DPLR) backward of Bi-WKV7 in Triton, and the same algorithm in PyTorch.

:func:`chunked_backward` takes the inputs, ``dy`` and the fp32 chunk-entry states of both scan
directions the training forward saves (``states [2, B, H, ceil(T / 16), N, N]``, 32 B per element of
``y``: ``train.saved_bytes``) and returns
``(dr, dw, dk, dv, da, db, dg)`` (``dg`` None when ``g`` is None). Per segment of chunks (at most
:data:`SEGMENTS` per direction), a state kernel walks them in reverse scan order carrying ``dS``, then
three chunk kernels (four with 3xTF32 dots) handle every chunk of the segment, both directions, in
parallel; the directions meet in zeroed fp32 buffers (deterministic). The workspace holds one segment:
~11 B per element for long sequences (:func:`workspace_bytes`; one segment held all 56 B): bf16 training
peak ~84 B per element (17 I/O + 32 saved + 24 fp32 gradients + 11; catflip ~109 B).
:func:`chunked_backward_torch` is the algorithm in PyTorch (tests run it in float64). Derivation,
kernels, memory, accuracy: docs/notes/triton_chunked_backward.md.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wkvbench.impls import _compile
from wkvbench.impls.bi_wkv7_triton.common import _IMPORT_ERROR, HAS_TRITON, TL_PTR, tl, triton

CHUNK = 16
HEAD_SIZE = 64
IMPL = "triton_chunked (backward)"  # rows of the compile report; also triton_chunked_tf32's backward
IMPL_TC = "triton_chunked_tc (backward)"  # the 3xTF32 tensor-core dots (PREC 2)


def _check_args(r, w, k, v, a, b, g, dy, states) -> tuple[int, int, int, int, int]:
    """Shapes and dtypes of :func:`chunked_backward`'s arguments (ValueError, TypeError); returns (B, T, H, N, C)."""
    if not isinstance(r, Tensor) or r.dim() != 4:
        raise ValueError(f"r: expected a [B, T, H, N] tensor, got {getattr(r, 'shape', type(r))}")
    B, T, H, N = r.shape
    if N != HEAD_SIZE:
        raise ValueError(f"r: head size {N} not supported (supported: {HEAD_SIZE})")
    for name, x in (("w", w), ("k", k), ("v", v), ("a", a), ("b", b), ("dy", dy)):
        if not isinstance(x, Tensor) or tuple(x.shape) != tuple(r.shape):
            raise ValueError(f"{name}: expected shape {tuple(r.shape)}, got {getattr(x, 'shape', type(x))}")
        if x.dtype != r.dtype:
            raise TypeError(f"{name}: dtype {x.dtype} differs from r's {r.dtype}")
    if g is not None and (not isinstance(g, Tensor) or tuple(g.shape) != (B, T, H)):
        raise ValueError(f"g: expected shape {(B, T, H)} or None, got {getattr(g, 'shape', type(g))}")
    C = -(-T // CHUNK)
    if not isinstance(states, Tensor) or tuple(states.shape) != (2, B, H, C, N, N):
        raise ValueError(f"states: expected shape {(2, B, H, C, N, N)}, got {getattr(states, 'shape', type(states))}")
    if states.dtype != torch.float32:
        raise TypeError(f"states: must be float32, got {states.dtype}")
    return B, T, H, N, C


# ---------------------------------------------------------------------------------- PyTorch form
def _direction_torch(r, lg, k, v, a, b, gate, dy, S0s, L):
    """Backward of one scan direction; inputs [B, H, C*L, N] in scan order, S0s [B, H, C, N, N] by scan chunk.

    Returns (dr, dlg, dk, dv, da, db) in scan order and the gate term ``p = r . q`` [B, H, C*L].
    """
    B, H, CL, N = r.shape
    C = CL // L
    ones = torch.ones(L, L, dtype=r.dtype, device=r.device)
    incl, strict = ones.tril(), ones.tril(-1)
    eye = torch.eye(L, dtype=r.dtype, device=r.device)
    outs = [torch.zeros_like(r) for _ in range(6)]
    p_all = torch.zeros(B, H, CL, dtype=r.dtype, device=r.device)
    dS = torch.zeros(B, H, N, N, dtype=r.dtype, device=r.device)
    m = L // 2
    T_ = lambda x: x.transpose(-1, -2)  # noqa: E731
    for c in range(C - 1, -1, -1):
        sl = slice(c * L, (c + 1) * L)
        rc, lc, kc, vc, ac, bc, gc, dyc = (x[:, :, sl] for x in (r, lg, k, v, a, b, gate, dy))
        S0 = S0s[:, :, c]
        G = lc.cumsum(2)
        Gm = G[:, :, m : m + 1]
        GL = G[:, :, -1:]
        E = torch.exp(G - Gm)
        eGm, eGLm, eGL = torch.exp(Gm), torch.exp(GL - Gm), torch.exp(GL)
        a_m, b_m, k_m, r_m = ac * E * torch.exp(-lc), bc / E, kc / E, rc * E
        Aab, Aak = (a_m @ T_(b_m)) * strict, (a_m @ T_(k_m)) * strict
        Arb, Ark = (r_m @ T_(b_m)) * incl, (r_m @ T_(k_m)) * incl
        Z = torch.linalg.inv(eye - Aab)
        W, U = Z @ (a_m * eGm), Z @ Aak
        SA = W @ T_(S0) + U @ vc
        Bd, Kd = b_m * eGLm, k_m * eGLm
        dY = gc[..., None] * dyc
        D = T_(Z) @ (T_(Arb) @ dY + Bd @ T_(dS))
        dAab, dAak = (D @ T_(SA)) * strict, (D @ T_(vc)) * strict
        dArb_u, dArk_u = (dyc @ T_(SA)) * incl, (dyc @ T_(vc)) * incl
        dArb, dArk = gc[..., None] * dArb_u, gc[..., None] * dArk_u
        da_m = dAab @ b_m + dAak @ k_m + eGm * (D @ S0)
        db_m = T_(dAab) @ a_m + T_(dArb) @ r_m
        dk_m = T_(dAak) @ a_m + T_(dArk) @ r_m
        q_m = dArb_u @ b_m + dArk_u @ k_m + eGm * (dyc @ S0)  # dr~ / gate
        dr_m = gc[..., None] * q_m
        dBd, dKd = SA @ dS, vc @ dS
        dv = T_(Aak) @ D + T_(Ark) @ dY + Kd @ T_(dS)
        dGL = (Bd * dBd + Kd * dKd).sum(2, keepdim=True) + eGL * (dS * S0).sum(2)[:, :, None]
        dGx = a_m * da_m
        dG = r_m * dr_m - b_m * db_m - k_m * dk_m - Bd * dBd - Kd * dKd
        rev = lambda x: x.flip(2).cumsum(2).flip(2)  # noqa: E731 -- sum over t >= s
        dlg = rev(dG) + rev(dGx) - dGx + dGL
        dS = dS * eGL + T_(D) @ (a_m * eGm) + T_(dY) @ (r_m * eGm)
        for o, val in zip(outs, (dr_m * E, dlg, (dk_m + eGLm * dKd) / E, dv, da_m * E * torch.exp(-lc),
                                 (db_m + eGLm * dBd) / E), strict=True):  # fmt: skip
            o[:, :, sl] = val
        p_all[:, :, sl] = (rc * q_m * E).sum(-1)
    return (*outs, p_all)


def chunked_backward_torch(r, w, k, v, a, b, g, dy, states, dtype: torch.dtype = torch.float64):
    """:func:`chunked_backward`'s algorithm in PyTorch, computed in ``dtype``; gradients in ``dtype``."""
    B, T, H, N, C = _check_args(r, w, k, v, a, b, g, dy, states)
    L = CHUNK
    pad = C * L - T

    def prep(x):  # [B, T, H, N] -> [B, H, C*L, N] in dtype, zero padded
        x = x.to(dtype).permute(0, 2, 1, 3)
        return torch.nn.functional.pad(x, (0, 0, 0, pad))

    valid = torch.arange(C * L, device=r.device) < T
    lg = torch.where(valid[:, None], -torch.exp(prep(w)), 0.0)
    xs = [prep(x) for x in (r, k, v, a, b, dy)]
    gg = torch.full((B, H, C * L), 0.5, dtype=dtype, device=r.device)
    if g is not None:
        gg = torch.nn.functional.pad(g.to(dtype).permute(0, 2, 1), (0, pad))
    st = states.to(dtype)
    fwd = _direction_torch(xs[0], lg, xs[1], xs[2], xs[3], xs[4], gg, xs[5], st[0], L)
    flip = lambda x: x.flip(2)  # noqa: E731
    rv = [flip(x) for x in (xs[0], lg, xs[1], xs[2], xs[3], xs[4])]
    rev = _direction_torch(*rv, flip(1.0 - gg), flip(xs[5]), st[1].flip(2), L)
    dr, dlg, dk, dv, da, db = (f + flip(bk) for f, bk in zip(fwd[:6], rev[:6], strict=True))
    dw = dlg * lg
    back = lambda x: x[:, :, :T].permute(0, 2, 1, 3)  # noqa: E731
    dg = None if g is None else (fwd[6] - flip(rev[6]))[:, :, :T].permute(0, 2, 1)
    return (*(back(x) for x in (dr, dw, dk, dv, da, db)), dg)


# ---------------------------------------------------------------------------------- Triton kernel
if HAS_TRITON:
    from wkvbench.impls.bi_wkv7_triton.common import _exp, _head_prologue, _hi_dot, _unit_lower_inverse

    @triton.jit
    def _rev_cumsum(x):
        """Inclusive reverse cumulative sum over axis 0 (sum over t >= s)."""
        return tl.sum(x, axis=0)[None, :] - tl.cumsum(x, axis=0) + x

    @triton.jit
    def _chunk_front(r, w, k, v, a, b, g, dy, off, m2, gptr, valid, s0_ptr, dS, dirn, nnT, sad_ptr,
                     L: tl.constexpr, N: tl.constexpr, PREC: tl.constexpr, SOLVE: tl.constexpr,
                     INV: tl.constexpr):  # fmt: skip
        """One chunk's forward key side, SA, and the backward through SA's solve.

        ``SOLVE`` (the state kernel): compute ``SA`` and ``D`` and store them at ``sad_ptr``;
        otherwise (the chunk kernel) load them from there. ``INV``: the precision of the solve's dots.
        """
        offs_l = tl.arange(0, L)
        lnn = offs_l[:, None] * N + tl.arange(0, N)[None, :]
        rows = offs_l[:, None]
        cols = offs_l[None, :]
        MID: tl.constexpr = L // 2
        gt = tl.load(gptr, mask=valid, other=0.0).to(tl.float32)
        gf = gt + dirn * (1.0 - 2.0 * gt)  # g for the forward scan, 1 - g for the reverse
        lg = tl.where(m2, -_exp(tl.load(w + off, mask=m2, other=0.0).to(tl.float32)), 0.0)  # identity past T
        G = tl.cumsum(lg, axis=0)
        Gm = tl.sum(tl.where(rows <= MID, lg, 0.0), axis=0)
        GL = tl.sum(lg, axis=0)
        E = _exp(G - Gm[None, :])
        eGm = _exp(Gm)[None, :]
        eGLm = _exp(GL - Gm)[None, :]
        a_m = tl.load(a + off, mask=m2, other=0.0).to(tl.float32) * E * _exp(-lg)  # a e^(Gx - Gm)
        b_m = tl.load(b + off, mask=m2, other=0.0).to(tl.float32) / E
        k_m = tl.load(k + off, mask=m2, other=0.0).to(tl.float32) / E
        r_m = tl.load(r + off, mask=m2, other=0.0).to(tl.float32) * E
        v32 = tl.load(v + off, mask=m2, other=0.0).to(tl.float32)
        dy32 = tl.load(dy + off, mask=m2, other=0.0).to(tl.float32)
        Aak = tl.where(rows > cols, _hi_dot(a_m, tl.trans(k_m), None, PREC), 0.0)
        Ark = tl.where(rows >= cols, _hi_dot(r_m, tl.trans(k_m), None, PREC), 0.0)
        dY = gf[:, None] * dy32
        if SOLVE:
            Aab = tl.where(rows > cols, _hi_dot(a_m, tl.trans(b_m), None, PREC), 0.0)
            Arb = tl.where(rows >= cols, _hi_dot(r_m, tl.trans(b_m), None, PREC), 0.0)
            Z = _unit_lower_inverse(Aab, L, INV)
            W = _hi_dot(Z, a_m * eGm, None, PREC)
            U = _hi_dot(Z, Aak, None, PREC)
            SA = _hi_dot(U, v32, _hi_dot(W, tl.load(s0_ptr + nnT), None, PREC), PREC)  # sa_t of the chunk's rows
            X = _hi_dot(tl.trans(Arb), dY, _hi_dot(b_m * eGLm, tl.trans(dS), None, PREC), PREC)  # dL/dSA
            D = _hi_dot(tl.trans(Z), X, None, PREC)  # dL/d(right-hand side of SA)
            tl.store(sad_ptr + lnn, SA)
            tl.store(sad_ptr + L * N + lnn, D)
        else:
            SA = tl.load(sad_ptr + lnn)
            D = tl.load(sad_ptr + L * N + lnn)
        return lg, E, eGm, eGLm, GL, a_m, b_m, k_m, r_m, v32, dy32, gf, dY, Aak, Ark, SA, D

    @triton.jit
    def _bi_wkv7_chunked_bwd_state_kernel(
        r, w, k, v, a, b, g, dy, states, dstates, sad, dcarry, T, H, g_sb, g_st, g_sh, C, LOF, LOR,
        N: tl.constexpr, L: tl.constexpr, PREC: tl.constexpr, DROP: tl.constexpr, INV: tl.constexpr,
    ):  # fmt: skip
        """Walk a segment's ``C`` chunks in reverse scan order carrying dS; store the dS leaving each chunk, SA and D.

        The segment is the time chunks ``LOF ..`` (forward scan) and ``LOR ..`` (reverse scan); ``states``,
        ``dstates`` and ``sad`` hold its chunks only ([2, B * H, C, ...]); dS enters from ``dcarry``
        [2, B * H, N, N]. ``INV``: the precision of the in-chunk solve's dots (:func:`inverse_prec`)."""
        dirn = tl.program_id(0)
        pid_bh = tl.program_id(1)
        BH = tl.num_programs(1)
        _, _, stride_t, base, gbase, offs_n = _head_prologue(pid_bh, T, H, g_sb, g_sh, N)
        t0 = (LOF + dirn * (LOR - LOF)) * L  # the segment's first token
        offs_l = tl.arange(0, L)
        nn = offs_n[:, None] * N + offs_n[None, :]  # [i, j] of a row-major [N, N] matrix
        nnT = offs_n[:, None] + offs_n[None, :] * N  # its transpose, read through the pointers
        dS = tl.load(dcarry + (dirn * BH + pid_bh).to(tl.int64) * (N * N) + nn)
        for i in range(0, C):
            c = C - 1 - i + dirn * (2 * i - C + 1)  # forward: last chunk first; reverse: first chunk first
            tok = t0 + c * L + offs_l + dirn * (L - 1 - 2 * offs_l)  # rows in scan order
            valid = tok < T
            m2 = valid[:, None]
            off = base + tok.to(tl.int64)[:, None] * stride_t + offs_n[None, :]
            idx = ((dirn * BH + pid_bh) * C + c).to(tl.int64) * (N * N)
            tl.store(dstates + idx + nn, dS)
            sad_ptr = sad + ((dirn * BH + pid_bh) * C + c).to(tl.int64) * (2 * L * N)
            lg, E, eGm, eGLm, GL, a_m, b_m, k_m, r_m, v32, dy32, gf, dY, Aak, Ark, SA, D = _chunk_front(
                r, w, k, v, a, b, g, dy, off, m2, g + gbase + tok.to(tl.int64) * g_st, valid, states + idx,
                dS, dirn, nnT, sad_ptr, L, N, PREC, True, INV)  # fmt: skip
            dS = dS * _exp(GL)[None, :]
            if DROP != 1:  # DROP (tests only): 1 drops dS's sa path, 2 the state's decay term of dw
                dS = _hi_dot(tl.trans(D), a_m * eGm, dS, PREC)
            dS = _hi_dot(tl.trans(dY), r_m * eGm, dS, PREC)

    @triton.jit
    def _bi_wkv7_chunked_bwd_chunk_kernel(
        r, w, k, v, a, b, g, dy, states, dstates, sad, dr, dw, dk, dv, da, db, dg, dlw, T, H, g_sb, g_st, g_sh, C,
        LOF, LOR, SKIP, N: tl.constexpr, L: tl.constexpr, PREC: tl.constexpr, DROP: tl.constexpr, PART: tl.constexpr,
    ):  # fmt: skip
        """Every gradient of one chunk of one direction, from its entering state and leaving dS.

        The segment's ``C`` chunks as the state kernel's; program ``u`` takes chunk ``u`` (forward) or ``u + SKIP``
        (reverse; ``SKIP`` 1 leaves out the chunk shared with the segment before, done there).

        ``PART`` 1, 2, 3 (three launches, in that order) split the work: 1 does dv (with 3xTF32 dots
        a fourth launch, 4, does dv instead), da, dr, dg and stores its part of ``dlg`` (float32
        workspace ``dlw`` [2, B, C * L, H, N]),
        2 db and the state's decay term, adds its part of ``dlg`` there, 3 dk and adds the rest of ``dlg`` into dw
        (fewer live registers per launch: what the float32 variant needs to run without spills).
        """
        dirn = tl.program_id(1)
        cl = tl.program_id(0) + dirn * SKIP  # the chunk in the segment's workspace
        pid_bh = tl.program_id(2)
        BH = tl.num_programs(2)
        bidx, h, stride_t, base, gbase, offs_n = _head_prologue(pid_bh, T, H, g_sb, g_sh, N)
        offs_l = tl.arange(0, L)
        rows = offs_l[:, None]
        cols = offs_l[None, :]
        nn = offs_n[:, None] * N + offs_n[None, :]
        nnT = offs_n[:, None] + offs_n[None, :] * N
        sign = 1.0 - 2.0 * dirn  # dg = r.q_fwd - r.q_rev
        c = LOF + dirn * (LOR - LOF) + cl  # its time chunk
        tok = c * L + offs_l + dirn * (L - 1 - 2 * offs_l)
        valid = tok < T
        m2 = valid[:, None]
        off = base + tok.to(tl.int64)[:, None] * stride_t + offs_n[None, :]
        row = ((dirn * BH + pid_bh) * C + cl).to(tl.int64)
        s0_ptr = states + row * (N * N)
        ds_ptr = dstates + row * (N * N)
        sad_ptr = sad + row * (2 * L * N)
        lg, E, eGm, eGLm, GL, a_m, b_m, k_m, r_m, v32, dy32, gf, dY, Aak, Ark, SA, D = _chunk_front(
            r, w, k, v, a, b, g, dy, off, m2, g + gbase + tok.to(tl.int64) * g_st, valid, s0_ptr, None, dirn, nnT,
            sad_ptr, L, N, PREC, False, PREC)  # fmt: skip
        dAab = tl.where(rows > cols, _hi_dot(D, tl.trans(SA), None, PREC), 0.0)
        dAak = tl.where(rows > cols, _hi_dot(D, tl.trans(v32), None, PREC), 0.0)
        dArb_u = tl.where(rows >= cols, _hi_dot(dy32, tl.trans(SA), None, PREC), 0.0)
        dArk_u = tl.where(rows >= cols, _hi_dot(dy32, tl.trans(v32), None, PREC), 0.0)
        dG = tl.zeros([L, N], dtype=tl.float32)
        dGx = tl.zeros([L, N], dtype=tl.float32)
        dGLs = tl.zeros([N], dtype=tl.float32)
        DV_PART: tl.constexpr = 4 if PREC == 2 else 1  # 3xTF32: a fourth launch (with dv any part spills)
        if PART == DV_PART:
            dv_c = _hi_dot(
                tl.trans(Aak),
                D,
                _hi_dot(tl.trans(Ark), dY, _hi_dot(k_m * eGLm, tl.load(ds_ptr + nnT), None, PREC), PREC),
                PREC,
            )
            tl.atomic_add(dv + off, dv_c, mask=m2, sem="relaxed")
        if PART == 1:
            S0 = tl.load(s0_ptr + nn)
            da_m = _hi_dot(dAak, k_m, _hi_dot(dAab, b_m, eGm * _hi_dot(D, S0, None, PREC), PREC), PREC)
            tl.atomic_add(da + off, da_m * E * _exp(-lg), mask=m2, sem="relaxed")
            dGx = a_m * da_m
            q_m = _hi_dot(dArk_u, k_m, _hi_dot(dArb_u, b_m, eGm * _hi_dot(dy32, S0, None, PREC), PREC), PREC)
            tl.atomic_add(dr + off, gf[:, None] * q_m * E, mask=m2, sem="relaxed")
            rq = r_m * q_m  # row sums: sum_i dy_i y_dir,i of each token
            tok_g = (bidx.to(tl.int64) * T + tok) * H + h
            tl.atomic_add(dg + tok_g, sign * tl.sum(rq, axis=1), mask=valid, sem="relaxed")
            dG = gf[:, None] * rq
        if PART == 2:
            dS = tl.load(ds_ptr + nn)
            if DROP != 2:
                dGLs += _exp(GL) * tl.sum(dS * tl.load(s0_ptr + nn), axis=0)
            dBd = _hi_dot(SA, dS, None, PREC)
            db_m = _hi_dot(tl.trans(gf[:, None] * dArb_u), r_m, _hi_dot(tl.trans(dAab), a_m, None, PREC), PREC)
            tl.atomic_add(db + off, (db_m + eGLm * dBd) / E, mask=m2, sem="relaxed")
            dGL = b_m * eGLm * dBd
            dG -= b_m * db_m + dGL
            dGLs += tl.sum(dGL, axis=0)
        if PART == 3:
            dKd = _hi_dot(v32, tl.load(ds_ptr + nn), None, PREC)
            dk_m = _hi_dot(tl.trans(gf[:, None] * dArk_u), r_m, _hi_dot(tl.trans(dAak), a_m, None, PREC), PREC)
            tl.atomic_add(dk + off, (dk_m + eGLm * dKd) / E, mask=m2, sem="relaxed")
            dGL = k_m * eGLm * dKd
            dG -= k_m * dk_m + dGL
            dGLs += tl.sum(dGL, axis=0)
        if PART < 4:  # decays: the products x dx, then the reverse cumulative sums
            dlg = _rev_cumsum(dG) + _rev_cumsum(dGx) - dGx + dGLs[None, :]
            RL = C * L  # dlw [2, B, C * L, H, N]: the inputs' layout over the segment's tokens, reached from off
            t0 = (LOF + dirn * (LOR - LOF)) * L
            dl_ptr = dlw + off + (bidx.to(tl.int64) * (RL - T) - t0 + dirn * (BH // H) * RL) * stride_t
            if PART >= 2:
                dlg += tl.load(dl_ptr, mask=m2, other=0.0)
            if PART < 3:
                tl.store(dl_ptr, dlg, mask=m2)
            else:
                tl.atomic_add(dw + off, dlg * lg, mask=m2, sem="relaxed")


def chunked_backward(
    r, w, k, v, a, b, g, dy, states, *, prec: int | None = None, segment: int | None = None, _drop: int = 0
):
    """Gradients of Bi-WKV7 from the saved chunk-entry states: ``(dr, dw, dk, dv, da, db, dg or None)``.

    ``prec``: the dots' precision, :data:`PREC` (exact float32) when None, or 2 (3xTF32 tensor-core
    dots, ``common._hi_dot``; the ``triton_chunked_tc`` backward). ``segment``: scan positions per
    segment (None: :func:`segment_chunks`); the result does not depend on it, the workspace does
    (:func:`workspace_bytes`).

    Per segment of scan positions (both directions at once): the dS chain, grid ``(2, B * H)``, then
    the chunk kernel's parts, grid ``(chunks, 2, B * H)``; gradients in the I/O dtype (``dg`` in
    ``g``'s dtype). ``_drop`` (tests only) drops one term of the backward, to show the checks catch it.
    """
    B, T, H, N, C = _check_args(r, w, k, v, a, b, g, dy, states)
    prec = PREC if prec is None else prec
    if prec not in PRECS:
        raise ValueError(f"prec: expected one of {PRECS}, got {prec!r}")
    if segment is not None and (isinstance(segment, bool) or not isinstance(segment, int) or segment < 1):
        raise ValueError(f"segment: expected a positive number of chunks or None, got {segment!r}")
    if not HAS_TRITON:
        raise RuntimeError(f"triton is not installed: {_IMPORT_ERROR}")
    S = _segment(C, segment)
    r, w, k, v, a, b, dy, states = (x.contiguous() for x in (r, w, k, v, a, b, dy, states))
    bufs = [torch.zeros(r.shape, dtype=torch.float32, device=r.device) for _ in range(6)]
    dg = torch.zeros((B, T, H), dtype=torch.float32, device=r.device)
    if g is None:  # one 0.5 read with zero strides (as the forward)
        gate, gs = torch.full((1,), 0.5, dtype=r.dtype, device=r.device), (0, 0, 0)
    else:
        gate, gs = g.contiguous(), (T * H, H, 1)
    BH, NN = B * H, N * N
    ws = workspace(B, H, C if S == C else S + 1, r.device, N, copy_states=S < C)
    st = states.view(2, BH, C, NN)
    common = dict(N=N, L=CHUNK, DROP=int(_drop), num_stages=1)
    for p0 in range(0, C, S):  # new scan positions p0 .. p0 + n - 1 of both directions
        n, skip = min(S, C - p0), int(p0 > 0)  # a later segment starts with the last chunk of the one before
        R, lor = n + skip, p0 - skip
        lof = C - lor - R  # the segment's time chunks: lof .. lof + R - 1 (forward scan), lor .. (reverse)
        dstates, sad, dlw = (_first_rows(ws[name], R) for name in ("dstates", "sad", "dlw"))
        seg_states = states
        if S < C:  # the segment's entry states, in the workspace's layout
            seg_states = _first_rows(ws["states"], R)
            seg_states[0].copy_(st[0, :, lof : lof + R])
            seg_states[1].copy_(st[1, :, lor : lor + R])
        args = (r, w, k, v, a, b, gate, dy, seg_states, dstates, sad)
        _bi_wkv7_chunked_bwd_state_kernel[(2, BH)](
            *args, ws["dcarry"], T, H, *gs, R, lof, lor, PREC=prec, INV=inverse_prec(prec, r.dtype),
            num_warps=STATE_WARPS, **common,
        )  # fmt: skip
        if p0 + n < C:  # the dS leaving the segment's last scan position enters the next segment's first
            ws["dcarry"][0].copy_(dstates[0, :, 0].reshape(BH, N, N))
            ws["dcarry"][1].copy_(dstates[1, :, R - 1].reshape(BH, N, N))
        for part in chunk_parts(prec):
            _bi_wkv7_chunked_bwd_chunk_kernel[(n, 2, BH)](
                *args, *bufs, dg, dlw, T, H, *gs, R, lof, lor, skip, PREC=prec, PART=part,
                num_warps=CHUNK_WARPS, **common,
            )  # fmt: skip
    del ws, seg_states, dstates, sad, dlw, args
    if r.dtype != torch.float32:  # one buffer at a time, each released when converted
        for i in range(6):
            bufs[i] = bufs[i].to(r.dtype)
    return (*bufs, None if g is None else dg.to(g.dtype))


#: At most SEGMENTS segments per direction (the workspace holds one: ~88 / SEGMENTS B per element of ``y``
#: for long sequences), of at least MIN_SEGMENT chunks (short sequences keep one: no copies, 4-5 launches).
SEGMENTS, MIN_SEGMENT = 8, 8


def segment_chunks(C: int) -> int:
    """Scan positions per segment of a backward over ``C`` chunks: ``ceil(C / SEGMENTS)``, at least
    ``MIN_SEGMENT``; all ``C`` (one segment) where a segment and its shared chunk would be over half."""
    S = max(-(-int(C) // SEGMENTS), MIN_SEGMENT)
    return C if 2 * (S + 1) > C else S


def _segment(C: int, segment: int | None) -> int:
    return min(segment_chunks(C) if segment is None else segment, C)


def workspace(B: int, H: int, R: int, device, N: int = HEAD_SIZE, *, copy_states: bool = True) -> dict:
    """The backward's float32 workspace for segments of up to ``R`` chunks, ``[2, B * H, R, row]`` each:
    ``states`` (the segment's chunk-entry states, a copy; None without ``copy_states``), ``dstates`` (the
    dS leaving each chunk), ``sad`` (SA and D), ``dlw`` (``dlg`` of parts 1 and 2); and ``dcarry``
    ``[2, B * H, N, N]``, the dS between segments (zeroed)."""
    f32 = dict(dtype=torch.float32, device=device)
    rows = dict(states=N * N if copy_states else 0, dstates=N * N, sad=2 * CHUNK * N, dlw=CHUNK * N)
    ws = {name: torch.empty((2, B * H, R, n), **f32) if n else None for name, n in rows.items()}
    ws["dcarry"] = torch.zeros((2, B * H, N, N), **f32)
    return ws


def _first_rows(x: Tensor, R: int) -> Tensor:
    """``x`` [2, BH, R_max, n] viewed as [2, BH, R, n] over its first elements (a segment of R chunks)."""
    return x.view(-1)[: 2 * x.shape[1] * R * x.shape[3]].view(2, x.shape[1], R, x.shape[3])


def workspace_bytes(B: int, T: int, H: int, N: int = HEAD_SIZE, segment: int | None = None) -> int:
    """Bytes of :func:`workspace` a backward of ``[B, T, H, N]`` allocates (``segment`` as :func:`chunked_backward`).

    Per (chunk, direction, head) a segment holds: 16 KiB of dS, 8 KiB of SA and D, 4 KiB of ``dlg`` shares
    (56 B per element of ``y``), with more than one segment a 16 KiB copy of its entry state (88 B); plus
    16 KiB of carried dS."""
    C = -(-int(T) // CHUNK)
    S = _segment(C, segment)
    R = C if S == C else S + 1
    per_chunk = N * N + 2 * CHUNK * N + CHUNK * N + (N * N if S < C else 0)
    return 4 * 2 * B * H * (R * per_chunk + N * N)


STATE_WARPS = 8
CHUNK_WARPS = 8
#: The chunk kernel's launches: three parts (one would need ~20% more registers than sm_90 has: spills).
CHUNK_PARTS = (1, 2, 3)


def inverse_prec(prec: int, dtype: torch.dtype) -> int:
    """Precision of the state kernel's solve: 3xTF32 for float32 I/O, exact float32 for 16-bit I/O
    (each the one of the two that compiles without spills at sm_90), ``prec`` 0: exact."""
    return 2 if prec == 2 and dtype == torch.float32 else 0


def chunk_parts(prec: int) -> tuple[int, ...]:
    """The chunk kernel's launches at ``prec``: 3xTF32 (2) moves dv to a fourth (its splits need registers)."""
    return CHUNK_PARTS + (4,) if prec == 2 else CHUNK_PARTS


#: ``_hi_dot``'s precision for every dot and I/O dtype: exact float32. TF32 rounded to nearest (1,
#: the forward's choice for 16-bit I/O) measured a worst float16 gradient of 6.9e-3 (bar 5e-3):
#: ``dg`` at T = 1, where ``y_fwd = y_rev`` and the reference ``dg`` is zero.
PREC = 0
#: Precisions :func:`chunked_backward` launches: exact float32 (0), 3xTF32 (2).
PRECS = (0, 2)


# ---------------------------------------------------------------------------------- compile report


def kernel_variants() -> list[dict]:
    """Every specialisation :func:`chunked_backward` launches, in the form ``_compile.triton_compile_rows`` takes."""
    out = []
    chunk_ptrs = ("states", "dstates", "sad", "dr", "dw", "dk", "dv", "da", "db", "dg", "dlw")
    kernels = ((_bi_wkv7_chunked_bwd_state_kernel, ("states", "dstates", "sad", "dcarry"), STATE_WARPS, "state"),
               (_bi_wkv7_chunked_bwd_chunk_kernel, chunk_ptrs, CHUNK_WARPS, "chunk"))  # fmt: skip
    for prec, dtype in [(p, d) for p in PRECS for d in (torch.float32, torch.bfloat16, torch.float16)]:
        dt = str(dtype).replace("torch.", "")
        for fn, ptrs, warps, kind in kernels:
            for part in chunk_parts(prec) if kind == "chunk" else (None,):
                sig = {n: TL_PTR[dtype] for n in ("r", "w", "k", "v", "a", "b", "g", "dy")}
                sig.update({n: "*fp32" for n in ptrs})
                ints = ("T", "H", "g_sb", "g_st", "g_sh", "C", "LOF", "LOR") + (("SKIP",) if kind == "chunk" else ())
                sig.update({n: "i32" for n in ints})
                sig.update({n: "constexpr" for n in ("N", "L", "PREC", "DROP")})
                const = {"N": HEAD_SIZE, "L": CHUNK, "PREC": prec, "DROP": 0}
                label = f"bwd {dt} L={CHUNK} warps={warps} dots={'tf32x3' if prec == 2 else 'ieee'}"
                if part is None:
                    const["INV"], sig["INV"] = inverse_prec(prec, dtype), "constexpr"
                else:
                    const["PART"], sig["PART"] = part, "constexpr"
                    label += f" part={part}"
                out.append(dict(impl=IMPL_TC if prec == 2 else IMPL, fn=fn, signature=sig, constexprs=const, align=True,
                                options={"num_warps": warps, "num_stages": 1}, config=label))  # fmt: skip
    return out


def compile_report(cc: int = 90) -> list[dict]:
    """Compile the backward kernel's variants for ``sm_{cc}`` without a GPU: registers, shared memory, spills.

    Call it without ``TRITON_INTERPRET`` set (``wkvbench.kernels.report_module`` runs it in a clean
    subprocess). Without triton the rows say ``skipped`` and which extra brings it.
    """
    if not HAS_TRITON:
        return _compile.skipped_rows((IMPL, IMPL_TC), _compile.ToolMissing.extra("triton", _IMPORT_ERROR))
    return _compile.report_or_skip((IMPL, IMPL_TC), lambda: _compile.triton_compile_rows(kernel_variants(), cc))
