"""Bi-WKV7 training with the Triton kernels: one autograd Function, fused forward + fused backward.

``BiWKV7Triton.apply(r, w, k, v, a, b, g, kind, ...)`` runs the one-launch training forward of
``bi_wkv7_triton.py`` (``kind``: ``"recurrent"``, ``"chunked"`` or ``"chunked_tf32"``, both
directions and the gate merge, ``save=True``) and saves, besides the inputs, float32
``states [2, B, H, C, N, N]`` (C = ceil(T / 16)): each direction's state where its scan enters
a 16-token chunk (forward: after tokens < 16c; reverse: after tokens >= 16(c + 1)).

Saved bytes per (token, head) per direction: ``64 * 64 * 4 / 16 = 1024`` for every I/O dtype,
i.e. 32 bytes per element of ``y`` for both directions (``audiorwkv_catflip``: 1280 for 16-bit
I/O, 2304 for float32, plus its concatenated copies of the inputs; here autograd keeps the
caller's inputs, no copies). T is rounded up to a multiple of 16. :func:`saved_bytes`.

Backward, by kind (:data:`DEFAULT_BACKWARD`; :func:`set_backward` overrides it for every kind):

* ``"chunked"`` (``triton_chunked``, ``triton_chunked_tf32``):
  ``_bi_wkv7_triton_chunked_bwd.chunked_backward(r, w, k, v, a, b, g, dy, states)``, the WY-form
  chunked backward on tensor cores (a sequential dS pass over chunks, then every chunk in
  parallel; derivation in docs/notes/triton_chunked_backward.md). Its working set during the
  backward: per (token, head) and direction 1024 B of dS, 512 B of SA and D and 256 B of decay
  shares (56 B per element of ``y``), plus the float32 gradient buffers.
* ``"recurrent"`` (``triton_recurrent``): ``_bi_wkv7_triton_bwd.py``, one launch of the per-token
  backward kernel (each chunk's forward recomputed from its saved state) into zeroed float32
  buffers, then one conversion to the I/O dtype per gradient (none for float32); no working set
  beyond those buffers.

So each backward kernel has a registered implementation that times it; the other pairing (the
chunked forward with the recurrent backward) is one :func:`set_backward` away.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wkvbench.impls import _gpu
from wkvbench.registry import ALL_DTYPES

BACKWARDS = ("recurrent", "chunked")
KINDS = ("recurrent", "chunked", "chunked_tf32")
#: The backward each kind's Function runs unless :data:`BACKWARD` overrides it.
DEFAULT_BACKWARD = {"recurrent": "recurrent", "chunked": "chunked", "chunked_tf32": "chunked"}
#: Override for every kind (``"recurrent"`` or ``"chunked"``), or None: :data:`DEFAULT_BACKWARD`.
BACKWARD: str | None = None
TL_PTR = {torch.float32: "*fp32", torch.bfloat16: "*bf16", torch.float16: "*fp16"}


def set_backward(name: str | None) -> None:
    """Select the backward every later training forward uses (``"recurrent"`` or ``"chunked"``; None: by kind)."""
    global BACKWARD
    if name is not None and name not in BACKWARDS:
        raise ValueError(f"name: backward must be one of {BACKWARDS}, got {name!r}")
    BACKWARD = name


def saved_bytes(B: int, T: int, H: int, N: int = 64, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes the training forward saves for the backward: fp32 chunk-entry states of both directions.

    The same for every I/O ``dtype`` (accepted for the common signature); the inputs autograd
    keeps are not counted.
    """
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype: expected a torch dtype, got {dtype!r}")
    return 4 * 2 * B * H * -(-int(T) // 16) * N * N


def forward(r, w, k, v, a, b, g, kind: str, block_v: int | None = None):
    """The training forward: ``(y, states)`` (see the module docstring)."""
    from wkvbench.impls import bi_wkv7_triton as tk

    if kind == "recurrent":
        return tk.bi_wkv7_recurrent(r, w, k, v, a, b, g, block_v=block_v, save=True)
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    return tk.bi_wkv7_chunked(r, w, k, v, a, b, g, tf32=kind == "chunked_tf32", block_v=block_v, save=True)


def recurrent_backward(r, w, k, v, a, b, g, dy, states, block_v: int | None = None):
    """The per-token backward kernel: ``(dr, dw, dk, dv, da, db, dg or None)`` in the I/O dtype."""
    from wkvbench.impls import _bi_wkv7_triton_bwd as kb

    B, T, H, N = r.shape
    cfg = kb.backward_config(B, H, _gpu.sm_count(r.device))
    BV = block_v or cfg["BV"]
    if BV not in kb.BLOCKS:
        raise ValueError(f"block_v: must be one of {kb.BLOCKS}, got {block_v!r}")
    acc = torch.zeros(6, B, T, H, N, dtype=torch.float32, device=r.device)
    dg = torch.zeros(B, T, H, dtype=torch.float32, device=r.device)
    if g is None:
        gate, gs = torch.full((1,), 0.5, dtype=r.dtype, device=r.device), (0, 0, 0)
    else:
        gate, gs = g, (T * H, H, 1)
    kb._bi_wkv7_bwd_kernel[(N // BV, 2, B * H)](
        r, w, k, v, a, b, gate, dy, states, *acc, dg, T, H, *gs,
        N=N, BV=BV, HAS_G=g is not None, num_warps=kb.warps(BV), num_stages=1,
    )  # fmt: skip
    grads = tuple(x.to(r.dtype) for x in acc)
    return (*grads, None if g is None else dg.to(g.dtype))


class BiWKV7Triton(torch.autograd.Function):
    """Fused Bi-WKV7 forward (saving the chunk-entry states) and fused backward."""

    @staticmethod
    def forward(ctx, r, w, k, v, a, b, g, kind, block_v=None, bwd_block_v=None, backward=None):
        xs = [x.contiguous() for x in (r, w, k, v, a, b)]
        g = None if g is None else g.contiguous()
        backward = backward or BACKWARD or DEFAULT_BACKWARD[kind]
        y, states = forward(*xs, g, kind, block_v=block_v)
        ctx.save_for_backward(*xs, g, states)
        ctx.backward, ctx.bwd_block_v = backward, bwd_block_v
        return y

    @staticmethod
    def backward(ctx, dy):
        r, w, k, v, a, b, g, states = ctx.saved_tensors
        dy = dy.to(r.dtype).contiguous()
        if ctx.backward == "chunked":
            from wkvbench.impls._bi_wkv7_triton_chunked_bwd import chunked_backward

            grads = chunked_backward(r, w, k, v, a, b, g, dy, states)
        else:
            grads = recurrent_backward(r, w, k, v, a, b, g, dy, states, block_v=ctx.bwd_block_v)
        return (*grads, None, None, None, None)


def train_or_none(kind: str, r, w, k, v, a, b, g, out) -> Tensor | None:
    """The differentiable path when grad mode is on and an input requires grad, else None (inference).

    The registered functions of ``bi_wkv7_triton.py`` call it first.
    """
    if not _gpu.training_call(out, r, w, k, v, a, b, g):
        return None
    if r.shape[-1] != 64:
        raise ValueError(f"r: head size {r.shape[-1]} not supported by the Triton kernels (supported: (64,))")
    return bi_wkv7_train(r, w, k, v, a, b, g, kind=kind)


def bi_wkv7_train(
    r,
    w,
    k,
    v,
    a,
    b,
    g=None,
    *,
    kind: str,
    block_v: int | None = None,
    bwd_block_v: int | None = None,
    backward: str | None = None,
) -> Tensor:
    """Differentiable fused Bi-WKV7 (``kind`` as :func:`forward`; block sizes override the configs;
    ``backward``: ``"recurrent"`` or ``"chunked"``, default :data:`BACKWARD` or the kind's)."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    if backward is not None and backward not in BACKWARDS:
        raise ValueError(f"backward: expected one of {BACKWARDS}, got {backward!r}")
    return BiWKV7Triton.apply(r, w, k, v, a, b, g, kind, block_v, bwd_block_v, backward)


# ---------------------------------------------------------------------------------- compile report
def kernel_variants() -> list[dict]:
    """Every Triton kernel specialisation of the three impls, inference and training forwards and the backward."""
    from wkvbench.impls import bi_wkv7_triton as tk

    out = []
    for dtype in ALL_DTYPES:
        p = TL_PTR[dtype]
        dt = str(dtype).replace("torch.", "")
        io = {n: p for n in ("r", "w", "k", "v", "a", "b", "g", "y")}
        for BV, save in [(bv, sv) for sv in (False, True) for bv in tk.RECURRENT_BLOCKS if bv <= (8 if sv else 16)]:
            sig = dict(io, ws="*fp32", st="*fp32", T="i32", H="i32", g_sb="i32", g_st="i32",
                       g_sh="i32", N="constexpr", BV="constexpr", OUT_KIND="constexpr", SAVE="constexpr")  # fmt: skip
            const = {"N": 64, "BV": BV, "OUT_KIND": tk._OUT_KIND[dtype], "SAVE": save}
            out.append(dict(impl="triton_recurrent", fn=tk._bi_wkv7_recurrent_kernel, signature=sig, constexprs=const,
                            options={"num_warps": 1, "num_stages": 1}, align=True,
                            config=f"{dt} BV={BV} warps=1" + (" save" if save else "")))  # fmt: skip
        for tf32 in (False, True) if dtype == torch.float32 else (False,):
            exact = dtype == torch.float32 and not tf32
            for BV, save in [(bv, sv) for sv in (False, True) for bv in tk.chunked_blocks(exact)]:
                sig = dict(io, ws="*fp32", cnt="*i32", st="*fp32", T="i32", H="i32", g_sb="i32",
                           g_st="i32", g_sh="i32", C="i32", swap="i32", N="constexpr", BV="constexpr", L="constexpr",
                           OUT_KIND="constexpr", PREC="constexpr", VKIND="constexpr", SAVE="constexpr")  # fmt: skip
                const = {"N": 64, "BV": BV, "L": 16, "OUT_KIND": tk._OUT_KIND[dtype], "PREC": 0 if exact else 1,
                         "VKIND": 2 if dtype == torch.float16 else 0, "SAVE": save}  # fmt: skip
                nw = tk._chunked_warps(BV, exact, save)
                dots = "ieee" if exact else ("tf32+fp16" if dtype == torch.float16 else "tf32")
                out.append(dict(impl="triton_chunked_tf32" if tf32 else "triton_chunked", fn=tk._bi_wkv7_chunked_kernel,
                                signature=sig, constexprs=const, options={"num_warps": nw, "num_stages": 1},
                                config=f"{dt} L=16 BV={BV} warps={nw} dots={dots}" + (" save" if save else ""),
                                align=True))  # fmt: skip
    from wkvbench.impls import _bi_wkv7_triton_bwd

    return out + _bi_wkv7_triton_bwd.kernel_variants(TL_PTR)
