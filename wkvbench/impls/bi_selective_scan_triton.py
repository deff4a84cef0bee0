"""Audio Mamba's bidirectional selective scan as one Triton kernel (``triton``).

The op (docs/spec.md section 3; Mamba, Gu & Dao, arXiv 2312.00752; Audio Mamba's "Fo-Bi",
Erol et al., arXiv 2406.03344)::

    dt_t = softplus(delta_t + delta_bias)
    x_t  = exp(dt_t A) * x_{t-1} + dt_t Bm_t u_t          x: [D, N] per sequence, fp32
    y_t  = (Cm_t . x_t + Dskip u_t) * silu(z_t)
    y    = scan(fwd, A) + flip(scan(flipped inputs, A_b))

Launch geometry: one launch does both directions. Grid ``(cdiv(D, BLOCK_D), B, 2)``: program
``(i, b, r)`` owns channels ``[i*BLOCK_D, (i+1)*BLOCK_D)`` of sequence ``b`` in direction ``r``
(0 forward, 1 reverse). Its state ``x`` (``[BLOCK_D, N]``, float32) lives in registers for the
whole sequence. Time is walked in tiles of ``BLOCK_T`` tokens (the reverse direction walks the
tiles from the end and reads each tile in descending time, so one code path serves both); per
tile the program

* reads ``delta, u, z`` as ``[BLOCK_D, BLOCK_T]`` and ``Bm, Cm`` as ``[N, BLOCK_T]`` tiles
  (contiguous along time: coalesced), converts them to float32 at the load;
* forms the per-token decay ``exp(dt A)`` and input ``dt u Bm`` as ``[BLOCK_D, N, BLOCK_T]``
  register tiles and runs the first-order linear recurrence over the tile's time axis with
  ``tl.associative_scan`` (combine ``(a1, b1), (a2, b2) -> (a1 a2, a2 b1 + b2)``, the parallel
  scan of Blelloch 1990 / Martin & Cundy, arXiv 1709.04057, as in Mamba's fused kernel);
* applies the carried state: ``x_t = A_cum_t * x_carry + B_cum_t``, reads ``y = Cm . x`` off
  over ``N``, takes the tile's last state as the new carry;
* adds ``Dskip u``, multiplies by ``silu(z)`` and atomically adds (relaxed ordering: nothing
  else depends on it) its ``[BLOCK_D, BLOCK_T]`` of ``y`` into a float32 output. Each element
  receives exactly two additions (one per direction) onto zero, and ``0 + a + b == 0 + b + a``
  in floating point, so the result is deterministic.

For float32 I/O the kernel accumulates straight into the (zeroed) output; for float16/bfloat16
into a float32 workspace that is then rounded once into the output. ``softplus`` uses an
accurate ``log1p`` (``log(w) * e / (w - 1)`` with ``w = 1 + e``; Goldberg 1991), since a plain
``log(1 + exp(x))`` in float32 loses about ``6e-8 / dt`` relative accuracy in ``dt`` (~1e-4 at
Mamba's smallest initial ``dt ~ 1e-3``), several times the float32 bar.
Inputs ``A, A_b, Dskip, delta_bias`` are read as float32 (mamba_ssm keeps them in float32).

Runs on CUDA, or on CPU tensors under ``TRITON_INTERPRET=1`` (tests). ``compile_report(cc)``
compiles every launched variant for a GPU target without a GPU and reports registers, shared
memory and spills.
"""

from __future__ import annotations

import torch

from wkvbench.impls import _compile, _gpu
from wkvbench.registry import register_impl

triton, _IMPORT_ERROR = _gpu.try_import("triton")
tl, _ = _gpu.try_import("triton.language")
if tl is None:
    triton = None

#: Channels per program, tokens per tile, warps: [BLOCK_D, N, BLOCK_T] fp32 register tiles.
#: (4, 32, 4) compiles for sm_90 to 96 registers, no spills (about 5 programs per SM).
BLOCK_D = 4
BLOCK_T = 32
NUM_WARPS = 4
#: Under TRITON_INTERPRET the scan's combine runs in Python per element: smaller tiles for tiny T.
INTERPRET_BLOCK_T = 16


def _check(device: torch.device) -> tuple[bool, str]:
    return _gpu.triton_check(triton is not None, device)


