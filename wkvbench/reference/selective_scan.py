"""float64 reference for Mamba's selective scan and Audio Mamba's bidirectional "Fo-Bi" scan.

docs/spec.md section 3, as mamba_ssm's ``selective_scan_fn`` defines it (real A, B and C shared by
all channels: ``Bm, Cm`` are ``[B, N, T]``)::

    dt_t = softplus(delta_t + delta_bias)           (or without softplus)
    x_t  = exp(dt_t * A) * x_{t-1} + dt_t * Bm_t * u_t
    y_t  = Cm_t . x_t + Dskip * u_t ;   y_t *= silu(z_t) when z is given

Differentiable; when differentiated the scan runs in blocks of :data:`GRAD_BLOCK` tokens
recomputed in the backward, so a long-T reference gradient keeps one state per block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    Bm: Tensor,
    Cm: Tensor,
    Dskip: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = True,
) -> Tensor:
    """One causal selective scan in float64. ``u, delta, z``: ``[B, D, T]``; returns ``[B, D, T]``."""
    f64 = torch.float64
    u, delta, A, Bm, Cm = (x.to(f64) for x in (u, delta, A, Bm, Cm))
    dt = delta if delta_bias is None else delta + delta_bias.to(f64)[None, :, None]
    if delta_softplus:
        dt = F.softplus(dt)
    Bsz, D, T = u.shape
    x = torch.zeros(Bsz, D, A.shape[1], dtype=f64, device=u.device)
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (u, dt, A, Bm, Cm))):
        y, _ = _scan(x, dt, u, A, Bm, Cm)
    else:  # gradients: blocks recomputed in the backward (one state kept per block)
        parts = []
        for t0 in range(0, T, GRAD_BLOCK):
            sl = slice(t0, min(T, t0 + GRAD_BLOCK))
            yb, x = checkpoint(_scan, x, dt[..., sl], u[..., sl], A, Bm[..., sl], Cm[..., sl], use_reentrant=False)
            parts.append(yb)
        y = torch.cat(parts, dim=-1)
    if Dskip is not None:
        y = y + Dskip.to(f64)[None, :, None] * u
    if z is not None:
        y = y * F.silu(z.to(f64))
    return y


#: Tokens per recomputed block when the reference is differentiated.
GRAD_BLOCK = 64


def _scan(x, dt, u, A, Bm, Cm):
    """The recurrence from state ``x`` over the tokens given: ``(y [B, D, L], last x)``."""
    y = torch.empty(u.shape, dtype=torch.float64, device=u.device)
    for t in range(u.shape[-1]):
        x = torch.exp(dt[:, :, t, None] * A) * x + (dt[:, :, t] * u[:, :, t])[..., None] * Bm[:, None, :, t]
        y[:, :, t] = (x * Cm[:, None, :, t]).sum(-1)
    return y, x


def bi_selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    A_b: Tensor,
    Bm: Tensor,
    Cm: Tensor,
    Dskip: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = True,
) -> Tensor:
    """Audio Mamba's Fo-Bi scan: forward scan + time-flipped scan with ``A_b``, flipped back."""

    def flip(x: Tensor | None) -> Tensor | None:
        return None if x is None else x.flip(-1)

    fwd = selective_scan(u, delta, A, Bm, Cm, Dskip, z, delta_bias, delta_softplus)
    rev = selective_scan(flip(u), flip(delta), A_b, flip(Bm), flip(Cm), Dskip, flip(z), delta_bias, delta_softplus)
    return fwd + rev.flip(-1)
