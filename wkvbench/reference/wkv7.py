"""float64 reference for the RWKV-7 recurrence and Bi-WKV7 (CONTRACT section 1).

This is the truth every implementation is checked against: a plain per-token loop, written to
be read, not to be fast. For one (batch, head), with state ``S[i, j]`` (i: value channel,
j: key channel)::

    d_t = exp(-exp(w_t))
    S_t = S_{t-1} diag(d_t) + (S_{t-1} a_t) b_t^T + v_t k_t^T
    y_t = S_t r_t

It computes in float64 from the inputs exactly as given (already rounded to their I/O dtype),
on whatever device they are on.
"""

from __future__ import annotations

import torch
from torch import Tensor


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
    y = torch.empty(B, T, H, N, dtype=torch.float64, device=r.device)
    steps = range(T - 1, -1, -1) if reverse else range(T)
    for t in steps:
        sa = torch.einsum("bhij,bhj->bhi", S, a[:, t])
        S = S * d[:, t, :, None, :] + sa[..., :, None] * b[:, t, :, None, :] + v[:, t, :, :, None] * k[:, t, :, None, :]
        y[:, t] = torch.einsum("bhij,bhj->bhi", S, r[:, t])
    return y, S


def bi_wkv7(r: Tensor, w: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, g: Tensor | None = None) -> Tensor:
    """Bi-WKV7 in float64: ``g * y_fwd + (1 - g) * y_rev``; ``g`` is ``[B, T, H]`` (default 0.5)."""
    y_fwd, _ = wkv7(r, w, k, v, a, b)
    y_rev, _ = wkv7(r, w, k, v, a, b, reverse=True)
    if g is None:
        return 0.5 * (y_fwd + y_rev)
    g = g.to(device=r.device, dtype=torch.float64)[..., None]
    return g * y_fwd + (1.0 - g) * y_rev
