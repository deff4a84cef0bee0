"""Bi-WKV7 in Triton: a register-resident recurrent kernel and a chunked tensor-core kernel.

Three registered implementations of the ``bi_wkv7`` op (docs/spec.md section 1):
``triton_recurrent`` (priority 20), ``triton_chunked`` (30, what ``impl="auto"`` picks on a GPU)
and ``triton_chunked_tf32`` (float32 inputs on TF32 tensor cores, held to the bfloat16 bar).
Inputs ``[B, T, H, N]`` contiguous, gate ``[B, T, H]`` or None (0.5), N = 64, any T >= 1, I/O
float32/bfloat16/float16. Each is one launch that runs both scan directions and fuses
AudioRWKV's gate merge ``y = g * y_fwd + (1 - g) * y_rev``: ``y`` is written once, in the I/O
dtype. Reverse-direction code walks the inputs backwards by pointer arithmetic (no flipped
copies). State and accumulation are float32 for every I/O dtype. Design history, precision
study, compiler evidence and GPU predictions: docs/notes/triton_bi_wkv7.md.

``triton_recurrent``: the per-token recurrence (the computation of the official RWKV-7 kernel)
-----------------------------------------------------------------------------------------------
Value rows of S are independent (``sa_i = S[i, :] . a`` only needs row i), so a program owns
``BV`` rows of one (batch, head)'s state *for both directions*: two ``[BV, N]`` float32 tiles in
registers. Grid ``(N / BV, B * H)``, value block fastest; 1 warp per program. Step s advances
the forward scan at ``t = s`` and the reverse scan at ``t = T - 1 - s``::

    sa = S a_t ;  S = S diag(exp(-exp(w_t))) + sa b_t^T + v_t k_t^T ;  y_t = S r_t

Merge: whichever direction reaches token t first writes its gated float32 partial to a
workspace row; the other reaches t later in the *same program* and writes ``y = own + partial``
(the middle token of an odd T is merged in registers). All workspace writes happen in the loop
over the first half of the steps, all reads in the loop over the second half, with a CTA
barrier between the loops: race-free by program order. The next step's inputs are prefetched
into registers. ``BV`` in {4, 8, 16}: the smallest block that still gives >= 4 programs per SM
(``recurrent_config``; batch 1 at H = 12: BV = 4, 192 programs on 132 SMs).

``triton_chunked``: the chunked generalized delta rule on tensor cores
-------------------------------------------------------------------------
The chunked algebra of ``bi_wkv7_torch.py`` (the WY / DPLR chunking of fla-core, Yang et al.,
arXiv 2406.06484 and 2412.06464), with all state-independent work of a chunk first and only
three dots touching the state. Per chunk of L = 16 tokens (``lg = -exp(w)``, inclusive cumsum
G, ``Gx = G - lg``), factored around the middle row m (``E = e^(G - G_m)``)::

    a~ = a E / d,  b~ = b / E,  k~ = k / E,  r~ = r E        every factor <= e^(0.61 (L/2 + 1))
    Aab = tril_strict(a~ b~^T), Aak = tril_strict(a~ k~^T), Arb = tril(r~ b~^T), Ark = tril(r~ k~^T)
    Z = (I - Aab)^-1 = (I + A)(I + A^2)(I + A^4)(I + A^8)            exact (A^16 = 0), fp32 FMA dots
    W = Z (a e^Gx),  U = Z Aak,  Q = r e^G + Arb W,  Yv = Ark + Arb U            (no state yet)
    SA = W S^T + U V,   Y = Q S^T + Yv V,   S <- S diag(e^GL) + SA^T (b e^(GL-G)) + V^T (k e^(GL-G))

(SA holds ``sa_t = S_{t-1} a_t`` for the chunk's rows.) Nothing divides by a cumulative decay.
Grid ``(N / BV, 2, B * H)``: value block, direction, (batch, head). A program walks its
``C = ceil(T / L)`` chunks with its ``[BV, N]`` float32 state in registers (the reverse program
from the last chunk down, rows reversed; tokens past T are identity tokens: zero inputs, decay
1), the next chunk's raw inputs prefetched into registers.

Merge across the two direction programs of a (batch, head, value block), still one launch:
they meet once per ``[L, BV]`` tile. A per-tile int32 ticket (``atomic_add``, acq_rel, gpu
scope) says who came first. The first stores its gated partial tile (float32 workspace),
CTA-barriers and releases (``atomic_add(+2)``, release); the second acquires -- spinning only
while the first holds its ticket but has not released, which it does with nothing in between
but its own stores; a ticket holder is resident, so the wait ends -- reads the partial (``.cg``,
L2) and writes ``y`` (CUTLASS's serial split-K semaphore). Tickets are zeroed per call (4
bytes per tile).

Dots: operands that carry the state's magnitude use TF32 rounded to nearest in registers
(``_tf32_rn``); float16 I/O runs the three dots against V in float16 (V exact); float32 I/O is
exact float32 in ``triton_chunked`` (``input_precision="ieee"``) and TF32 in
``triton_chunked_tf32``. Configs (no autotuning; ``chunked_config``): L = 16; BV the smallest of
8/16/32/64 whose ``2 B H 64 / BV`` programs fit one wave (2 resident per SM at 4 warps, 1 at 8);
BV = 64 (8 warps) if none does; BV = 64 and the float32-exact path use 8 warps, exact float32
stops at BV = 32 (``chunked_blocks``).

Bytes per element of y (DRAM, both kernels): each input is read once per direction (the
reverse read of a token comes ``|T - 1 - 2t|`` steps after the forward one), plus a float32
partial write and read and the final write: bf16 ~34 bytes against the op's 14-byte minimum
(``bytes_moved``), float32 60 against 28 (the partial lives in ``y``).

bfloat16 stores convert with an explicit round-to-nearest-even bit trick and no bfloat16 dot is
issued (the interpreter mis-rounds both), so CPU tests under ``TRITON_INTERPRET=1`` run the GPU
code path. ``compile_report(cc)`` compiles every launched variant for ``sm_<cc>`` without a GPU.

Training (all three are ``backward=True``): with grad on, the registered functions run the same
kernels with ``SAVE`` (the fp32 16-token chunk-entry states; recurrent BV <= 8 and
chunked BV = 32 on 8 warps: at 255 registers or spilling otherwise) and ``_bi_wkv7_triton_train.py``.
Saved for the backward: those states only, 1024 bytes per (token, head) and direction for every
I/O dtype (32 bytes per element of ``y``; :func:`saved_bytes`).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from wkvbench.impls import _bi_wkv7_triton_train as _tt
from wkvbench.impls import _gpu
from wkvbench.impls._gpu import DEFAULT_SMS
from wkvbench.registry import ALL_DTYPES, register_impl

triton, _IMPORT_ERROR = _gpu.try_import("triton")
tl, _ = _gpu.try_import("triton.language")
HAS_TRITON = triton is not None and tl is not None

HEAD_SIZES = (64,)
CHUNK_LENS = (16, 32, 64)
IMPLS = ("triton_recurrent", "triton_chunked", "triton_chunked_tf32")
saved_bytes = _tt.saved_bytes  # what the training forward saves for the backward


def _check(device: torch.device) -> tuple[bool, str]:
    return _gpu.triton_check(HAS_TRITON, device)


def _next_pow2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())


RECURRENT_BLOCKS = (4, 8, 16)
CHUNKED_BLOCKS = (8, 16, 32, 64)


def recurrent_config(B: int, H: int, sms: int = DEFAULT_SMS) -> dict:
    """Value-block size of the recurrent kernel: >= 4 one-warp programs per SM when the shape allows."""
    nvb = min(16, max(4, _next_pow2(-(-4 * sms // (B * H)))))
    return {"BV": 64 // nvb, "num_warps": 1}


def _chunked_warps(BV: int, exact: bool, save: bool = False) -> int:
    """4 warps (<= 255 registers, no spills, 2 programs per SM); 8 where 4 would spill at sm_90."""
    return 8 if (BV == 64 or exact or (save and BV == 32)) else 4


def chunked_blocks(exact: bool) -> tuple[int, ...]:
    """Value-block sizes the chunked kernel launches (float32-exact BV = 64 spills at sm_90)."""
    return CHUNKED_BLOCKS[:-1] if exact else CHUNKED_BLOCKS


def chunked_config(B: int, H: int, sms: int = DEFAULT_SMS, exact: bool = False) -> dict:
    """Chunk length, value block and warps of the chunked kernel.

    The most value blocks (parallelism) whose ``2 B H N / BV`` programs still run in one wave
    (2 resident programs per SM at 4 warps, 1 at 8 warps: both use ~250 registers a thread);
    if none fits, the largest block (the least duplicated key-side work, so the least total work).
    """
    blocks = chunked_blocks(exact)
    for BV in blocks:
        warps = _chunked_warps(BV, exact)
        if 2 * B * H * (64 // BV) <= (2 if warps == 4 else 1) * sms:
            return {"L": 16, "BV": BV, "num_warps": warps}
    return {"L": 16, "BV": blocks[-1], "num_warps": _chunked_warps(blocks[-1], exact)}


if HAS_TRITON:
    from triton.language.extra import libdevice

    #: The decay path's exp: libdevice's ``expf`` (within 2 ulp) on a GPU. ``tl.exp`` compiles to
    #: ``ex2.approx.f32`` after a multiply by log2(e), and the per-token decay is multiplied up to
    #: T times, so its error compounds. The interpreter has no libdevice; its exp is exact already.
    _EXACT_EXP = tl.constexpr(not _gpu.triton_interpreting())

    @triton.jit
    def _exp(x):
        if _EXACT_EXP:
            y = libdevice.exp(x)
        else:
            y = tl.exp(x)
        return y

    @triton.jit
    def _tf32_rn(x):
        """Round float32 to the nearest TF32 value (the tensor cores would truncate)."""
        u = x.to(tl.int32, bitcast=True)
        u = (u + 0x1000) & -8192
        return u.to(tl.float32, bitcast=True)

    @triton.jit
    def _bf16_rne_bits(x):
        """float32 -> uint32 whose high half is the round-to-nearest-even bfloat16 of x."""
        u = x.to(tl.uint32, bitcast=True)
        return u + (0x7FFF + ((u >> 16) & 1))

    @triton.jit
    def _to_out(x, OUT_KIND: tl.constexpr):
        """float32 -> the I/O dtype (0: float32, 1: bfloat16 via an exact RNE bit trick, 2: float16)."""
        if OUT_KIND == 1:
            return (_bf16_rne_bits(x) >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
        elif OUT_KIND == 2:
            return x.to(tl.float16)
        else:
            return x

    @triton.jit
    def _hi_dot(x, y, acc, PREC: tl.constexpr):
        """A dot whose operands may carry the state's magnitude: exact float32 (0) or TF32 rounded to nearest (1)."""
        if PREC == 1:
            return tl.dot(_tf32_rn(x), _tf32_rn(y), acc, input_precision="tf32")
        else:
            return tl.dot(x, y, acc, input_precision="ieee")

    @triton.jit
    def _lo_dot(x, y, acc, PREC: tl.constexpr, VKIND: tl.constexpr):
        """A dot against V: float16 operands (VKIND 2, V exact) or like ``_hi_dot`` (VKIND 0)."""
        if VKIND == 2:
            return tl.dot(x.to(tl.float16), y.to(tl.float16), acc)
        else:
            return _hi_dot(x, y, acc, PREC)

    @triton.jit
    def _head_prologue(pid_bh, T, H, g_sb, g_sh, N: tl.constexpr):
        """A (batch, head) program's offsets into [B, T, H, N] inputs and the [B, T, H] gate.

        Returns ``bidx, h, stride_t, base, gbase, offs_n``: token t's vector starts at ``base + t * stride_t``,
        its gate at ``gbase + t * g_st`` (all gate strides 0 without a gate: g points at one 0.5).
        """
        bidx = pid_bh // H
        h = pid_bh % H
        base = (bidx.to(tl.int64) * T * H + h) * N
        gbase = bidx.to(tl.int64) * g_sb + h * g_sh
        return bidx, h, H * N, base, gbase, tl.arange(0, N)

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
    def _unit_lower_inverse(A, L: tl.constexpr):
        """(I - A)^-1 for strictly lower-triangular A [L, L] (float32), exactly, in log2(L) - 1 steps.

        A is nilpotent (A^L = 0), so (I - A)^-1 = I + A + ... + A^(L-1)
        = (I + A)(I + A^2)(I + A^4)...(I + A^(L/2)): log2(L) - 1 squarings and as many products,
        all float32 FMA dots (``ieee``; 6 of them [16, 16] x [16, 16] at L = 16).
        """
        offs = tl.arange(0, L)
        Z = (offs[:, None] == offs[None, :]).to(tl.float32) + A
        Ap = A
        for _ in tl.static_range(1, L.bit_length() - 1):
            Ap = tl.dot(Ap, Ap, input_precision="ieee")
            Z = tl.dot(Z, Ap, Z, input_precision="ieee")
        return Z

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
            Z = _unit_lower_inverse(Aab, L)
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


