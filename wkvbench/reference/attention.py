"""float64 reference for non-causal softmax attention (CONTRACT section 2, AST's token mixer)."""

from __future__ import annotations

import torch
from torch import Tensor


def attention(q: Tensor, k: Tensor, v: Tensor, block: int = 1024) -> Tensor:
    """``softmax(q k^T * D**-0.5) v`` in float64; ``q, k, v`` are ``[B, H, T, D]``.

    Rows of queries are processed ``block`` at a time (each row's softmax is independent), so the
    float64 score matrix never exceeds ``B * H * block * T`` elements at long T; the scale and the
    softmax work on that block in place (one block alive, not three).
    """
    q, k, v = (x.to(torch.float64) for x in (q, k, v))
    scale = q.shape[-1] ** -0.5
    out = torch.empty(q.shape[:-1] + v.shape[-1:], dtype=torch.float64, device=q.device)
    for i in range(0, q.shape[-2], block):
        scores = torch.matmul(q[..., i : i + block, :], k.transpose(-1, -2)).mul_(scale)
        scores.sub_(scores.amax(dim=-1, keepdim=True)).exp_()
        scores.div_(scores.sum(dim=-1, keepdim=True))
        out[..., i : i + block, :] = torch.matmul(scores, v)
    return out
