"""Registration shorthands for the two families of implementations that share their capabilities.

Every PyTorch implementation of an op is registered alike: it runs on CPU and CUDA, in every
benchmark dtype plus float64, and backpropagates through autograd. Only the op, the name, the
priority and the description differ, so those are all :func:`torch_impl` takes.

Every peer (a third-party package's kernel, benchmarked for comparison) is CUDA-only, marked
``peer=True`` and guarded by a ``check`` that imports the package; :func:`peer_impl` fixes those.
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


def peer_impl(
    op: str, *, name: str, backend: str, check, dtypes=ALL_DTYPES, **options
) -> Callable[[Callable], Callable]:
    """Decorator: register a peer implementation of ``op`` (CUDA only, guarded by ``check``).

    ``options`` are passed on to :func:`~wkvbench.registry.register_impl` (priority, head_sizes,
    tf32, backward, description).
    """
    return register_impl(
        op, name=name, backend=backend, devices=("cuda",), dtypes=dtypes, peer=True, check=check, **options
    )
