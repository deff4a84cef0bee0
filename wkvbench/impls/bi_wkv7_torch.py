"""Bi-WKV7 in plain PyTorch: ``torch_loop`` (the baseline) and ``torch_chunked``.

Both run on any device torch runs on, keep the state and accumulate in float32 (float64 for
float64 input), and batch the two directions together (the reverse direction is the time-flip
of the inputs, stacked on the batch axis).

``torch_loop`` is the naive per-token recurrence: T steps of small batched ops. It is the point
every speed-up is measured from.

``torch_chunked`` is the chunked-parallel form (the "generalized delta rule" chunking used by
fla-core's RWKV-7 and DPLR kernels; Yang et al., arXiv 2406.06484 and 2412.06464; written here
from the algebra below). Within a chunk of L tokens with log-decay ``lg = -exp(w)`` and
inclusive cumulative sum ``G`` (``Gx`` exclusive), let ``sa_t = S_{t-1} a_t``. Unrolling

    S_t = S_0 diag(e^{G_t}) + sum_{s<=t} (sa_s b_s^T + v_s k_s^T) diag(e^{G_t - G_s})

gives, with strictly/inclusively lower-triangular L x L matrices
``Aab[t,s] = sum_j a_tj b_sj e^{Gx_tj - G_sj}`` (s < t), ``Aak`` likewise with k,
``Arb[t,s] = sum_j r_tj b_sj e^{G_tj - G_sj}`` (s <= t) and ``Ark`` likewise with k:

    (I - Aab) SA = (a * e^{Gx}) S_0^T + Aak V        ->  SA = W S_0^T + U
    Y            = (r * e^{G} + Arb W) S_0^T + Arb U + Ark V
    S_L          = S_0 (diag(e^{G_L}) + W^T Bd) + U^T Bd + V^T Kd,  Bd = b * e^{G_L - G}, ...

Everything but the last line's hand-over ``S_{c+1} = S_c P_c + R_c`` is batched over all chunks
at once. The L x L matrices factor through a reference point in the middle of the chunk
(``e^{G_t - G_s} = e^{G_t - G_m} e^{G_m - G_s}``), so no factor exceeds
``e^{0.61 (L/2 + 1)}`` in the RWKV-7 domain (|lg| < 0.61) and nothing divides by a small
cumulative decay; every other exponent is <= 0. ``chunk_len`` is capped at 128 to keep those
factors far from float32 overflow.

Both are differentiable by autograd through these ops (``backward=True``); with ``out=`` the
result is copied into ``out``, which then carries the graph.

On CUDA the float32 matmuls are only float32-exact with TF32 off (torch's default,
``torch.backends.cuda.matmul.allow_tf32 = False``); a run that turns TF32 on is caught by the
correctness gate (the fp32 bar is 2e-5), not silently reported.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wkvbench.impls._register import torch_impl

MAX_CHUNK = 128


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _both_directions(r, w, k, v, a, b, dt):
    """Stack forward and time-flipped inputs on the batch axis: [2B, T, H, N] each, in ``dt``."""
    out = []
    for x in (r, w, k, v, a, b):
        x = x.to(dt)  # converted once, used for both halves
        out.append(torch.cat([x, x.flip(1)], dim=0))
    return out


def _merge(y2: Tensor, g: Tensor | None, B: int, out_dtype, out: Tensor | None) -> Tensor:
    """Gate merge of the stacked [2B, T, H, N] result; writes into ``out`` if given."""
    y_fwd, y_rev = y2[:B], y2[B:].flip(1)
    if g is None:
        y = 0.5 * (y_fwd + y_rev)
    else:
        gg = g.to(y2.dtype)[..., None]
        y = gg * y_fwd + (1 - gg) * y_rev
    if out is None:
        return y.to(out_dtype)
    out.copy_(y)
    return out


def wkv7_loop(r, w, k, v, a, b, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Causal WKV7 by the per-token loop, in the inputs' (float32 or wider) dtype."""
    BB, T, H, N = r.shape
    S = torch.zeros(BB, H, N, N, dtype=r.dtype, device=r.device) if state is None else state.to(r.dtype).clone()
    d = torch.exp(-torch.exp(w))
    y = torch.empty_like(r)
    for t in range(T):
        sa = torch.matmul(S, a[:, t, :, :, None])  # [BB, H, N, 1]
        S = S * d[:, t, :, None, :] + sa * b[:, t, :, None, :] + v[:, t, :, :, None] * k[:, t, :, None, :]
        y[:, t] = torch.matmul(S, r[:, t, :, :, None])[..., 0]
    return y, S


@torch_impl("bi_wkv7", "torch_loop", 0, "naive per-token loop in PyTorch, both directions batched (the baseline)")
def torch_loop(r, w, k, v, a, b, g=None, *, out=None):
    """Naive per-token loop in PyTorch, both directions batched (the baseline)."""
    dt = _compute_dtype(r.dtype)
    y2, _ = wkv7_loop(*_both_directions(r, w, k, v, a, b, dt))
    return _merge(y2, g, r.shape[0], r.dtype, out)


