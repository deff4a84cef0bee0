"""The three ops as data, their input validation, and the public entry points.

Each op is an :class:`OpSpec` record: its argument names, how to build realistic inputs for a
shape, its float64 reference, how to validate user input, and the derived-metric functions
(minimum bytes moved, FLOPs) the harness and report use. ``wkvbench.bi_wkv7``,
``wkvbench.attention`` and ``wkvbench.bi_selective_scan`` validate, pick an implementation
(``impl="auto"``: the best available one for the inputs' device) and call it.

Implementation functions receive the op's tensors as keyword arguments with these names
(``r, w, k, v, a, b, g`` / ``q, k, v`` / ``u, delta, A, A_b, Bm, Cm, Dskip, z, delta_bias,
delta_softplus``), already validated and contiguous, plus ``out=`` when they accept it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from wkvbench import inputs as _inputs
from wkvbench import reference as _ref
from wkvbench.presets import Model
from wkvbench.registry import Impl, get_impl, select_impl

IO_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
#: Largest w for which exp(-exp(w)) is a valid RWKV-7 decay (CONTRACT section 1: w < -0.5).
W_MAX = -0.5


@dataclass(frozen=True)
class OpSpec:
    """An op: names, inputs, reference, validation and derived metrics."""

    name: str
    args: tuple[str, ...]
    shape_for: Callable[[Model, int, int], dict]  # (model, batch, tokens) -> shape dict
    make_inputs: Callable[..., dict]  # (shape, dtype, device, seed, variant) -> kwargs
    reference: Callable[..., Tensor]
    validate: Callable[..., None]
    out_shape: Callable[[dict], tuple[int, ...]]  # inputs -> output shape
    bytes_moved: Callable[[dict, int], int]  # (shape, element size) -> minimum bytes
    flops: Callable[[dict], float]  # shape -> floating-point operations
    head_size: Callable[[dict], int | None] = lambda shape: None


# ----------------------------------------------------------------------------- validation
def _tensor(name: str, x, ndim: int | None = None) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype}")
    if x.dtype not in IO_DTYPES:
        raise TypeError(f"{name}: dtype {x.dtype} not supported; use float32, bfloat16 or float16")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(x.shape)}")
    return x


def _same(name: str, x: Tensor, ref_name: str, ref: Tensor, shape: tuple | None = None) -> None:
    if x.dtype != ref.dtype:
        raise TypeError(f"{name}: dtype {x.dtype} differs from {ref_name}'s {ref.dtype}")
    if x.device != ref.device:
        raise ValueError(f"{name}: on {x.device}, but {ref_name} is on {ref.device}")
    want = tuple(ref.shape) if shape is None else tuple(shape)
    if tuple(x.shape) != want:
        raise ValueError(f"{name}: expected shape {want}, got {tuple(x.shape)}")


def validate_bi_wkv7(r, w, k, v, a, b, g=None, check_values: bool = True) -> None:
    """Ranks, shapes, dtypes, devices, the gate's shape, and (cheaply) w's domain."""
    _tensor("r", r, 4)
    B, T, H, N = r.shape
    if min(B, T, H, N) < 1:
        raise ValueError(f"r: every dimension of [B, T, H, N] must be >= 1, got {tuple(r.shape)}")
    for name, x in (("w", w), ("k", k), ("v", v), ("a", a), ("b", b)):
        _same(name, _tensor(name, x, 4), "r", r)
    if g is not None:
        _same("g", _tensor("g", g, 3), "r", r, (B, T, H))
    if check_values:
        if not bool(torch.isfinite(w).all()):
            raise ValueError("w: contains NaN or Inf")
        if bool((w > W_MAX).any()):
            raise ValueError(
                f"w: max {float(w.max()):.4g} is outside the RWKV-7 domain (w <= {W_MAX}, "
                "i.e. w = -softplus(-x) - 0.5); pass validate=False to skip this check"
            )
        if g is not None and not bool(((g >= 0) & (g <= 1)).all()):
            raise ValueError("g: gate values must lie in [0, 1] (and be finite)")


def validate_attention(q, k, v, check_values: bool = True) -> None:
    _tensor("q", q, 4)
    if min(q.shape) < 1:
        raise ValueError(f"q: every dimension of [B, H, T, D] must be >= 1, got {tuple(q.shape)}")
    _same("k", _tensor("k", k, 4), "q", q)
    _same("v", _tensor("v", v, 4), "q", q)


def validate_bi_selective_scan(
    u, delta, A, A_b, Bm, Cm, Dskip=None, z=None, delta_bias=None, delta_softplus=True, check_values: bool = True
) -> None:
    _tensor("u", u, 3)
    Bsz, D, T = u.shape
    if min(Bsz, D, T) < 1:
        raise ValueError(f"u: every dimension of [B, D, T] must be >= 1, got {tuple(u.shape)}")
    _same("delta", _tensor("delta", delta, 3), "u", u)
    _tensor("A", A, 2)
    if A.shape[0] != D or A.device != u.device:
        raise ValueError(f"A: expected shape [{D}, N] on {u.device}, got {tuple(A.shape)} on {A.device}")
    N = A.shape[1]
    for name, x in (("A_b", A_b),):
        _tensor(name, x, 2)
        if tuple(x.shape) != tuple(A.shape) or x.device != u.device:
            raise ValueError(f"{name}: expected shape {tuple(A.shape)} on {u.device}, got {tuple(x.shape)}")
    _same("Bm", _tensor("Bm", Bm, 3), "u", u, (Bsz, N, T))
    _same("Cm", _tensor("Cm", Cm, 3), "u", u, (Bsz, N, T))
    if z is not None:
        _same("z", _tensor("z", z, 3), "u", u)
    for name, x in (("Dskip", Dskip), ("delta_bias", delta_bias)):
        if x is not None:
            _tensor(name, x, 1)
            if x.shape[0] != D or x.device != u.device:
                raise ValueError(f"{name}: expected shape [{D}] on {u.device}, got {tuple(x.shape)}")
    if not isinstance(delta_softplus, bool):
        raise TypeError(f"delta_softplus: expected bool, got {type(delta_softplus).__name__}")
    if check_values:
        for name, x in (("A", A), ("A_b", A_b)):
            if not bool((torch.isfinite(x) & (x < 0)).all()):
                raise ValueError(f"{name}: must be finite and negative (Mamba's A = -exp(A_log))")


# ----------------------------------------------------------------------------- op records
def _wkv_shape(model: Model, batch: int, tokens: int) -> dict:
    return {"B": batch, "T": tokens, "H": model.heads, "N": model.head_size}


def _wkv_inputs(shape: dict, dtype, device, seed: int = 0, variant: str = "realistic") -> dict:
    return _inputs.bi_wkv7_inputs(
        shape["B"], shape["T"], shape["H"], shape["N"], dtype=dtype, device=device, seed=seed, variant=variant
    )


def _attn_shape(model: Model, batch: int, tokens: int) -> dict:
    return {"B": batch, "H": model.heads, "T": tokens, "D": model.head_size}


def _attn_inputs(shape: dict, dtype, device, seed: int = 0, variant: str = "realistic") -> dict:
    B, H, T, D = shape["B"], shape["H"], shape["T"], shape["D"]
    return _inputs.attention_inputs(B, H, T, D, dtype=dtype, device=device, seed=seed)


def _scan_shape(model: Model, batch: int, tokens: int) -> dict:
    return {"B": batch, "D": model.d_inner, "T": tokens, "N": model.d_state}


def _scan_inputs(shape: dict, dtype, device, seed: int = 0, variant: str = "realistic") -> dict:
    return _inputs.bi_selective_scan_inputs(
        shape["B"], shape["D"], shape["T"], shape["N"], dtype=dtype, device=device, seed=seed
    )


OPS: dict[str, OpSpec] = {
    "bi_wkv7": OpSpec(
        name="bi_wkv7",
        args=("r", "w", "k", "v", "a", "b", "g"),
        shape_for=_wkv_shape,
        make_inputs=_wkv_inputs,
        reference=_ref.bi_wkv7,
        validate=validate_bi_wkv7,
        out_shape=lambda x: tuple(x["r"].shape),
        # six inputs and y at [B,T,H,N], the gate at [B,T,H]: each read or written once
        bytes_moved=lambda s, es: es * (7 * s["B"] * s["T"] * s["H"] * s["N"] + s["B"] * s["T"] * s["H"]),
        # per token, head and direction: S a (2N^2), state update (5N^2), S r (2N^2)
        flops=lambda s: 2 * 9 * s["B"] * s["T"] * s["H"] * s["N"] ** 2,
        head_size=lambda s: s["N"],
    ),
    "attention": OpSpec(
        name="attention",
        args=("q", "k", "v"),
        shape_for=_attn_shape,
        make_inputs=_attn_inputs,
        reference=_ref.attention,
        validate=validate_attention,
        out_shape=lambda x: tuple(x["q"].shape),
        bytes_moved=lambda s, es: es * 4 * s["B"] * s["H"] * s["T"] * s["D"],
        flops=lambda s: 4 * s["B"] * s["H"] * s["T"] ** 2 * s["D"],
    ),
    "bi_selective_scan": OpSpec(
        name="bi_selective_scan",
        args=("u", "delta", "A", "A_b", "Bm", "Cm", "Dskip", "z", "delta_bias"),
        shape_for=_scan_shape,
        make_inputs=_scan_inputs,
        reference=_ref.bi_selective_scan,
        validate=validate_bi_selective_scan,
        out_shape=lambda x: tuple(x["u"].shape),
        # u, delta, z read and y written at [B,D,T]; Bm, Cm at [B,N,T]
        bytes_moved=lambda s, es: es * (4 * s["B"] * s["D"] * s["T"] + 2 * s["B"] * s["N"] * s["T"]),
        # per element of the [D, N] state, token and direction: exp, 2 mul-add, C dot
        flops=lambda s: 2 * 7 * s["B"] * s["D"] * s["N"] * s["T"],
    ),
}


def get_op(name: str) -> OpSpec:
    if name not in OPS:
        raise ValueError(f"op: unknown op {name!r}; expected one of {tuple(OPS)}")
    return OPS[name]


def element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def tokens_of(shape: dict) -> int:
    return int(shape["B"]) * int(shape["T"])


# ----------------------------------------------------------------------------- dispatch
def resolve(op: str, impl: str | Impl, device: torch.device, dtype: torch.dtype, head_size: int | None = None) -> Impl:
    """The implementation record for ``impl`` (a name, ``"auto"`` or a record), checked runnable."""
    if isinstance(impl, Impl):
        rec = impl
    elif not isinstance(impl, str):
        raise TypeError(f"impl: expected a name or 'auto', got {type(impl).__name__}")
    elif impl == "auto":
        return select_impl(op, device, dtype, head_size)
    else:
        rec = get_impl(op, impl)
    ok, why = rec.available(device)
    if ok:
        ok, why = rec.supports(dtype, head_size)
    if not ok:
        raise ValueError(f"impl: {rec.name!r} cannot run {op} here: {why}")
    return rec


def bi_wkv7(r, w, k, v, a, b, g=None, impl: str | Impl = "auto", validate: bool = True) -> Tensor:
    """Bi-WKV7 (CONTRACT section 1): ``g * wkv7(fwd) + (1 - g) * wkv7(rev)``, ``[B, T, H, N]``.

    ``validate=False`` skips the value checks (finite, in-domain ``w``; gate in [0, 1]) but
    never the shape, dtype and device checks.
    """
    validate_bi_wkv7(r, w, k, v, a, b, g, check_values=validate)
    rec = resolve("bi_wkv7", impl, r.device, r.dtype, r.shape[-1])
    args = {n: x.contiguous() for n, x in zip("rwkvab", (r, w, k, v, a, b), strict=True)}
    return rec.fn(**args, g=None if g is None else g.contiguous())


def attention(q, k, v, impl: str | Impl = "auto", validate: bool = True) -> Tensor:
    """Non-causal softmax attention, ``[B, H, T, D]``, scale ``D ** -0.5`` (CONTRACT section 2)."""
    validate_attention(q, k, v, check_values=validate)
    rec = resolve("attention", impl, q.device, q.dtype)
    return rec.fn(q=q.contiguous(), k=k.contiguous(), v=v.contiguous())


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
    """Audio Mamba's bidirectional selective scan, ``[B, D, T]`` (CONTRACT section 3)."""
    validate_bi_selective_scan(u, delta, A, A_b, Bm, Cm, Dskip, z, delta_bias, delta_softplus, check_values=validate)
    rec = resolve("bi_selective_scan", impl, u.device, u.dtype)

    def c(x):
        return None if x is None else x.contiguous()

    return rec.fn(
        u=c(u),
        delta=c(delta),
        A=c(A),
        A_b=c(A_b),
        Bm=c(Bm),
        Cm=c(Cm),
        Dskip=c(Dskip),
        z=c(z),
        delta_bias=c(delta_bias),
        delta_softplus=delta_softplus,
    )


def make_case_inputs(op: str, shape: dict, dtype, device, seed: int = 0, variant: str = "realistic") -> dict:
    """Inputs for ``op`` at ``shape``, from :mod:`wkvbench.inputs`."""
    return get_op(op).make_inputs(shape, dtype, device, seed=seed, variant=variant)


def reference_output(op: str, inputs: dict) -> Tensor:
    """The float64 reference output for ``inputs``."""
    return get_op(op).reference(**inputs)


def speed_of_light_ms(op: str, shape: dict, dtype: torch.dtype, bandwidth_gbs: float) -> float:
    """Time to move the op's minimum bytes at ``bandwidth_gbs`` GB/s, in milliseconds."""
    if not bandwidth_gbs:
        return math.nan
    return get_op(op).bytes_moved(shape, element_size(dtype)) / (bandwidth_gbs * 1e9) * 1e3
