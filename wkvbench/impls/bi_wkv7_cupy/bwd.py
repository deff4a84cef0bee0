"""The fused backward of ``cupy_cuda``: one CUDA C launch, both directions, the gate merge and ``dg``.

``bi_wkv7_cupy_bwd.cu``'s ``bi_wkv7_bwd_kernel<IO, N, CP>``: grid ``2 * B * H`` (one block per
direction, batch and head), 128 threads in column and row groups, gradients added into zeroed
fp32 buffers with ``atomicAdd`` (two adds onto 0 per element: deterministic). It reads what the
training forward (``fwd.py``) saves: ``sa`` and the state checkpoints. Math, checkpoints and
race-freedom: docs/notes/cupy_bi_wkv7.md ("Training").
"""

from __future__ import annotations

import numpy as np
import torch

from wkvbench.impls.bi_wkv7_cupy.common import _IO_TYPE, Launcher, _aligned, _ptr, checkpoint_tokens

BWD_KERNEL = "bi_wkv7_bwd_kernel"


def bwd_name(dtype: torch.dtype, n: int) -> str:
    """Name expression of the backward, e.g. ``bi_wkv7_bwd_kernel<wkv_bf16, 64, 16>``."""
    return f"{BWD_KERNEL}<{_IO_TYPE[dtype]}, {n}, {checkpoint_tokens(dtype)}>"


# ----------------------------------------------------------------------------- launch
def backward(xs, g, dy: torch.Tensor, sa: torch.Tensor, ck: torch.Tensor, launcher: Launcher):
    """The backward launch: ``(dr, dw, dk, dv, da, db, dg)`` in the I/O dtype (``dg`` None without ``g``)."""
    r = xs[0]
    B, T, H, N = r.shape
    numel = r.numel()
    acc = torch.zeros(6 * numel + (0 if g is None else B * T * H), dtype=torch.float32, device=r.device)
    parts = [acc[i * numel : (i + 1) * numel].view(r.shape) for i in range(6)]
    dg = None if g is None else acc[6 * numel :].view(B, T, H)
    dy = _aligned(dy.to(r.dtype))
    args = (
        *(_ptr(x) for x in xs),
        _ptr(g),
        _ptr(dy),
        _ptr(sa),
        _ptr(ck),
        *(_ptr(x) for x in parts),
        _ptr(dg),
        np.int32(B),
        np.int32(T),
        np.int32(H),
    )
    launcher(bwd_name(r.dtype, N), (2 * B * H,), (2 * N,), args, r.device)
    if r.dtype != torch.float32:  # one conversion of the whole buffer to the I/O dtype
        acc = acc.to(r.dtype)
        parts = [acc[i * numel : (i + 1) * numel].view(r.shape) for i in range(6)]
        dg = None if g is None else acc[6 * numel :].view(B, T, H)
    return (*parts, dg)
