"""Bi-WKV7 training with the Triton kernels: one autograd Function, fused forward + fused backward.

:class:`BiWKV7Triton` runs the one-launch training forward of ``fwd.py`` (``kind``: recurrent,
chunked, chunked_tf32 or chunked_tc, ``save=True``), saves the fp32 16-token chunk-entry states
of both directions (:func:`saved_bytes`) and runs the backward of the kind (:data:`DEFAULT_BACKWARD`:
the per-token kernel of ``bwd.py`` for ``triton_recurrent``, the chunked WY backward of
``chunked_bwd.py`` for ``triton_chunked``/``triton_chunked_tf32``/``triton_chunked_tc``, the last
with 3xTF32 dots; :func:`set_backward` overrides it). Saved memory and the two backwards:
docs/notes/triton_bi_wkv7.md ("Training").
"""

from __future__ import annotations

import torch
from torch import Tensor

from wkvbench.impls import _gpu
from wkvbench.impls.bi_wkv7_triton import bwd, chunked_bwd, fwd

BACKWARDS = ("recurrent", "chunked")
KINDS = ("recurrent", "chunked", "chunked_tf32", "chunked_tc")
#: The backward each kind's Function runs unless :data:`BACKWARD` overrides it.
DEFAULT_BACKWARD = {"recurrent": "recurrent", "chunked": "chunked", "chunked_tf32": "chunked", "chunked_tc": "chunked"}
#: Override for every kind (``"recurrent"`` or ``"chunked"``), or None: :data:`DEFAULT_BACKWARD`.
BACKWARD: str | None = None


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
    """The training forward: ``(y, states)`` (``states``: fp32 chunk-entry states, see ``fwd._saved``)."""
    if kind == "recurrent":
        return fwd.bi_wkv7_recurrent(r, w, k, v, a, b, g, block_v=block_v, save=True)
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    tf32, tc = kind == "chunked_tf32", kind == "chunked_tc"
    return fwd.bi_wkv7_chunked(r, w, k, v, a, b, g, tf32=tf32, tc=tc, block_v=block_v, save=True)


class BiWKV7Triton(torch.autograd.Function):
    """Fused Bi-WKV7 forward (saving the chunk-entry states) and fused backward."""

    @staticmethod
    def forward(ctx, r, w, k, v, a, b, g, kind, block_v=None, bwd_block_v=None, backward=None):
        xs = [x.contiguous() for x in (r, w, k, v, a, b)]
        g = None if g is None else g.contiguous()
        backward = backward or BACKWARD or DEFAULT_BACKWARD[kind]
        y, states = forward(*xs, g, kind, block_v=block_v)
        ctx.save_for_backward(*xs, g, states)
        ctx.backward, ctx.bwd_block_v, ctx.prec = backward, bwd_block_v, 2 if kind == "chunked_tc" else None
        return y

    @staticmethod
    def backward(ctx, dy):
        r, w, k, v, a, b, g, states = ctx.saved_tensors
        dy = dy.to(r.dtype).contiguous()
        if ctx.backward == "chunked":
            grads = chunked_bwd.chunked_backward(
                r, w, k, v, a, b, g, dy, states, **({} if ctx.prec is None else {"prec": ctx.prec})
            )
        else:
            grads = bwd.recurrent_backward(r, w, k, v, a, b, g, dy, states, block_v=ctx.bwd_block_v)
        return (*grads, None, None, None, None)


def train_or_none(kind: str, r, w, k, v, a, b, g, out) -> Tensor | None:
    """The differentiable path when grad mode is on and an input requires grad, else None (inference).

    The registered functions (the package's ``__init__``) call it first.
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
