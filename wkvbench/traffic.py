"""What the byte counters share: the record of one call's counted global-memory traffic
(:class:`MemCount`) and the two questions both dispatch-mode counters ask of an op (its tensors,
whether it is a view). Used by :mod:`wkvbench.counting` (Triton, Numba, PyTorch) and
:mod:`wkvbench.hostemu.count` (CUDA C in the host emulation)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils._pytree import tree_flatten


@dataclass
class MemCount:
    """Global-memory traffic of the kernels one call launches, counted on the CPU."""

    load_bytes: int = 0
    store_bytes: int = 0
    atomic_bytes: int = 0  # read-modify-write: counted once as read, once as written
    distinct_load_bytes: int = 0
    distinct_store_bytes: int = 0
    io_distinct_bytes: int | None = 0  # distinct bytes of the inputs and output touched (loaded or stored)
    loads: int = 0  # load / store calls executed (Triton: per program; CUDA C: per access)
    stores: int = 0

    @property
    def bytes(self) -> int:
        return self.load_bytes + self.store_bytes + 2 * self.atomic_bytes

    @property
    def distinct_bytes(self) -> int:
        return self.distinct_load_bytes + self.distinct_store_bytes


def tensors(tree) -> list[torch.Tensor]:
    """The tensors in an op's arguments or results."""
    return [x for x in tree_flatten(tree)[0] if isinstance(x, torch.Tensor)]


def is_view(func) -> bool:
    """Whether an aten op returns a view of an input (no traffic of its own)."""
    schema = func._schema
    return bool(schema.returns) and any(r.alias_info is not None and not r.alias_info.is_write for r in schema.returns)
