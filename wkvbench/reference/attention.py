"""float64 reference for non-causal softmax attention (CONTRACT section 2, AST's token mixer)."""

from __future__ import annotations

import torch
from torch import Tensor


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """``softmax(q k^T * D**-0.5) v`` in float64; ``q, k, v`` are ``[B, H, T, D]``."""
    q, k, v = (x.to(torch.float64) for x in (q, k, v))
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return torch.matmul(torch.softmax(scores, dim=-1), v)