if triton is not None:

    @triton.jit
    def _combine(a1, b1, a2, b2):
        # (a1, b1) happens first: x -> a2 * (a1 * x + b1) + b2
        return a1 * a2, a2 * b1 + b2

    @triton.jit
    def _bi_selective_scan_kernel(
        u_ptr,
        delta_ptr,
        z_ptr,
        B_ptr,
        C_ptr,
        A_ptr,  # [2, D, N] float32: A (forward), A_b (reverse)
        Dskip_ptr,
        bias_ptr,
        y_ptr,  # [B, D, T] float32, zeroed
        T,
        D,
        N: tl.constexpr,
        NP: tl.constexpr,
        BLOCK_D: tl.constexpr,
        BLOCK_T: tl.constexpr,
        HAS_Z: tl.constexpr,
        HAS_D: tl.constexpr,
        HAS_BIAS: tl.constexpr,
        SOFTPLUS: tl.constexpr,
    ):
        pid_d = tl.program_id(0)
        pid_b = tl.program_id(1).to(tl.int64)
        rev = tl.program_id(2)

        offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
        offs_n = tl.arange(0, NP)
        offs_i = tl.arange(0, BLOCK_T)
        mask_d = offs_d < D
        mask_n = offs_n < N

        # A of this direction, pre-multiplied by log2(e) for exp2; padded entries 0 (decay 1)
        a_ptrs = A_ptr + rev * D * N + offs_d[:, None] * N + offs_n[None, :]
        A2 = tl.load(a_ptrs, mask=mask_d[:, None] & mask_n[None, :], other=0.0).to(tl.float32) * 1.4426950408889634
        if HAS_D:
            Dv = tl.load(Dskip_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)

        row = pid_b * D * T + offs_d.to(tl.int64) * T  # [BLOCK_D] start of each channel's row
        bn_row = pid_b * N * T + offs_n.to(tl.int64) * T  # [NP] start of each state row of Bm/Cm
        x = tl.zeros([BLOCK_D, NP], dtype=tl.float32)

        for tile in range(0, tl.cdiv(T, BLOCK_T)):
            idx = tile * BLOCK_T + offs_i  # position along this direction's time
            mask_t = idx < T
            t = tl.where(rev == 0, idx, T - 1 - idx)  # actual time index
            m2 = mask_d[:, None] & mask_t[None, :]
            offs = row[:, None] + t[None, :]

            dt = tl.load(delta_ptr + offs, mask=m2, other=0.0).to(tl.float32)
            if HAS_BIAS:
                dt = dt + bias[:, None]
            if SOFTPLUS:
                e = tl.exp(tl.minimum(dt, 20.0))
                w = 1.0 + e
                log1p_e = tl.where(w == 1.0, e, tl.log(w) * (e / (w - 1.0)))
                dt = tl.where(dt > 20.0, dt, log1p_e)
            dt = tl.where(m2, dt, 0.0)  # padded tokens: decay 1, no input
            u = tl.load(u_ptr + offs, mask=m2, other=0.0).to(tl.float32)

            mbn = mask_n[:, None] & mask_t[None, :]
            bn_offs = bn_row[:, None] + t[None, :]
            Bv = tl.load(B_ptr + bn_offs, mask=mbn, other=0.0).to(tl.float32)  # [NP, BLOCK_T]
            Cv = tl.load(C_ptr + bn_offs, mask=mbn, other=0.0).to(tl.float32)

            dA = tl.exp2(dt[:, None, :] * A2[:, :, None])  # [BLOCK_D, NP, BLOCK_T]
            dBu = (dt * u)[:, None, :] * Bv[None, :, :]
            a_cum, b_cum = tl.associative_scan((dA, dBu), 2, _combine)
            xs = a_cum * x[:, :, None] + b_cum  # state after every token of the tile
            y = tl.sum(xs * Cv[None, :, :], axis=1)  # [BLOCK_D, BLOCK_T]
            x = tl.sum(tl.where((offs_i == BLOCK_T - 1)[None, None, :], xs, 0.0), axis=2)

            if HAS_D:
                y += Dv[:, None] * u
            if HAS_Z:
                z = tl.load(z_ptr + offs, mask=m2, other=0.0).to(tl.float32)
                y = y * (z / (1.0 + tl.exp(-z)))
            tl.atomic_add(y_ptr + offs, y, mask=m2, sem="relaxed")


def _next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _launch(u, delta, z, Bm, Cm, A2, Dskip, delta_bias, y32, softplus: bool, block_d, block_t, num_warps) -> None:
    Bsz, D, T = u.shape
    N = A2.shape[-1]
    dummy = y32  # never read when the matching HAS_* flag is False
    grid = (triton.cdiv(D, block_d), Bsz, 2)
    _bi_selective_scan_kernel[grid](
        u,
        delta,
        dummy if z is None else z,
        Bm,
        Cm,
        A2,
        dummy if Dskip is None else Dskip,
        dummy if delta_bias is None else delta_bias,
        y32,
        T,
        D,
        N=N,
        NP=max(2, _next_pow2(N)),
        BLOCK_D=block_d,
        BLOCK_T=block_t,
        HAS_Z=z is not None,
        HAS_D=Dskip is not None,
        HAS_BIAS=delta_bias is not None,
        SOFTPLUS=bool(softplus),
        num_warps=num_warps,
    )


