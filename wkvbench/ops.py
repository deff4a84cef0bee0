"""The public entry points and dispatch: validate, pick an implementation, call it.

``wkvbench.bi_wkv7``, ``wkvbench.attention`` and ``wkvbench.bi_selective_scan`` validate their
inputs, pick an implementation (``impl="auto"``: the best available one for the inputs' device)
and call it; :func:`call` does the same for any op by name. The op records themselves (shapes,
inputs, references, validation, metrics) live in :mod:`wkvbench.opspec` and are re-exported here.

Implementation functions receive the op's tensors as keyword arguments named as in the record's
``args`` (``r, w, k, v, a, b, g`` / ``q, k, v`` / ``u, delta, A, A_b, Bm, Cm, Dskip, z,
delta_bias, delta_softplus``), already validated and contiguous, plus ``out=`` when they accept it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wkvbench.opspec import (  # noqa: F401  (re-exported: the op records' public home)
    DEFAULT_MODE,
    IO_DTYPES,
    W_MAX,
    CheckShape,
    OpSpec,
    element_size,
    get_op,
    impl_op,
    impl_ops,
    tokens_of,
    validate_attention,
    validate_bi_selective_scan,
    validate_bi_wkv7,
)
from wkvbench.registry import Impl, Need, get_impl, no_backward, select_impl


def resolve(
    op: str,
    impl: str | Impl,
    device: torch.device,
    dtype: torch.dtype,
    head_size: int | None = None,
    backward: bool = False,
) -> Impl:
    """The implementation record for ``impl`` (a name, ``"auto"`` or a record), checked runnable
    (and, with ``backward=True``, differentiable)."""
    if isinstance(impl, Impl):
        rec = impl
    elif not isinstance(impl, str):
        raise TypeError(f"impl: expected a name or 'auto', got {type(impl).__name__}")
    elif impl == "auto":
        return select_impl(op, device, dtype, head_size, backward=backward)
    else:
        rec = get_impl(op, impl)
    ok, why = rec.can_run(Need(device, dtype, head_size, "fwd_bwd" if backward else DEFAULT_MODE))
    if not ok and why != no_backward(rec.name):
        raise ValueError(f"impl: {rec.name!r} cannot run {op} here: {why}")
    if not ok:
        raise ValueError(
            f"impl: {rec.name!r} has no backward ({op} implementation registered with backward=False), "
            "but an input requires grad; call it under torch.no_grad() or pick a differentiable implementation"
        )
    return rec


def wants_grad(inputs: dict) -> list[str]:
    """Names of the tensor inputs that require grad while autograd is recording (else [])."""
    if not torch.is_grad_enabled():
        return []
    return [k for k, x in inputs.items() if isinstance(x, Tensor) and x.requires_grad]


def call(op: str, /, *, impl: str | Impl = "auto", validate: bool = True, **inputs) -> Tensor:
    """Run ``op`` on keyword ``inputs`` (the record's ``args``): validate, dispatch, call.

    ``validate=False`` skips the value checks (e.g. bi_wkv7's decay domain) but never the
    shape, dtype and device checks.
    """
    spec = get_op(op)
    unknown = sorted(set(inputs) - set(spec.args))
    if unknown:
        raise TypeError(f"{op}: unexpected argument(s) {', '.join(unknown)}; expected {', '.join(spec.args)}")
    spec.validate(**inputs, check_values=validate)
    first = inputs[spec.args[0]]
    grad = wants_grad(inputs)
    rec = resolve(op, impl, first.device, first.dtype, spec.head_size_of(inputs), backward=bool(grad))
    args = {k: x.contiguous() if isinstance(x, Tensor) else x for k, x in inputs.items()}
    return rec.fn(**args)


def bi_wkv7(r, w, k, v, a, b, g=None, impl: str | Impl = "auto", validate: bool = True) -> Tensor:
    """Bi-WKV7 (docs/spec.md section 1): ``g * wkv7(fwd) + (1 - g) * wkv7(rev)``, ``[B, T, H, N]``.

    ``validate=False`` skips the value checks (finite, in-domain ``w``; gate in [0, 1]) but
    never the shape, dtype and device checks.
    """
    return call("bi_wkv7", impl=impl, validate=validate, r=r, w=w, k=k, v=v, a=a, b=b, g=g)


def attention(q, k, v, impl: str | Impl = "auto", validate: bool = True) -> Tensor:
    """Non-causal softmax attention, ``[B, H, T, D]``, scale ``D ** -0.5`` (docs/spec.md section 2)."""
    return call("attention", impl=impl, validate=validate, q=q, k=k, v=v)


def bi_selective_scan(
    u,
    delta,
    A,
    A_b,
    Bm,
    Cm,
    Dskip=None,
    z=None,
    delta_bias=None,
    delta_softplus=True,
    impl: str | Impl = "auto",
    validate: bool = True,
) -> Tensor:
    """Audio Mamba's bidirectional selective scan, ``[B, D, T]`` (docs/spec.md section 3)."""
    return call(
        "bi_selective_scan",
        impl=impl,
        validate=validate,
        u=u,
        delta=delta,
        A=A,
        A_b=A_b,
        Bm=Bm,
        Cm=Cm,
        Dskip=Dskip,
        z=z,
        delta_bias=delta_bias,
        delta_softplus=delta_softplus,
    )


def make_case_inputs(op: str, shape: dict, dtype, device, seed: int = 0, variant: str = "realistic") -> dict:
    """Inputs for ``op`` at ``shape``, from :mod:`wkvbench.inputs`."""
    return get_op(op).make_inputs(shape, dtype, device, seed=seed, variant=variant)


def reference_output(op: str, inputs: dict) -> Tensor:
    """The float64 reference output for ``inputs``."""
    return get_op(op).reference(**inputs)