def wkv7_chunked(r, w, k, v, a, b, state: Tensor | None = None, chunk_len: int = 64) -> tuple[Tensor, Tensor]:
    """Causal WKV7 in the chunked-parallel form, in the inputs' (float32 or wider) dtype.

    Any T (the last chunk is padded with identity tokens: zero inputs and decay 1). Returns
    ``(y [BB, T, H, N], final_state [BB, H, N, N])``.
    """
    if not isinstance(chunk_len, int) or not 1 <= chunk_len <= MAX_CHUNK:
        raise ValueError(f"chunk_len: must be an int in [1, {MAX_CHUNK}], got {chunk_len!r}")
    BB, T, H, N = r.shape
    L = chunk_len
    C = -(-T // L)
    pad = C * L - T
    dt = r.dtype
    lg = -torch.exp(w)

    BH = BB * H
    Z = C * BH  # every (chunk, sequence, head) is one batch entry of the matmuls below

    def chunks(x):  # [BB, T, H, N] -> [Z, L, N], chunk-major so per-chunk slices are contiguous
        if pad:
            x = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, pad))
        return x.view(BB, C, L, H, N).permute(1, 0, 3, 2, 4).reshape(Z, L, N)

    r_, k_, v_, a_, b_, lg_ = (chunks(x) for x in (r, k, v, a, b, lg))
    G = lg_.cumsum(dim=1)  # inclusive
    Gx = G - lg_  # exclusive
    GL = G[:, -1:, :]  # whole-chunk decay (log)
    m = L // 2
    Gm = G[:, m : m + 1, :]  # factoring point in the middle of the chunk
    e_mk = torch.exp(Gm - G)  # <= e^{0.61 L/2}
    # One matmul for the four L x L matrices: [r e^{G-Gm}; a e^{Gx-Gm}] [b e^{Gm-G}; k e^{Gm-G}]^T
    left = torch.cat([r_ * torch.exp(G - Gm), a_ * torch.exp(Gx - Gm)], dim=1)  # [Z, 2L, N]
    right = (torch.stack([b_, k_], dim=1) * e_mk[:, None]).view(Z, 2 * L, N)
    M = torch.bmm(left, right.transpose(1, 2))  # [[Arb, Ark], [Aab, Aak]] before masking
    ones = torch.ones(L, L, dtype=dt, device=r.device)
    incl, strict = ones.tril(), ones.tril(-1)
    top = M[:, :L] * torch.cat([incl, incl], dim=1)  # [Arb | Ark], s <= t
    bot = M[:, L:] * torch.cat([-strict, strict], dim=1)  # [-Aab | Aak], s < t
    Arb = top[:, :, :L]
    # SA = W S0^T + U with (I - Aab) W = a e^{Gx}, (I - Aab) U = Aak V; the unit diagonal is
    # implied (unitriangular=True), so -Aab stands for I - Aab.
    rhs = torch.cat([a_ * torch.exp(Gx), torch.bmm(bot[:, :, L:], v_)], dim=-1)
    sol = torch.linalg.solve_triangular(bot[:, :, :L], rhs, upper=False, unitriangular=True)
    W, U = sol[..., :N], sol[..., N:]
    UV = torch.cat([U, v_], dim=1)  # [Z, 2L, N]
    Q = torch.baddbmm(r_ * torch.exp(G), Arb, W)  # Y = Q S0^T + Yin
    Yin = torch.bmm(top, UV)  # Arb U + Ark V
    BK = (torch.stack([b_, k_], dim=1) * torch.exp(GL - G)[:, None]).view(Z, 2 * L, N)  # [b; k] e^{G_L - G}
    P = torch.baddbmm(torch.diag_embed(torch.exp(GL[:, 0])), W.transpose(1, 2), BK[:, :L])  # [Z, N, N]
    R = torch.bmm(UV.transpose(1, 2), BK)  # U^T Bd + V^T Kd
    P, R = P.view(C, BH, N, N), R.view(C, BH, N, N)
    S0 = torch.zeros(BH, N, N, dtype=dt, device=r.device) if state is None else state.reshape(BH, N, N).to(dt)
    if torch.is_grad_enabled() and any(x.requires_grad for x in (P, R, S0)):
        states = [S0]  # autograd: out= is not differentiable, so collect the states and stack them
        for c in range(C):
            states.append(torch.baddbmm(R[c], states[c], P[c]))
        S_all = torch.stack(states)
    else:
        S_all = torch.empty(C + 1, BH, N, N, dtype=dt, device=r.device)  # state entering each chunk
        S_all[0].copy_(S0)
        for c in range(C):  # the only sequential part: state hand-over between chunks
            torch.baddbmm(R[c], S_all[c], P[c], out=S_all[c + 1])
    Y = torch.baddbmm(Yin, Q, S_all[:C].view(Z, N, N).transpose(1, 2))  # [Z, L, N]
    y = Y.view(C, BB, H, L, N).permute(1, 0, 3, 2, 4).reshape(BB, C * L, H, N)[:, :T]
    S = S_all[C].view(BB, H, N, N)
    return y, S


@torch_impl(
    "bi_wkv7", "torch_chunked", 10, "chunked-parallel PyTorch (batched matmuls per chunk, sequential hand-over)"
)
def torch_chunked(r, w, k, v, a, b, g=None, *, out=None, chunk_len: int | None = None):
    """Chunked-parallel PyTorch: batched matmuls within chunks, sequential hand-over only.

    ``chunk_len`` defaults to 64 on CUDA (fewer sequential hand-overs) and 32 on CPU (measured
    fastest there: smaller L x L work per token).
    """
    dt = _compute_dtype(r.dtype)
    if chunk_len is None:
        chunk_len = 64 if r.device.type == "cuda" else 32
    y2, _ = wkv7_chunked(*_both_directions(r, w, k, v, a, b, dt), chunk_len=chunk_len)
    return _merge(y2, g, r.shape[0], r.dtype, out)