@register_impl(
    "bi_selective_scan",
    name="triton",
    backend="triton",
    priority=30,
    check=_check,
    description="one Triton launch for both directions: fp32 state in registers, channel blocks, tile scans",
)
def bi_selective_scan_triton(
    u,
    delta,
    A,
    A_b,
    Bm,
    Cm,
    Dskip=None,
    z=None,
    delta_bias=None,
    delta_softplus=True,
    *,
    out=None,
    block_d: int | None = None,
    block_t: int | None = None,
    num_warps: int | None = None,
):
    """Both directions in one Triton launch; fp32 state in registers; tile-wise associative scans.

    ``block_d``, ``block_t`` (powers of two) and ``num_warps`` override the tuned launch
    configuration (for tuning on a GPU); the defaults are the variants ``compile_report`` covers.
    """
    block_d = BLOCK_D if block_d is None else block_d
    block_t = (INTERPRET_BLOCK_T if _gpu.triton_interpreting() else BLOCK_T) if block_t is None else block_t
    num_warps = NUM_WARPS if num_warps is None else num_warps
    for name, val in (("block_d", block_d), ("block_t", block_t)):
        if not isinstance(val, int) or val < 1 or val & (val - 1):
            raise ValueError(f"{name}: must be a power of two, got {val!r}")
    _gpu.validate_out(out, u)
    f32 = torch.float32
    A2 = torch.stack([A.to(f32), A_b.to(f32)]).contiguous()
    Dskip = None if Dskip is None else Dskip.to(f32).contiguous()
    delta_bias = None if delta_bias is None else delta_bias.to(f32).contiguous()
    if u.dtype == f32:
        y32 = out if out is not None else torch.empty_like(u)
        y32.zero_()
    else:
        y32 = torch.zeros(u.shape, dtype=f32, device=u.device)
    _launch(u, delta, z, Bm, Cm, A2, Dskip, delta_bias, y32, delta_softplus, block_d, block_t, num_warps)
    if y32.dtype == u.dtype:
        return y32
    if out is None:
        return y32.to(u.dtype)
    out.copy_(y32)
    return out


# ----------------------------------------------------------------------------- compile report
_TL_TYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def kernel_variants() -> list[dict]:
    """Every launched variant, in the form ``_compile.triton_compile_rows`` takes.

    The three I/O dtypes with ``z``, ``Dskip``, ``delta_bias`` and softplus present (Audio Mamba's
    configuration; dropping any of them only removes work), N = 16.
    """
    N = 16
    out = []
    for ty in _TL_TYPES.values():
        sig = {n: f"*{ty}" for n in ("u_ptr", "delta_ptr", "z_ptr", "B_ptr", "C_ptr")}
        sig.update({n: "*fp32" for n in ("A_ptr", "Dskip_ptr", "bias_ptr", "y_ptr")}, T="i32", D="i32")
        consts = {"N": N, "NP": _next_pow2(N), "BLOCK_D": BLOCK_D, "BLOCK_T": BLOCK_T,
                  "HAS_Z": True, "HAS_D": True, "HAS_BIAS": True, "SOFTPLUS": True}  # fmt: skip
        sig.update({k: "constexpr" for k in consts})
        out.append(dict(impl="triton", fn=_bi_selective_scan_kernel, signature=sig, constexprs=consts,
                        options={"num_warps": NUM_WARPS},
                        config=f"{ty} N={N} bd={BLOCK_D} bt={BLOCK_T} w={NUM_WARPS}"))  # fmt: skip
    return out


def compile_report(cc: int = 90) -> list[dict]:
    """Compile every launched variant (per I/O dtype) for ``sm_<cc>`` without a GPU; resource usage.

    Must run without ``TRITON_INTERPRET`` (the caller runs it in a clean subprocess). Without
    triton the row says ``skipped`` and which extra brings it.
    """
    if triton is None:
        return _compile.skipped_rows(["triton"], _compile.ToolMissing.extra("triton", _IMPORT_ERROR))
    return _compile.report_or_skip(["triton"], lambda: _compile.triton_compile_rows(kernel_variants(), cc))
