"""One training step of a whole network, and its gradient check against the float64 twin.

docs/spec.md section 8 ("Training"). A step is: forward, multi-label binary cross-entropy with
logits (mean over the batch and the 527 classes, computed in float32 on the logits as AMP does)
against seeded random 0/1 targets, backward into the parameters' ``.grad``; with ``adamw`` the
optimizer step follows (``torch.optim.AdamW``, lr 1e-4, weight decay 0.05; the step updates the
weights, so a timed series of steps trains the network on its one batch).

The gradient error of a mixer is the relative L2 ``||g - g_ref|| / ||g_ref||`` over every parameter
gradient as one vector (float64), against the float64 twin (same weights rounded to the dtype,
reference mixer, same input and targets); a parameter autograd leaves without a gradient counts as
zeros. It is judged like the output: at most twice the baseline mixer's gradient error, at most
the dtype's gradient ceiling (:func:`grad_ceiling`), never with a non-finite gradient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wkvbench.gradcheck import GRAD_TOLERANCE
from wkvbench.models.ast_vit import NUM_CLASSES

OPTIMIZERS = ("none", "adamw")
BASELINE_FACTOR = 2.0


def targets(batch: int, device, seed: int = 0) -> Tensor:
    """Seeded multi-label targets ``[batch, 527]`` in {0, 1} (float32, each label on with probability 1/2)."""
    gen = torch.Generator().manual_seed(int(seed) + 104729)
    return (torch.rand(batch, NUM_CLASSES, generator=gen) < 0.5).to(device=device, dtype=torch.float32)


def loss_of(logits: Tensor, target: Tensor) -> Tensor:
    """Mean binary cross-entropy with logits over batch and classes, in float32 (float64 for the twin)."""
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return F.binary_cross_entropy_with_logits(logits.to(dtype), target.to(dtype))


def make_optimizer(name: str, net: nn.Module) -> torch.optim.Optimizer | None:
    """The optimizer ``name`` (:data:`OPTIMIZERS`) over ``net``'s parameters; None for ``none``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {name!r}")
    if name == "none":
        return None
    return torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.05)


def step(net: nn.Module, mel: Tensor, target: Tensor, optimizer=None, context=None) -> Tensor:
    """One training step (see the module docstring); returns the loss (detached). ``context``: a
    context manager factory wrapped around the forward (autocast)."""
    net.zero_grad(set_to_none=True)
    with torch.enable_grad():
        if context is None:
            loss = loss_of(net(mel), target)
        else:
            with context():
                loss = loss_of(net(mel), target)
        loss.backward()
    if optimizer is not None:
        optimizer.step()
    return loss.detach()


def flat_grads(net: nn.Module) -> Tensor:
    """Every parameter's gradient as one float64 vector (zeros where autograd left none)."""
    parts = [
        (p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1).to(torch.float64)
        for p in net.parameters()
    ]
    return torch.cat(parts)


def grads(net: nn.Module, mel: Tensor, target: Tensor, context=None) -> Tensor:
    """:func:`flat_grads` after one step without optimizer; the gradients are cleared afterwards."""
    step(net, mel, target, None, context)
    out = flat_grads(net)
    net.zero_grad(set_to_none=True)
    return out


def grad_error(g: Tensor, ref: Tensor) -> float:
    """Relative L2 of ``g`` against ``ref``; inf when ``g`` is not finite."""
    if not bool(torch.isfinite(g).all()):
        return math.inf
    g = g.to(ref.device)
    norm = float(ref.norm())
    return float((g - ref).norm() / norm) if norm > 0 else float((g - ref).norm())


def grad_ceiling(dtype: torch.dtype, depth: int) -> float:
    """The absolute ceiling of the network gradient error: the op's gradient bar (docs/spec.md
    section 5) times ``depth``."""
    return GRAD_TOLERANCE[dtype] * int(depth) if dtype in GRAD_TOLERANCE else math.inf


def grad_bar(dtype: torch.dtype, baseline_err: float, depth: int) -> float:
    """``min(2 * baseline_err, grad_ceiling)``; nan (nothing passes) when the baseline is not finite."""
    if not math.isfinite(baseline_err):
        return math.nan
    return min(BASELINE_FACTOR * baseline_err, grad_ceiling(dtype, depth))


def saved_bytes(net: nn.Module, mel: Tensor, target: Tensor, context=None) -> int:
    """Bytes the forward (and loss) keeps for the backward beyond the weights and the input: every
    tensor autograd saves, counted once per storage (``torch.autograd.graph.saved_tensors_hooks``)."""
    own = {_ptr(t) for t in (*net.parameters(), mel)}
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        ptr = _ptr(t)
        if ptr not in own:
            try:
                nbytes = t.untyped_storage().nbytes()
            except (RuntimeError, NotImplementedError):
                nbytes = t.numel() * t.element_size()
            seen[ptr] = max(seen.get(ptr, 0), nbytes)
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if context is None:
            loss = loss_of(net(mel), target)
        else:
            with context():
                loss = loss_of(net(mel), target)
    del loss
    return int(sum(seen.values()))


def _ptr(t: Tensor) -> int:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return t.data_ptr()
