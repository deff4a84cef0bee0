"""Gradient accuracy: an implementation's backward against float64 autograd of the reference.

docs/spec.md section 1 ("Backward") and section 5 (gradient bars). For a loss ``L = sum(y * dy)``
with a seeded output gradient ``dy`` (rounded to the I/O dtype), every floating input the op
record lists in ``grad_args`` (and that is given: ``g``, ``Dskip``, ``z``, ``delta_bias`` may be
None) gets a gradient from the implementation and one from autograd through the float64
reference on the same (dtype-rounded) inputs. Each gradient tensor's error is the relative L2
``||d - d_ref|| / ||d_ref||``; the worst one counts against the dtype's bar and is reported by
name, e.g. ``dw 3.1e-03``. A gradient the implementation does not produce (autograd returns
None: the input does not reach the output) counts as zeros, so a dropped term fails.

Gradients come from ``torch.autograd.grad`` (fresh tensors, nothing accumulated); on a GPU the
caching allocator's free blocks are filled with NaN before the forward and before the backward,
so a gradient element a kernel never writes reads NaN and fails.

One function, :func:`check_grads`, is used by ``wkvbench verify --grad`` and by the harness for
the ``bwd`` and ``fwd_bwd`` modes; :func:`saved_bytes` measures what a forward keeps for its
backward (the harness's ``saved_bytes`` column).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from wkvbench import accuracy, ops

#: Each gradient tensor must be at most (docs/spec.md section 5).
GRAD_TOLERANCE = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 1e-2, torch.float64: 1e-10}
#: What a good backward reaches.
GRAD_GOAL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 5e-3, torch.float64: 1e-12}


def grad_tolerance(dtype: torch.dtype, tf32: bool = False) -> float:
    """The gradient bar for an I/O dtype (:data:`GRAD_TOLERANCE`, see :func:`accuracy.bar`)."""
    return accuracy.bar(GRAD_TOLERANCE, dtype, tf32, "gradient")


def grad_names(op: str, inputs: dict) -> list[str]:
    """The inputs of ``inputs`` that carry gradients: the record's ``grad_args`` that are given tensors."""
    return [n for n in ops.get_op(op).grad_args if isinstance(inputs.get(n), Tensor)]