_OUT_KIND = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}


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
) -> Tensor | tuple[Tensor, Tensor]:  # fmt: skip
    """Launch the chunked kernel. ``tf32`` only changes float32 inputs (TF32 instead of exact dots).

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
    exact = r.dtype == torch.float32 and not tf32
    cfg = chunked_config(B, H, _gpu.sm_count(r.device), exact=exact)
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
        N=N, BV=BV, L=L, OUT_KIND=_OUT_KIND[r.dtype], PREC=0 if exact else 1,
        VKIND=2 if r.dtype == torch.float16 else 0, SAVE=bool(save), num_warps=_chunked_warps(BV, exact, save),
        num_stages=1,
    )  # fmt: skip
    return (out, st) if save else out


# The three registrations share everything but name, dtypes, priority and the TF32 flag.
_register = functools.partial(
    register_impl, "bi_wkv7", backend="triton", devices=("cuda", "cpu"), head_sizes=HEAD_SIZES, check=_check,
    backward=True,
)  # fmt: skip


@_register(
    name="triton_recurrent", dtypes=ALL_DTYPES, priority=20,
    description="recurrent Triton kernel: [BV, 64] state blocks in registers, both directions interleaved, fused merge",
)  # fmt: skip
def triton_recurrent(r, w, k, v, a, b, g=None, *, out=None):
    """Recurrent Triton kernel: per-token recurrence with the state in registers, both directions in one launch."""
    y = _tt.train_or_none("recurrent", r, w, k, v, a, b, g, out)
    return y if y is not None else bi_wkv7_recurrent(r, w, k, v, a, b, g, out=out)


@_register(
    name="triton_chunked", dtypes=ALL_DTYPES, priority=30,
    description="chunked Triton kernel on tensor cores (L=16 chunks, in-kernel solve), fused merge",
)  # fmt: skip
def triton_chunked(r, w, k, v, a, b, g=None, *, out=None):
    """Chunked Triton kernel: tensor-core chunks, exact float32 dots for float32 inputs."""
    y = _tt.train_or_none("chunked", r, w, k, v, a, b, g, out)
    return y if y is not None else bi_wkv7_chunked(r, w, k, v, a, b, g, out=out, tf32=False)


@_register(
    name="triton_chunked_tf32", dtypes=(torch.float32,), priority=25, tf32=True,
    description="chunked Triton kernel, float32 inputs on TF32 tensor cores (bfloat16 accuracy bar)",
)  # fmt: skip
def triton_chunked_tf32(r, w, k, v, a, b, g=None, *, out=None):
    """Chunked Triton kernel with float32 inputs computed on TF32 tensor cores."""
    y = _tt.train_or_none("chunked_tf32", r, w, k, v, a, b, g, out)
    return y if y is not None else bi_wkv7_chunked(r, w, k, v, a, b, g, out=out, tf32=True)


# ---------------------------------------------------------------------------------- compile report
def kernel_variants() -> list[dict]:
    """Every kernel specialisation launched, inference and training (``_gpu.triton_compile_rows`` form).

    Listed by ``_bi_wkv7_triton_train.kernel_variants``.
    """
    from wkvbench.impls import _bi_wkv7_triton_train

    return _bi_wkv7_triton_train.kernel_variants()


def compile_report(cc: int = 90) -> list[dict]:
    """Compile every kernel variant for ``sm_{cc}`` without a GPU; registers, shared memory, spills.

    Call it without ``TRITON_INTERPRET`` set (``wkvbench kernels`` and the tests run it in a clean
    subprocess). Pointer arguments get the 16-byte alignment hint a real launch gives them.
    Without triton the rows say ``skipped`` and which extra brings it.
    """
    if not HAS_TRITON:
        return _gpu.skipped_rows(IMPLS, _gpu.ToolMissing.extra("triton", _IMPORT_ERROR))
    from wkvbench.impls import _bi_wkv7_triton_chunked_bwd  # the chunked kinds' backward (WY form)

    rows = _gpu.report_or_skip(IMPLS, lambda: _gpu.triton_compile_rows(kernel_variants(), cc))
    return rows + _bi_wkv7_triton_chunked_bwd.compile_report(cc)
