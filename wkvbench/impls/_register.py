"""Registration shorthand for the pure-PyTorch implementations.

Every PyTorch implementation of an op is registered with the same capabilities: it runs on CPU
and CUDA, in every benchmark dtype plus float64, and backpropagates through autograd. Only the op,
the name, the priority and the description differ, so those are all ``torch_impl`` takes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from wkvbench.registry import ALL_DTYPES, register_impl

#: dtypes a PyTorch implementation accepts: the benchmark dtypes and float64 (for references).
TORCH_DTYPES = (*ALL_DTYPES, torch.float64)


def torch_impl(op: str, name: str, priority: int, description: str) -> Callable[[Callable], Callable]:
    """Decorator: register a PyTorch implementation of ``op`` (CPU and CUDA, autograd backward)."""
    return register_impl(
        op,
        name=name,
        backend="torch",
        devices=("cpu", "cuda"),
        dtypes=TORCH_DTYPES,
        priority=priority,
        backward=True,
        description=description,
    )
