"""float64 reference for non-causal softmax attention (docs/spec.md section 2, AST's token mixer)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint


def attention(q: Tensor, k: Tensor, v: Tensor, block: int = 1024) -> Tensor:
    """``softmax(q k^T * D**-0.5) v`` in float64; ``q, k, v`` are ``[B, H, T, D]``.

    Rows of queries are processed ``block`` at a time (each row's softmax is independent), so the
    float64 score matrix never exceeds ``B * H * block * T`` elements at long T; the scale and the
    softmax work on that block in place (one block alive, not three).
    """
    q, k, v = (x.to(torch.float64) for x in (q, k, v))
    if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v)):
        # gradients: each block of rows is recomputed in the backward, so no block's scores are kept
        parts = [
            checkpoint(_rows, q[..., i : i + block, :], k, v, use_reentrant=False) for i in range(0, q.shape[-2], block)
        ]
        return torch.cat(parts, dim=-2)
    out = torch.empty(q.shape[:-1] + v.shape[-1:], dtype=torch.float64, device=q.device)
    for i in range(0, q.shape[-2], block):
        out[..., i : i + block, :] = _rows_inplace(q[..., i : i + block, :], k, v)
    return out


def _rows_inplace(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """One block of rows without autograd: scale and softmax in place on the score block."""
    scores = torch.matmul(q, k.transpose(-1, -2)).mul_(q.shape[-1] ** -0.5)
    scores.sub_(scores.amax(dim=-1, keepdim=True)).exp_()
    scores.div_(scores.sum(dim=-1, keepdim=True))
    return torch.matmul(scores, v)


def _rows(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """One block of rows, differentiable (recomputed in the backward by the checkpoint)."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return torch.matmul(torch.softmax(scores, dim=-1), v)
