"""What the Triton Bi-WKV7 kernels share: the Triton import, the exp, TF32 and bfloat16 helpers, the dots.

Forward (``fwd.py``), per-token backward (``bwd.py``) and chunked backward (``chunked_bwd.py``)
call these ``@triton.jit`` helpers; why the decay path uses libdevice's exp and why bfloat16
stores use a bit trick: docs/notes/triton_bi_wkv7.md.
"""

from __future__ import annotations

import torch

from wkvbench.impls import _gpu

triton, _IMPORT_ERROR = _gpu.try_import("triton")
tl, _ = _gpu.try_import("triton.language")
HAS_TRITON = triton is not None and tl is not None

HEAD_SIZES = (64,)
#: The ``OUT_KIND`` constexpr of each I/O dtype (0: float32, 1: bfloat16, 2: float16).
_OUT_KIND = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}
#: Triton pointer types of the I/O dtypes (compile-report signatures).
TL_PTR = {torch.float32: "*fp32", torch.bfloat16: "*bf16", torch.float16: "*fp16"}


def _next_pow2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())


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
    def _tf32_rne(x):
        """Round float32 to the nearest TF32 value, ties to even (10 explicit mantissa bits)."""
        u = x.to(tl.int32, bitcast=True)
        u = (u + (0xFFF + ((u >> 13) & 1))) & -8192
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
        """A dot whose operands may carry the state's magnitude: exact float32 (0), TF32 rounded to
        nearest (1) or 3xTF32 (2): ``x = xh + xl``, ``y = yh + yl`` split into TF32 values by
        :func:`_tf32_rne`, ``xl yh + xh yl + xh yh`` on tensor cores (the ``xl yl`` term, ~2^-22
        relative, dropped). The operands of every product are exact TF32 values, so the tensor
        cores' operand truncation is a no-op and the interpreter's exact dot computes the same
        products as the hardware (only the fp32 accumulation order differs)."""
        if PREC == 2:
            xh = _tf32_rne(x)
            yh = _tf32_rne(y)
            xl = _tf32_rne(x - xh)
            yl = _tf32_rne(y - yh)
            d = tl.dot(xl, yh, acc, input_precision="tf32")
            d = tl.dot(xh, yl, d, input_precision="tf32")
            return tl.dot(xh, yh, d, input_precision="tf32")
        elif PREC == 1:
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

    @triton.jit
    def _unit_lower_inverse(A, L: tl.constexpr, PREC: tl.constexpr):
        """(I - A)^-1 for strictly lower-triangular A [L, L] (float32), exactly, in log2(L) - 1 steps.

        A is nilpotent (A^L = 0), so (I - A)^-1 = I + A + ... + A^(L-1)
        = (I + A)(I + A^2)(I + A^4)...(I + A^(L/2)): log2(L) - 1 squarings and as many products,
        all float32 FMA dots (``ieee``; 6 of them [16, 16] x [16, 16] at L = 16), or 3xTF32 dots
        (``PREC`` 2, :func:`_hi_dot`).
        """
        offs = tl.arange(0, L)
        Z = (offs[:, None] == offs[None, :]).to(tl.float32) + A
        Ap = A
        for _ in tl.static_range(1, L.bit_length() - 1):
            if PREC == 2:
                Ap = _hi_dot(Ap, Ap, None, PREC)
                Z = _hi_dot(Z, Ap, Z, PREC)
            else:
                Ap = tl.dot(Ap, Ap, input_precision="ieee")
                Z = tl.dot(Z, Ap, Z, input_precision="ieee")
        return Z
