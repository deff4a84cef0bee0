"""Audio Mamba's bidirectional selective scan in plain PyTorch: ``torch_loop`` and ``torch_chunked``.

The op (docs/spec.md section 3) is Mamba's selective scan (Gu & Dao, arXiv 2312.00752) run forward
and on the time-flipped inputs with its own ``A_b`` ("Fo-Bi", Audio Mamba, Erol et al., arXiv
2406.03344)::

    dt_t = softplus(delta_t + delta_bias)
    x_t  = exp(dt_t A) * x_{t-1} + dt_t Bm_t u_t          x: [D, N] per sequence
    y_t  = Cm_t . x_t + Dskip u_t ;  y_t *= silu(z_t)
    y    = scan(fwd) + flip(scan(flipped inputs, A_b))

Both implementations stack the two directions on a leading axis (the reverse direction is the
time-flip of ``delta``, ``u``, ``Bm``, ``Cm``), keep the state in float32 (float64 for float64
input) and merge exactly: since both scans share ``Dskip`` and ``z``,
``y = (C.x_fwd + flip(C.x_rev) + 2 Dskip u) * silu(z)``, rounded to the I/O dtype once.

``torch_loop`` (the baseline) is the standard PyTorch scan, the shape of mamba_ssm's
``selective_scan_ref``: decays ``exp(dt A)`` and inputs ``dt u Bm`` are computed vectorised for a
block of tokens, then one fused ``addcmul`` per token advances the state, and ``C.x`` is read off
per block. T sequential steps.

``torch_chunked`` is a chunked scan with ``C = ceil(T / L)`` chunks of ``L`` tokens:

1. Local chunk states, all chunks at once. Because ``A`` does not depend on time, the decay from
   token ``l`` to the end of its chunk is ``exp(A * sum_{l<s<L} dt_s)``: a reverse cumulative
   sum of ``dt`` times ``A``, whose exponent is <= 0 (``dt >= 0``, ``A < 0``), so every factor
   is ``exp(nonpositive)`` and nothing divides by a small cumulative decay. The chunk's own
   contribution to its end state is ``R_c = sum_l exp(A rem_l) dt_l u_l Bm_l`` and its total
   decay ``P_c = exp(A sum_l dt_l)``.
2. Hand-over, sequential over chunks: ``X_{c+1} = P_c * X_c + R_c`` (C small steps).
3. Outputs, sequential over the L positions of a chunk but vectorised over all chunks: each
   chunk restarts from its true initial state ``X_c`` and applies the per-token recurrence.

So the sequential depth is ``C + L`` steps instead of ``T`` (``L`` defaults to a power of two
near ``sqrt(T)``), and step 1's ``[chunks, D, L, N]`` temporary is processed in groups of chunks
so its memory stays bounded (``budget`` elements). Any ``T``: the last chunk is padded with
identity tokens (``dt = 0``, zero input). Without ``delta_softplus``, ``dt`` may be negative;
the factors then exceed 1 exactly as the recurrence itself does, never by division.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from wkvbench.impls._register import torch_impl

#: Elements of the chunked scan's step-1 temporary processed at once (float32: 1 GiB).
TEMP_BUDGET = 1 << 28


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _stacked(u, delta, A, A_b, Bm, Cm, delta_bias, delta_softplus, cdt):
    """Both directions on a leading axis of 2: ``dt, du [2, B, D, T]``, ``A [2, 1, D, N]``,
    ``Bt, Ct [2, B, T, N]``, each in the compute dtype ``cdt``."""
    dt = delta.to(cdt)
    if delta_bias is not None:
        dt = dt + delta_bias.to(cdt)[None, :, None]
    if delta_softplus:
        dt = F.softplus(dt)
    du = dt * u.to(cdt)

    def both(x: Tensor) -> Tensor:
        return torch.stack([x, x.flip(-1)])

    A2 = torch.stack([A.to(cdt), A_b.to(cdt)])[:, None]
    Bt = both(Bm.to(cdt)).transpose(-1, -2)
    Ct = both(Cm.to(cdt)).transpose(-1, -2)
    return both(dt), both(du), A2, Bt, Ct


def _finish(ys: Tensor, u, Dskip, z, out_dtype, out: Tensor | None) -> Tensor:
    """``(C.x_fwd + flip(C.x_rev) + 2 Dskip u) * silu(z)`` from ``ys [2, B, D, T]``."""
    y = ys[0] + ys[1].flip(-1)
    if Dskip is not None:
        y = y + (2.0 * Dskip.to(y.dtype))[None, :, None] * u.to(y.dtype)
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    if out is None:
        return y.to(out_dtype)
    out.copy_(y)
    return out


# ----------------------------------------------------------------------------- torch_loop
def selective_scan_loop(dt: Tensor, du: Tensor, A: Tensor, Bt: Tensor, Ct: Tensor, block: int = 256) -> Tensor:
    """``C.x`` of the recurrence by the per-token loop. ``dt, du``: ``[..., D, T]``; ``A``:
    broadcastable to ``[..., D, N]``; ``Bt, Ct``: ``[..., T, N]``. Returns ``[..., D, T]``."""
    *lead, D, T = dt.shape
    N = A.shape[-1]
    x = torch.zeros(*lead, D, N, dtype=dt.dtype, device=dt.device)
    y = torch.empty(*lead, D, T, dtype=dt.dtype, device=dt.device)
    for t0 in range(0, T, block):
        t1 = min(T, t0 + block)
        dA = torch.exp(dt[..., t0:t1, None] * A[..., None, :])  # [..., D, L, N]
        dBu = du[..., t0:t1, None] * Bt[..., None, t0:t1, :]
        dA, dBu = _time_first(dA), _time_first(dBu)  # [L, ..., D, N]: per-token slices contiguous
        if _recording(dA, dBu, x):  # autograd: out= is not differentiable; stack the states instead
            states = []
            for i in range(t1 - t0):
                x = torch.addcmul(dBu[i], dA[i], x)
                states.append(x)
            xs = torch.stack(states)
        else:
            xs = torch.empty_like(dBu)
            for i in range(t1 - t0):
                x = torch.addcmul(dBu[i], dA[i], x, out=xs[i])
        # y[..., d, t] = sum_n xs[t, ..., d, n] * Ct[..., t, n]
        cb = _time_first(Ct[..., t0:t1, :].unsqueeze(-3))  # [L, ..., 1, N]
        y[..., t0:t1] = _time_last((xs * cb).sum(-1))
    return y


def _recording(*xs: Tensor) -> bool:
    """Whether autograd records operations on any of ``xs`` (the training path)."""
    return torch.is_grad_enabled() and any(x.requires_grad for x in xs)


def _time_first(x: Tensor) -> Tensor:
    """``[..., D, L, N]`` -> contiguous ``[L, ..., D, N]``."""
    nd = x.dim()
    return x.permute(nd - 2, *range(nd - 2), nd - 1).contiguous()


def _time_last(x: Tensor) -> Tensor:
    """``[L, ..., D]`` -> ``[..., D, L]`` (a view)."""
    return x.permute(*range(1, x.dim()), 0)


@torch_impl(
    "bi_selective_scan",
    "torch_loop",
    0,
    "per-token PyTorch scan (mamba_ssm's selective_scan_ref shape), both directions batched",
)
def torch_loop(u, delta, A, A_b, Bm, Cm, Dskip=None, z=None, delta_bias=None, delta_softplus=True, *, out=None):
    """Per-token PyTorch scan, both directions batched (the baseline)."""
    cdt = _compute_dtype(u.dtype)
    dt, du, A2, Bt, Ct = _stacked(u, delta, A, A_b, Bm, Cm, delta_bias, delta_softplus, cdt)
    ys = selective_scan_loop(dt, du, A2, Bt, Ct)
    return _finish(ys, u, Dskip, z, u.dtype, out)


# ----------------------------------------------------------------------------- torch_chunked
def default_chunk_len(T: int) -> int:
    """A power of two near ``sqrt(T)`` in [8, 256]: balances the C + L sequential steps."""
    return int(min(256, max(8, 2 ** round(math.log2(max(1.0, math.sqrt(T)))))))


def selective_scan_chunked(
    dt: Tensor, du: Tensor, A: Tensor, Bt: Tensor, Ct: Tensor, chunk_len: int, budget: int = TEMP_BUDGET
) -> Tensor:
    """``C.x`` of the recurrence in the chunked form (module docstring). ``dt, du``: ``[S, D, T]``;
    ``A``: ``[S, D, N]`` (or broadcastable); ``Bt, Ct``: ``[S, T, N]``. Returns ``[S, D, T]``."""
    S, D, T = dt.shape
    N = A.shape[-1]
    L = chunk_len
    C = -(-T // L)
    pad = C * L - T
    if pad:  # identity tokens: no decay, no input
        dt, du = F.pad(dt, (0, pad)), F.pad(du, (0, pad))
        Bt, Ct = F.pad(Bt, (0, 0, 0, pad)), F.pad(Ct, (0, 0, 0, pad))
    train = _recording(dt, du, A, Bt, Ct)
    A = A.expand(S, D, N)
    # [C, S, D, L] and [C, S, L, N]: chunks lead, so per-chunk slices are contiguous
    dtc = dt.view(S, D, C, L).permute(2, 0, 1, 3).contiguous()
    duc = du.view(S, D, C, L).permute(2, 0, 1, 3).contiguous()
    Bc = Bt.reshape(S, C, L, N).transpose(0, 1).contiguous()
    Cc = Ct.reshape(S, C, L, N).transpose(0, 1).contiguous()

    # 1. local end state R and whole-chunk decay P of every chunk (exponents <= 0)
    tail = dtc.flip(-1).cumsum(-1).flip(-1)  # sum_{s >= l} dt_s
    rem = torch.cat([tail[..., 1:], torch.zeros_like(tail[..., :1])], dim=-1)  # sum_{s > l} dt_s
    P = torch.exp(A * tail[..., :1])  # [C, S, D, N]
    R = torch.empty(C, S, D, N, dtype=dt.dtype, device=dt.device)
    group = max(1, budget // max(1, S * D * L * N))
    for c0 in range(0, C, group):
        c1 = min(C, c0 + group)
        E = torch.exp(A[:, :, None, :] * rem[c0:c1, ..., None])  # [G, S, D, L, N]
        if train:  # exp's backward reads its output: no in-place update
            E = E * duc[c0:c1, ..., None] * Bc[c0:c1, :, None]
        else:
            E.mul_(duc[c0:c1, ..., None]).mul_(Bc[c0:c1, :, None])
        R[c0:c1] = E.sum(-2)
        del E

    # 2. hand-over between chunks
    if train:  # out= is not differentiable: collect the states and stack them
        states = [torch.zeros(S, D, N, dtype=dt.dtype, device=dt.device)]
        for c in range(C - 1):
            states.append(torch.addcmul(R[c], P[c], states[c]))
        X = torch.stack(states)
    else:
        X = torch.empty(C, S, D, N, dtype=dt.dtype, device=dt.device)
        X[0].zero_()
        for c in range(C - 1):
            torch.addcmul(R[c], P[c], X[c], out=X[c + 1])

    # 3. outputs: every chunk from its initial state, the L positions in sequence
    Y = torch.empty(L, C, S, D, dtype=dt.dtype, device=dt.device)
    h = X
    for i in range(L):
        dA = torch.exp(dtc[..., i, None] * A)  # [C, S, D, N]
        h = torch.addcmul(duc[..., i, None] * Bc[:, :, None, i], dA, h)
        Y[i] = (h * Cc[:, :, None, i]).sum(-1)
    return Y.permute(2, 3, 1, 0).reshape(S, D, C * L)[..., :T]


@torch_impl(
    "bi_selective_scan",
    "torch_chunked",
    10,
    "chunked PyTorch scan (cumulative-dt decays, sequential hand-over), both directions batched",
)
def torch_chunked(
    u, delta, A, A_b, Bm, Cm, Dskip=None, z=None, delta_bias=None, delta_softplus=True, *, out=None, chunk_len=None
):
    """Chunked PyTorch scan: parallel within chunks, sequential hand-over between them."""
    T = u.shape[-1]
    if chunk_len is None:
        chunk_len = default_chunk_len(T)
    if isinstance(chunk_len, bool) or not isinstance(chunk_len, int) or chunk_len < 1:
        raise ValueError(f"chunk_len: must be a positive int, got {chunk_len!r}")
    cdt = _compute_dtype(u.dtype)
    dt, du, A2, Bt, Ct = _stacked(u, delta, A, A_b, Bm, Cm, delta_bias, delta_softplus, cdt)
    Bsz, D = u.shape[0], u.shape[1]
    S = 2 * Bsz
    ys = selective_scan_chunked(
        dt.reshape(S, D, T),
        du.reshape(S, D, T),
        A2.expand(2, Bsz, D, -1).reshape(S, D, -1),
        Bt.reshape(S, T, -1),
        Ct.reshape(S, T, -1),
        chunk_len,
    )
    return _finish(ys.view(2, Bsz, D, T), u, Dskip, z, u.dtype, out)
