"""The accuracy bar (docs/spec.md section 5) and the one way every output is checked.

Error is the relative L2 norm over the whole tensor, ``||y - ref|| / ||ref||``, against the
float64 reference computed from the same (dtype-rounded) inputs; the max absolute error is
reported beside it. Before a checked call the output is poisoned with NaN (through ``out=`` when
the implementation takes it, else by filling the CUDA caching allocator's free blocks), so an
element an implementation forgot to write cannot pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

#: Must be at most (docs/spec.md section 5).
TOLERANCE = {torch.float32: 2e-5, torch.float16: 1e-3, torch.bfloat16: 4e-3, torch.float64: 1e-12}
#: What a good implementation reaches.
GOAL = {torch.float32: 1e-6, torch.float16: 5e-4, torch.bfloat16: 2e-3, torch.float64: 1e-14}


def bar(table: dict, dtype: torch.dtype, tf32: bool = False, what: str = "accuracy") -> float:
    """``table``'s bar for an I/O dtype; float32 computed on TF32 tensor cores is held to bfloat16's."""
    if tf32 and dtype == torch.float32:
        return table[torch.bfloat16]
    if dtype not in table:
        raise TypeError(f"dtype: no {what} bar for {dtype}")
    return table[dtype]


def tolerance(dtype: torch.dtype, tf32: bool = False) -> float:
    """The output bar for an I/O dtype (:data:`TOLERANCE`, see :func:`bar`)."""
    return bar(TOLERANCE, dtype, tf32)


@dataclass(frozen=True)
class Accuracy:
    """Result of one check."""

    rel_err: float
    max_abs: float
    tol: float
    finite: bool

    @property
    def passed(self) -> bool:
        return self.finite and self.rel_err <= self.tol


def compare(y: Tensor, ref: Tensor, dtype: torch.dtype, tf32: bool = False) -> Accuracy:
    """Relative L2 and max-abs error of ``y`` against the float64 ``ref``."""
    if tuple(y.shape) != tuple(ref.shape):
        raise ValueError(f"y: shape {tuple(y.shape)} does not match the reference {tuple(ref.shape)}")
    y64 = y.detach().to(device=ref.device, dtype=torch.float64)
    finite = bool(torch.isfinite(y64).all())
    diff = y64 - ref
    denom = float(torch.linalg.vector_norm(ref))
    num = float(torch.linalg.vector_norm(diff)) if finite else math.inf
    rel = num / denom if denom > 0 else num
    max_abs = float(diff.abs().max()) if finite and diff.numel() else (math.inf if not finite else 0.0)
    return Accuracy(rel, max_abs, tolerance(dtype, tf32), finite)


def poison_cuda_allocator(device: torch.device, nbytes: int) -> None:
    """Fill ``nbytes`` of free CUDA caching-allocator memory with NaN and release it.

    Used for implementations without ``out=``: their outputs are likely to land on those blocks,
    so an unwritten element reads NaN instead of a stale correct value.
    """
    if device.type != "cuda" or nbytes <= 0:
        return
    try:
        junk = torch.full((nbytes // 4 + 1,), float("nan"), dtype=torch.float32, device=device)
        del junk
    except torch.OutOfMemoryError:
        pass


def run_checked(fn, args: dict, out_shape: tuple[int, ...], dtype: torch.dtype, accepts_out: bool) -> Tensor:
    """Call ``fn(**args)`` with a NaN-poisoned output; return what it produced."""
    device = next(iter(v for v in args.values() if isinstance(v, Tensor))).device
    if accepts_out:
        out = torch.full(out_shape, float("nan"), dtype=dtype, device=device)
        y = fn(**args, out=out)
        if y is None:
            y = out
        elif y.data_ptr() != out.data_ptr():
            raise RuntimeError("implementation was given out= but returned a different tensor")
        return y
    nbytes = math.prod(out_shape) * torch.empty((), dtype=dtype).element_size()
    poison_cuda_allocator(device, 4 * nbytes)
    return fn(**args)