def make_dy(shape: tuple[int, ...], dtype: torch.dtype, device, seed: int = 0) -> Tensor:
    """The seeded output gradient ``dy`` (standard normal, rounded to ``dtype``)."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed) + 7919)
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)


def leaves(inputs: dict, names: list[str]) -> dict:
    """``inputs`` with the ``names`` tensors replaced by fresh leaves that require grad."""
    out = dict(inputs)
    for n in names:
        out[n] = inputs[n].detach().clone().requires_grad_(True)
    return out


def reference_grads(op: str, inputs: dict, dy: Tensor) -> dict[str, Tensor]:
    """float64 gradients of ``sum(ref(inputs) * dy)`` for every gradient-carrying input."""
    names = grad_names(op, inputs)
    x64 = {k: v.detach().to(torch.float64) if isinstance(v, Tensor) else v for k, v in inputs.items()}
    x64 = leaves(x64, names)
    with torch.enable_grad():
        y = ops.get_op(op).reference(**x64)
        grads = torch.autograd.grad(y, [x64[n] for n in names], dy.to(device=y.device, dtype=torch.float64))
    return {n: gr.detach() for n, gr in zip(names, grads, strict=True)}


@dataclass(frozen=True)
class GradAccuracy:
    """Per-gradient relative L2 errors and the verdict on the worst."""

    errors: dict = field(default_factory=dict)  # "dw" -> relative L2 error
    tol: float = math.nan
    finite: bool = True

    @property
    def worst(self) -> str:
        """Name of the worst gradient (``"dw"``), or "" when there are none."""
        return max(self.errors, key=lambda k: self.errors[k]) if self.errors else ""

    @property
    def worst_err(self) -> float:
        return self.errors[self.worst] if self.errors else math.nan

    @property
    def passed(self) -> bool:
        return self.finite and all(e <= self.tol for e in self.errors.values())

    def label(self) -> str:
        """The worst gradient and its error, e.g. ``dw 3.1e-03``."""
        return f"{self.worst} {self.worst_err:.1e}" if self.errors else "no gradients"


def compare_grads(
    grads: dict[str, Tensor | None], ref: dict[str, Tensor], dtype: torch.dtype, tf32: bool = False
) -> GradAccuracy:
    """Relative L2 error of each gradient against the float64 ``ref`` (a None gradient counts as zeros)."""
    errors, finite = {}, True
    for name, r in ref.items():
        g = grads.get(name)
        if g is None:
            g = torch.zeros_like(r)
        if tuple(g.shape) != tuple(r.shape):
            raise ValueError(f"d{name}: shape {tuple(g.shape)} does not match the input's {tuple(r.shape)}")
        acc = accuracy.compare(g, r, dtype)
        finite = finite and acc.finite
        errors[f"d{name}"] = acc.rel_err
    return GradAccuracy(errors, grad_tolerance(dtype, tf32), finite)


def implementation_grads(fn, inputs: dict, names: list[str], dy: Tensor) -> tuple[Tensor, dict[str, Tensor | None]]:
    """Run ``fn`` on leaves of ``inputs`` and backpropagate ``dy``: ``(y, {name: grad or None})``."""
    device = dy.device
    nbytes = sum(inputs[n].numel() * inputs[n].element_size() for n in names) + dy.numel() * dy.element_size()
    x = leaves(inputs, names)
    with torch.enable_grad():
        accuracy.poison_cuda_allocator(device, 4 * nbytes)
        y = fn(**x)
        if not isinstance(y, Tensor) or not y.requires_grad:
            raise RuntimeError("the output carries no gradient (the implementation detached it)")
        accuracy.poison_cuda_allocator(device, 4 * nbytes)
        grads = torch.autograd.grad(y, [x[n] for n in names], dy, allow_unused=True)
    return y.detach(), dict(zip(names, grads, strict=True))


def check_grads(
    op: str,
    fn,
    inputs: dict,
    dtype: torch.dtype,
    *,
    tf32: bool = False,
    seed: int = 0,
    ref: dict[str, Tensor] | None = None,
    dy: Tensor | None = None,
) -> GradAccuracy:
    """Gradients of ``fn`` (an implementation's function) on ``inputs`` against float64 autograd.

    ``ref``/``dy`` may be passed in when several implementations share them (see
    :func:`reference_grads` and :func:`make_dy`).
    """
    names = grad_names(op, inputs)
    first = inputs[ops.get_op(op).args[0]]
    if dy is None:
        dy = make_dy(ops.get_op(op).out_shape(inputs), dtype, first.device, seed)
    if ref is None:
        ref = reference_grads(op, inputs, dy)
    _, grads = implementation_grads(fn, inputs, names, dy)
    return compare_grads(grads, ref, dtype, tf32)


def saved_bytes(fn, inputs: dict, names: list[str]) -> int:
    """Bytes the forward of ``fn(**inputs)`` keeps for its backward, beyond the inputs themselves.

    The forward runs once with the ``names`` inputs as fresh leaves that require grad, inside
    ``torch.autograd.graph.saved_tensors_hooks``: every tensor autograd saves for the backward
    (``ctx.save_for_backward`` of a custom Function included) passes the pack hook, and its storage
    is counted once (by data pointer), unless it is the storage of an input (an input saved by
    reference costs nothing extra). This is the training memory an implementation adds per call
    (state checkpoints, ``sa``, concatenated copies, autograd intermediates) on any device. Tensors
    a Function keeps as plain attributes of ``ctx`` are invisible to the hook and not counted.
    """
    x = leaves(inputs, names)
    own = {_storage(t)[0] for t in x.values() if isinstance(t, Tensor)}
    seen: dict[tuple, int] = {}

    def pack(t: Tensor) -> Tensor:
        ptr, nbytes = _storage(t)
        if ptr not in own:
            seen[(t.device, ptr)] = max(seen.get((t.device, ptr), 0), nbytes)
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(**x)
    del y
    return int(sum(seen.values()))


def _storage(t: Tensor) -> tuple[int, int]:
    """(data pointer, bytes) of ``t``'s storage (of ``t`` itself where it has no plain storage)."""
    try:
        s = t.untyped_storage()
        return s.data_ptr(), s.nbytes()
    except (RuntimeError, NotImplementedError):
        return id(t), t.numel() * t.element_size()
