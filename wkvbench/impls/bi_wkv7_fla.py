"""Peer Bi-WKV7 kernels from fla-core (flash-linear-attention): ``fla_chunk`` and ``fla_recurrent``.

fla-core (Yang, Zhang et al., github.com/fla-org/flash-linear-attention; the chunked
generalized delta rule of arXiv 2406.06484 / 2412.06464) ships RWKV-7 as a diagonal-plus-
low-rank (DPLR) delta rule. Two of its public functions are wrapped, each run once per
direction and merged with the gate in float32, ``y = g * y_fwd + (1 - g) * y_rev`` (one
``torch.lerp``, rounded once to the output dtype):

* ``fla_chunk``: ``fla.ops.rwkv7.chunk_rwkv7(r, w, k, v, a, b, scale=1.0, safe_gate=True,
  lower_bound=-0.6065, chunk_size=64)``, its fast chunked path for the RWKV-7 domain (tensor-core
  matmuls within chunks of 64 tokens, a sequential state pass between chunks). fla-core 0.6.0's
  chunked path has no ``reverse`` argument, so the reverse direction runs on ``flip(1)`` copies
  of the six inputs and its output is flipped back -- those copies are inside the timed call,
  a cost of the peer's API. It returns its output in ``r``'s dtype, so in bfloat16 each direction
  arrives rounded before the float32 merge (about 2e-3 relative L2 from that rounding alone,
  within the bfloat16 bar). Its float32 path runs Triton ``tl.dot`` at the default TF32
  precision, and fla itself warns that float32 is not supported on every platform, so it is
  registered with ``tf32=True``: float32 is held to the bfloat16 bar.
* ``fla_recurrent``: ``fla.ops.generalized_delta_rule.fused_recurrent_dplr_delta_rule(...,
  scale=1.0, reverse=...)``, the kernel behind ``fused_recurrent_rwkv7`` (token by token, state
  in registers, fp32, forward only), called with ``reverse=True`` for the reverse direction: no
  flipped copies. ``v`` is passed in float32 (one cast, none for float32 inputs) so that both
  directions come back in float32 (fla allocates the output like ``v``) and are rounded once,
  after the merge.

Conventions, converted exactly (docs/spec.md section 1 vs fla-core 0.6.0's docstrings and its
naive ``dplr_recurrence``):

* layout: both ``[B, T, H, N]`` -- no transpose;
* decay: fla takes the log-decay, ``w_fla = log d = -exp(w)``; computed here in float32 (fla
  reads it in float32), so the conversion adds no rounding of its own. It is one elementwise
  kernel inside the timed call, part of adapting fla's convention to the op's. In the RWKV-7 domain
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

import functools
from collections.abc import Callable

import torch

from wkvbench.impls import _gpu
from wkvbench.impls._register import peer_impl

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
    from fla.ops.generalized_delta_rule import fused_recurrent_dplr_delta_rule  # noqa: F401
    from fla.ops.rwkv7 import chunk_rwkv7  # noqa: F401


def _check(device: torch.device) -> tuple[bool, str]:
    missing = "fla-core not installed (pip install fla-core: needs triton >= 3.3 and einops)"
    return _gpu.import_check("fla", missing, _load, label=f"fla.ops.rwkv7 (fla {fla_version()})")


def _merge(y_fwd, y_rev, g, out, dtype: torch.dtype):
    """``g * y_fwd + (1 - g) * y_rev`` in float32, rounded once: into ``out``, or as ``dtype``."""
    gate = 0.5 if g is None else g.unsqueeze(-1).to(torch.float32)
    y = torch.lerp(y_rev.to(torch.float32), y_fwd.to(torch.float32), gate)
    return out.copy_(y) if out is not None else y.to(dtype)


def bi_wkv7_with(direction: Callable, r, w, k, v, a, b, g=None, out=None, reverse_arg: bool = False):
    """Bi-WKV7 from a one-direction kernel in fla's convention.

    ``direction(r, w_log, k, v, a, b, reverse) -> o`` computes the scan with log-decay ``w_log``
    (float32), fla's layout and ``scale=1``. With ``reverse_arg`` the kernel scans backwards itself
    (``reverse=True``); otherwise it is called causally on the time-flipped inputs, its output
    flipped back. The two directions are merged in float32.
    """
    w_log = -torch.exp(w.to(torch.float32))
    y_fwd = direction(r, w_log, k, v, a, b, False)
    if reverse_arg:
        y_rev = direction(r, w_log, k, v, a, b, True)
    else:
        flipped = [x.flip(1) for x in (r, w_log, k, v, a, b)]
        y_rev = direction(*flipped, False).flip(1)
    return _merge(y_fwd, y_rev, g, out, r.dtype)


def _chunk_direction(r, w_log, k, v, a, b, reverse):
    from fla.ops.rwkv7 import chunk_rwkv7

    if reverse:
        raise ValueError("reverse: fla-core's chunk_rwkv7 has no reverse scan")
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


def _recurrent_direction(r, w_log, k, v, a, b, reverse):
    from fla.ops.generalized_delta_rule import fused_recurrent_dplr_delta_rule

    o, _ = fused_recurrent_dplr_delta_rule(
        q=r, k=k, v=v, a=a, b=b, gk=w_log, scale=1.0, output_final_state=False, reverse=reverse
    )
    return o


#: Both fla-core kernels: the bi_wkv7 op at head size 64, behind the same availability check.
_fla_impl = functools.partial(peer_impl, "bi_wkv7", backend="fla", head_sizes=(64,), check=_check)


@_fla_impl(
    name="fla_chunk",
    priority=20,
    tf32=True,
    backward=True,
    description="fla-core chunk_rwkv7 (safe_gate, chunk 64) on inputs + flipped copies, fp32 merge (peer; TF32)",
)
def fla_chunk(r, w, k, v, a, b, g=None, *, out=None):
    """fla-core ``chunk_rwkv7`` once per direction, merged with the gate (fla's own backward)."""
    return bi_wkv7_with(_chunk_direction, r, w, k, v, a, b, g, out)


@_fla_impl(
    name="fla_recurrent",
    priority=15,
    description="fla-core fused recurrent DPLR kernel, forward + reverse=True, fp32 gate merge (peer)",
)
def fla_recurrent(r, w, k, v, a, b, g=None, *, out=None):
    """fla-core's fused recurrent DPLR kernel forwards and with ``reverse=True``, merged with the gate."""
    with torch.no_grad():
        v32 = v.to(torch.float32)  # fla's output takes v's dtype: float32 directions, one rounding
        return bi_wkv7_with(_recurrent_direction, r, w, k, v32, a, b, g, out, reverse_arg=True)
