"""Training (forward + backward) of ``numba_cuda``: the autograd Function that runs the fused kernels.

``numba_cuda`` runs :class:`BiWKV7Numba` when an input requires grad: the training forward of
``fwd.py`` saves fp32 ``sa`` and state checkpoints (:func:`saved_bytes`), the backward is the one
fused launch of ``bwd.py``. Checkpoint interval, saved memory and the backward's math:
docs/notes/numba_bi_wkv7.md ("Training").
"""

from __future__ import annotations

import torch

from wkvbench.impls import _gpu
from wkvbench.impls.bi_wkv7_numba import bwd, fwd
from wkvbench.impls.bi_wkv7_numba.common import expand_template
from wkvbench.impls.bi_wkv7_numba.fwd import forward_save, fwd_save_template

KERNELS = (fwd.SAVE_KERNEL, bwd.KERNEL)
__all__ = ["KERNELS", "BiWKV7Numba", "checkpoint_tokens", "forward_save", "fwd_save_template", "kernel_source"]

#: Scan steps per state checkpoint: 16 for 16-bit I/O, 8 for float32 (docs/notes/training_kernels.md).
checkpoint_tokens = _gpu.checkpoint_tokens


def saved_bytes(B: int, T: int, H: int, N: int = 64, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes the training forward saves for the backward: fp32 ``sa`` and checkpoints, both directions."""
    return _gpu.sa_checkpoint_bytes(B, T, H, N, dtype)


def kernel_source(name: str, kind: str) -> str:
    """Python source of training kernel ``name`` (one of :data:`KERNELS`) for I/O ``kind`` (f32, f16, bf16)."""
    if name not in KERNELS:
        raise ValueError(f"name: expected one of {KERNELS}, got {name!r}")
    if kind not in ("f32", "f16", "bf16"):
        raise ValueError(f"kind: no kernel variant {kind!r}; expected f32, f16 or bf16")
    if name == bwd.KERNEL:
        return bwd.kernel_source(kind)
    return expand_template(fwd_save_template(), kind)


class BiWKV7Numba(torch.autograd.Function):
    """Fused Bi-WKV7: the forward saves ``sa`` and checkpoints, the backward is one fused launch."""

    @staticmethod
    def forward(ctx, r, w, k, v, a, b, g, rows_per_block):
        y, sa, ck = fwd.forward_save(r, w, k, v, a, b, g, rows_per_block)
        ctx.save_for_backward(r, w, k, v, a, b, g, sa, ck)
        return y

    @staticmethod
    def backward(ctx, dy):
        r, w, k, v, a, b, g, sa, ck = ctx.saved_tensors
        grads = bwd.backward(r, w, k, v, a, b, g, dy.to(r.dtype).contiguous(), sa, ck)
        return (*grads, None)


# ----------------------------------------------------------------------------- compile report
def report_kernels():
    """``(kernel, kind, python function, signature, shared bytes, block, launch bounds)`` of every training kernel."""
    rows = []
    for kind in ("f32", "f16", "bf16"):
        rows.append((fwd.SAVE_KERNEL, kind, fwd._save_kernel_function(kind), fwd._save_signature(kind),
                     fwd.SHARED_BYTES, "2R", None))  # fmt: skip
    for kind in ("f32", "f16", "bf16"):
        rows.append((bwd.KERNEL, kind, bwd._kernel_function(kind), bwd._signature(kind), bwd.SHARED_BYTES,
                     str(bwd.BWD_THREADS), bwd.LAUNCH_BOUNDS))  # fmt: skip
    return rows
