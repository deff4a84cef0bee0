"""float64 reference for the RWKV-7 recurrence and Bi-WKV7 (docs/spec.md section 1).

This is the truth every implementation is checked against: a plain per-token loop, written to
be read, not to be fast. For one (batch, head), with state ``S[i, j]`` (i: value channel,
j: key channel)::

    d_t = exp(-exp(w_t))
    S_t = S_{t-1} diag(d_t) + (S_{t-1} a_t) b_t^T + v_t k_t^T
    y_t = S_t r_t

It computes in float64 from the inputs exactly as given (already rounded to their I/O dtype),
on whatever device they are on. It is differentiable (the float64 truth for gradients is autograd
through it); when differentiated it runs in blocks of :data:`GRAD_BLOCK` tokens recomputed in the
backward, so a long-T reference gradient keeps one state per block, not one per token.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint


def wkv7(
    r: Tensor,
    w: Tensor,
    k: Tensor,
    v: Tensor,
    a: Tensor,
    b: Tensor,
    state: Tensor | None = None,
    reverse: bool = False,
) -> tuple[Tensor, Tensor]:
    """Causal (or, with ``reverse=True``, anti-causal) WKV7 in float64.

    Inputs are ``[B, T, H, N]``; ``state`` is ``[B, H, N, N]`` (value x key). Returns
    ``(y [B, T, H, N], final_state [B, H, N, N])``, both float64. With ``reverse=True`` the
    scan runs from ``t = T-1`` down to ``0`` and ``final_state`` is the state after token 0.
    """
    r, w, k, v, a, b = (x.to(torch.float64) for x in (r, w, k, v, a, b))
    B, T, H, N = r.shape
    S = torch.zeros(B, H, N, N, dtype=torch.float64, device=r.device)
    if state is not None:
        S = S + state.to(device=r.device, dtype=torch.float64)
    d = torch.exp(-torch.exp(w))
    if not (torch.is_grad_enabled() and any(x.requires_grad for x in (r, d, k, v, a, b, S))):
        y = torch.empty(B, T, H, N, dtype=torch.float64, device=r.device)
        S = _steps(S, r, d, k, v, a, b, range(T - 1, -1, -1) if reverse else range(T), y)
        return y, S
    # Gradients: blocks of GRAD_BLOCK tokens, each recomputed in the backward (activation
    # checkpointing), so autograd keeps one state per block instead of every token's.
    ys = [None] * T
    starts = range(0, T, GRAD_BLOCK)
    for t0 in reversed(starts) if reverse else starts:
        t1 = min(T, t0 + GRAD_BLOCK)
        S, yb = checkpoint(
            _block,
            S,
            r[:, t0:t1],
            d[:, t0:t1],
            k[:, t0:t1],
            v[:, t0:t1],
            a[:, t0:t1],
            b[:, t0:t1],
            reverse,
            use_reentrant=False,
        )
        ys[t0] = yb
    return torch.cat([yb for yb in ys if yb is not None], dim=1), S


#: Tokens per recomputed block when the reference is differentiated.
GRAD_BLOCK = 64


def _steps(S, r, d, k, v, a, b, steps, y):
    """The recurrence over ``steps`` (indices into the token axis), writing ``y``; returns the last S."""
    for t in steps:
        sa = torch.einsum("bhij,bhj->bhi", S, a[:, t])
        S = S * d[:, t, :, None, :] + sa[..., :, None] * b[:, t, :, None, :] + v[:, t, :, :, None] * k[:, t, :, None, :]
        y[:, t] = torch.einsum("bhij,bhj->bhi", S, r[:, t])
    return S


def _block(S, r, d, k, v, a, b, reverse: bool):
    L = r.shape[1]
    y = torch.empty(r.shape, dtype=torch.float64, device=r.device)
    S = _steps(S, r, d, k, v, a, b, range(L - 1, -1, -1) if reverse else range(L), y)
    return S, y


def bi_wkv7(r: Tensor, w: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, g: Tensor | None = None) -> Tensor:
    """Bi-WKV7 in float64: ``g * y_fwd + (1 - g) * y_rev``; ``g`` is ``[B, T, H]`` (default 0.5)."""
    y_fwd, _ = wkv7(r, w, k, v, a, b)
    y_rev, _ = wkv7(r, w, k, v, a, b, reverse=True)
    if g is None:
        return 0.5 * (y_fwd + y_rev)
    g = g.to(device=r.device, dtype=torch.float64)[..., None]
    return g * y_fwd + (1.0 - g) * y_rev
