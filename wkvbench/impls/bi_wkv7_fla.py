"""Peer Bi-WKV7 kernels from fla-core (flash-linear-attention): ``fla_chunk`` and ``fla_recurrent``.

fla-core (Yang, Zhang et al., github.com/fla-org/flash-linear-attention; the chunked
generalized delta rule of arXiv 2406.06484 / 2412.06464) ships RWKV-7 as a diagonal-plus-
low-rank (DPLR) delta rule. Two of its public functions are wrapped, each run once per
direction (the reverse direction on ``flip(1)`` copies of the inputs, its output flipped back)
and merged with the gate, ``y = g * y_fwd + (1 - g) * y_rev`` (one ``torch.lerp``):

* ``fla_chunk``: ``fla.ops.rwkv7.chunk_rwkv7(r, w, k, v, a, b, scale=1.0, safe_gate=True,
  lower_bound=-0.6065, chunk_size=64)``, its fast chunked path for the RWKV-7 domain (tensor-core
  matmuls within chunks of 64 tokens, a sequential state pass between chunks). Its float32 path
  runs Triton ``tl.dot`` at the default TF32 precision, and fla itself warns that float32 is not
  supported on every platform, so it is registered with ``tf32=True``: float32 is held to the
  bfloat16 bar.
* ``fla_recurrent``: ``fla.ops.rwkv7.fused_recurrent_rwkv7(..., scale=1.0)``, the token-by-token
  kernel (state in registers, fp32), forward only.

Conventions, converted exactly (CONTRACT section 1 vs fla-core 0.6.0's docstrings and its
naive ``dplr_recurrence``):

* layout: both ``[B, T, H, N]`` -- no transpose;
* decay: fla takes the log-decay, ``w_fla = log d = -exp(w)``; computed here in float32 (fla
  reads it in float32), so the conversion adds no rounding of its own. In the RWKV-7 domain
  (``w <= -0.5``) ``w_fla >= -exp(-0.5) = -0.60653``; ``lower_bound=-0.6065`` only licenses fla's
  centred tensor-core scheme (its exponents stay ~4x below the float32 limit), fla does not
  check it;
* state: fla's ``h`` is ``[K, V]``, the transpose of ``S [V, K]``; ``a``/``b`` enter as
  ``h += b (a^T h)``, i.e. ``S += (S a) b^T``: ``a`` and ``b`` pass unchanged;
* output: ``o = h^T (scale * r)``, so ``scale=1.0`` (``fused_recurrent_rwkv7`` defaults to
  ``K ** -0.5``).

Both are checked against the float64 reference like every other implementation: a peer that
disagrees shows up as ``wrong``. fla-core's kernels are Triton with ``triton.autotune``, which
needs a GPU driver, so these run on CUDA only; without the package they are listed as
unavailable with the reason.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from wkvbench.impls import _gpu
from wkvbench.registry import ALL_DTYPES, register_impl

#: chunk_rwkv7's gate lower bound for the RWKV-7 domain (w_fla = -exp(w) >= -exp(-0.5)).
LOWER_BOUND = -0.6065
CHUNK_SIZE = 64


def fla_version() -> str | None:
    """Installed fla version string, or None."""
    from importlib import metadata

    for dist in ("fla-core", "flash-linear-attention"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def _load() -> None:
    from fla.ops.rwkv7 import chunk_rwkv7, fused_recurrent_rwkv7  # noqa: F401


def _check(device: torch.device) -> tuple[bool, str]:
    missing = "fla-core not installed (pip install fla-core: needs triton >= 3.3 and einops)"
    return _gpu.import_check("fla", missing, _load, label=f"fla.ops.rwkv7 (fla {fla_version()})")


def bi_wkv7_with(direction: Callable, r, w, k, v, a, b, g=None, out=None):
    """Bi-WKV7 from a one-direction kernel in fla's convention.

    ``direction(r, w_log, k, v, a, b) -> o`` computes the causal scan with log-decay ``w_log``
    (float32), fla's layout and ``scale=1``; it is called on the inputs and on their time-flip.
    """
    w_log = -torch.exp(w.to(torch.float32))
    y_fwd = direction(r, w_log, k, v, a, b)
    flipped = [x.flip(1) for x in (r, w_log, k, v, a, b)]
    y_rev = direction(*flipped).flip(1)
    gate = 0.5 if g is None else g.unsqueeze(-1).to(y_fwd.dtype)
    if out is None:
        return torch.lerp(y_rev, y_fwd, gate)
    if torch.is_grad_enabled() and y_fwd.requires_grad:  # out= is not differentiable; copy_ is
        return out.copy_(torch.lerp(y_rev, y_fwd, gate))
    return torch.lerp(y_rev, y_fwd, gate, out=out)


def _chunk_direction(r, w_log, k, v, a, b):
    from fla.ops.rwkv7 import chunk_rwkv7

    o, _ = chunk_rwkv7(
        r,
        w_log,
        k,
        v,
        a,
        b,
        scale=1.0,
        safe_gate=True,
        lower_bound=LOWER_BOUND,
        chunk_size=CHUNK_SIZE,
        output_final_state=False,
    )
    return o


def _recurrent_direction(r, w_log, k, v, a, b):
    from fla.ops.rwkv7 import fused_recurrent_rwkv7

    o, _ = fused_recurrent_rwkv7(r, w_log, k, v, a, b, scale=1.0, output_final_state=False)
    return o


@register_impl(
    "bi_wkv7",
    name="fla_chunk",
    backend="fla",
    devices=("cuda",),
    dtypes=ALL_DTYPES,
    head_sizes=(64,),
    priority=20,
    tf32=True,
    peer=True,
    backward=True,
    check=_check,
    description="fla-core chunk_rwkv7 (safe_gate, chunk 64) per direction + gate (peer; fp32 via TF32)",
)
def fla_chunk(r, w, k, v, a, b, g=None, *, out=None):
    """fla-core ``chunk_rwkv7`` once per direction, merged with the gate (fla's own backward)."""
    return bi_wkv7_with(_chunk_direction, r, w, k, v, a, b, g, out)


@register_impl(
    "bi_wkv7",
    name="fla_recurrent",
    backend="fla",
    devices=("cuda",),
    dtypes=ALL_DTYPES,
    head_sizes=(64,),
    priority=15,
    peer=True,
    check=_check,
    description="fla-core fused_recurrent_rwkv7 per direction + gate (peer)",
)
def fla_recurrent(r, w, k, v, a, b, g=None, *, out=None):
    """fla-core ``fused_recurrent_rwkv7`` once per direction, merged with the gate."""
    with torch.no_grad():
        return bi_wkv7_with(_recurrent_direction, r, w, k, v, a, b, g, out)
