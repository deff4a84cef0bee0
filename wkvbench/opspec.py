"""The ops as data: one :class:`OpSpec` record per op, with everything the package knows about it.

An op is its record in :data:`OPS` and nothing else: argument names, which of them carry
gradients, the shape dict for a model size and length, realistic inputs, the float64 reference,
input validation, minimum bytes moved and FLOPs, how a call's time grows with T, the shapes the
correctness gate checks, the naive baseline implementation, and the model family whose token
mixer it is. The registry derives its op names from :data:`OPS`, discovers built-in
implementation modules as ``wkvbench/impls/<op>_<backend>.py``, and verify, run and report read
everything else from here (docs/adding-an-op.md walks through adding one).

This module imports no registry, so the registry can import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from wkvbench import inputs as _inputs
from wkvbench import reference as _ref
from wkvbench.presets import FAMILIES, PRESETS, Preset, get_preset
from wkvbench.schema import KEY_DEFAULTS, MODES, TRAINING_MODES

#: The timing mode of a sweep, a case and a results row that name none: the forward (inference).
DEFAULT_MODE = KEY_DEFAULTS["mode"]
IO_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
#: Largest w for which exp(-exp(w)) is a valid RWKV-7 decay (docs/spec.md section 1: w < -0.5).
W_MAX = -0.5


@dataclass(frozen=True)
class CheckShape:
    """One shape the correctness gate checks: the op's shape dict, an input variant, and flags.

    ``tiny`` shapes are the only ones interpreted backends (Triton interpreter, CUDA simulator)
    run on a CPU; ``long`` ones run only under ``wkvbench verify --long``.
    """

    dims: dict
    variant: str = "realistic"
    tiny: bool = False
    long: bool = False

    def label(self) -> str:
        dims = "x".join(f"{k}{v}" for k, v in self.dims.items())
        return dims if self.variant == "realistic" else f"{dims} {self.variant}"


@dataclass(frozen=True)
class OpSpec:
    """Everything about one op. Shapes are dicts of the op's dimension names (``{"B", "T", ...}``)."""

    name: str  # registry and results name, e.g. "bi_wkv7"
    label: str  # human name for reports, e.g. "Bi-WKV7"
    family: str  # model family whose token mixer this is (presets.FAMILIES)
    default_model: str  # preset for ad-hoc sweeps that name no model
    args: tuple[str, ...]  # keyword arguments implementations receive (tensors and flags)
    grad_args: tuple[str, ...]  # inputs that carry gradients in training modes
    shape_for: Callable[[Preset, int, int], dict]  # (preset, batch, tokens) -> shape dict
    shape_of: Callable[[dict], dict]  # inputs -> shape dict
    make_inputs: Callable[..., dict]  # (shape, dtype, device, seed, variant) -> kwargs
    reference: Callable[..., Tensor]  # float64 truth, same keyword arguments
    validate: Callable[..., None]  # (**inputs, check_values=bool): TypeError/ValueError naming the argument
    out_shape: Callable[[dict], tuple[int, ...]]  # inputs -> output shape
    bytes_moved: Callable[[dict, int], int]  # (shape, element size) -> minimum bytes read and written
    flops: Callable[[dict], float]  # shape -> forward floating-point operations
    naive_impl: str  # the op's naive baseline implementation (registered name; per model: naive_for)
    time_exponent: int = 1  # how a call's time grows with T: 1 linear, 2 quadratic
    bwd_flops_factor: float = 2.0  # backward FLOPs / forward FLOPs
    modes: tuple[str, ...] = MODES  # the timing modes the op can be run in (schema.MODES)
    variants: tuple[str, ...] = ("realistic",)  # input variants make_inputs accepts
    head_size: Callable[[dict], int | None] = lambda shape: None  # matched against Impl.head_sizes
    check_shapes: tuple[CheckShape, ...] = ()  # the correctness gate's shapes
    long_shapes: tuple[CheckShape, ...] = ()  # added by ``verify --long`` (meant for a GPU)
    # An op whose implementations are another op's, chosen by model (the network op: its model's
    # mixer op); None: the op's own registrations.
    impls_of: Callable[[Preset], str] | None = None
    # Per-case state the worker builds once instead of a reference output:
    # (preset, shape, dtype, device, seed, check_shape, precision=, optimizer=, checkpoint=) -> an object
    # answering the worker's calls as
    # wkvbench.harness.opcase.OpCase does: ``inputs``, ``resident_bytes`` (memory held for the
    # calls, counted in their peak), ``set_mode(mode)``, ``bind(impl)`` (the callable timed) and
    # ``gate(impl, timer, mode)``. None: a plain op (the worker's OpCase: inputs and reference).
    prepare: Callable[..., object] | None = None

    def head_size_of(self, inputs: dict) -> int | None:
        return self.head_size(self.shape_of(inputs))

    def flops_in(self, shape: dict, mode: str) -> float:
        """FLOPs of one call of timing mode ``mode``: the forward's, times ``bwd_flops_factor`` for the
        backward (``bwd``) or ``1 + bwd_flops_factor`` for both (``fwd_bwd``)."""
        factor = {"bwd": self.bwd_flops_factor, "fwd_bwd": 1.0 + self.bwd_flops_factor}.get(mode, 1.0)
        return self.flops(shape) * factor

    def bytes_in(self, shape: dict, element_size: int, mode: str) -> int | None:
        """Minimum bytes of one call of ``mode``: defined for the forward; None in the training modes."""
        return None if mode in TRAINING_MODES else self.bytes_moved(shape, element_size)

    def unsupported_mode(self, mode: str) -> str | None:
        """Why the op cannot be timed in ``mode`` (not in its ``modes``), or None."""
        if mode in self.modes:
            return None
        return f"{self.name} is timed in {'/'.join(self.modes)} only (its op record's modes)"

    def naive_for(self, preset: Preset | str) -> str:
        """The naive implementation a case of this op at ``preset`` is compared with: ``naive_impl``, or
        for an op running its model's mixer (``impls_of``), that family's naive mixer."""
        if self.impls_of is None:
            return self.naive_impl
        return get_preset(preset).family_record.naive_mixer


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
def _wkv_shape(preset: Preset, batch: int, tokens: int) -> dict:
    return {"B": batch, "T": tokens, "H": preset.heads, "N": preset.head_size}


def _wkv_inputs(shape: dict, dtype, device, seed: int = 0, variant: str = "realistic") -> dict:
    return _inputs.bi_wkv7_inputs(
        shape["B"], shape["T"], shape["H"], shape["N"], dtype=dtype, device=device, seed=seed, variant=variant
    )


def _wkv(B, T, H, N=64, variant="realistic", tiny=False, long=False) -> CheckShape:
    return CheckShape({"B": B, "T": T, "H": H, "N": N}, variant, tiny, long)


def _attn_shape(preset: Preset, batch: int, tokens: int) -> dict:
    return {"B": batch, "H": preset.heads, "T": tokens, "D": preset.head_size}


def _attn_inputs(shape: dict, dtype, device, seed: int = 0, variant: str = "realistic") -> dict:
    B, H, T, D = shape["B"], shape["H"], shape["T"], shape["D"]
    return _inputs.attention_inputs(B, H, T, D, dtype=dtype, device=device, seed=seed)


def _att(B, H, T, D=64, tiny=False, long=False) -> CheckShape:
    return CheckShape({"B": B, "H": H, "T": T, "D": D}, "realistic", tiny, long)


def _scan_shape(preset: Preset, batch: int, tokens: int) -> dict:
    return {"B": batch, "D": preset.d_inner, "T": tokens, "N": preset.d_state}


def _scan_inputs(shape: dict, dtype, device, seed: int = 0, variant: str = "realistic") -> dict:
    return _inputs.bi_selective_scan_inputs(
        shape["B"], shape["D"], shape["T"], shape["N"], dtype=dtype, device=device, seed=seed
    )


def _scan(B, D, T, N=16, tiny=False, long=False) -> CheckShape:
    return CheckShape({"B": B, "D": D, "T": T, "N": N}, "realistic", tiny, long)


def _dims(x: Tensor, names: str) -> dict:
    return dict(zip(names, (int(n) for n in x.shape), strict=True))


_RECORDS = (
    OpSpec(
        name="bi_wkv7",
        label="Bi-WKV7",
        family="a-rwkv",
        default_model="A-RWKV-B",
        args=("r", "w", "k", "v", "a", "b", "g"),
        grad_args=("r", "w", "k", "v", "a", "b", "g"),
        shape_for=_wkv_shape,
        shape_of=lambda x: _dims(x["r"], "BTHN"),
        make_inputs=_wkv_inputs,
        reference=_ref.bi_wkv7,
        validate=validate_bi_wkv7,
        out_shape=lambda x: tuple(x["r"].shape),
        # six inputs and y at [B,T,H,N], the gate at [B,T,H]: each read or written once
        bytes_moved=lambda s, es: es * (7 * s["B"] * s["T"] * s["H"] * s["N"] + s["B"] * s["T"] * s["H"]),
        # per token, head and direction: S a (2N^2), state update (5N^2), S r (2N^2)
        flops=lambda s: 2 * 9 * s["B"] * s["T"] * s["H"] * s["N"] ** 2,
        naive_impl=FAMILIES["a-rwkv"].naive_mixer,
        time_exponent=1,
        bwd_flops_factor=2.0,
        variants=_inputs.WKV7_VARIANTS,
        head_size=lambda s: s["N"],
        check_shapes=(
            _wkv(1, 1, 1, tiny=True),
            _wkv(2, 5, 2, tiny=True),
            _wkv(1, 20, 2, variant="strong_decay", tiny=True),
            _wkv(2, 17, 3),
            _wkv(1, 64, 2),
            _wkv(2, 130, 2),
            _wkv(1, 200, 2, variant="strong_decay"),
            _wkv(1, 200, 2, variant="weak_decay"),
            _wkv(1, 200, 2, variant="mixed"),
        ),
        long_shapes=(_wkv(1, 2048, 12, long=True), _wkv(2, 4099, 12, long=True), _wkv(1, 16400, 12, long=True)),
    ),
    OpSpec(
        name="attention",
        label="attention",
        family="ast",
        default_model="AST-B",
        args=("q", "k", "v"),
        grad_args=("q", "k", "v"),
        shape_for=_attn_shape,
        shape_of=lambda x: _dims(x["q"], "BHTD"),
        make_inputs=_attn_inputs,
        reference=_ref.attention,
        validate=validate_attention,
        out_shape=lambda x: tuple(x["q"].shape),
        bytes_moved=lambda s, es: es * 4 * s["B"] * s["H"] * s["T"] * s["D"],
        flops=lambda s: 4 * s["B"] * s["H"] * s["T"] ** 2 * s["D"],
        naive_impl=FAMILIES["ast"].naive_mixer,
        time_exponent=2,
        bwd_flops_factor=2.5,
        check_shapes=(_att(1, 2, 17, tiny=True), _att(2, 3, 64), _att(1, 2, 200)),
        long_shapes=(_att(1, 12, 4096, long=True), _att(1, 12, 16400, long=True)),
    ),
    OpSpec(
        name="bi_selective_scan",
        label="Mamba scan",
        family="aum",
        default_model="AuM-B",
        args=("u", "delta", "A", "A_b", "Bm", "Cm", "Dskip", "z", "delta_bias", "delta_softplus"),
        grad_args=("u", "delta", "A", "A_b", "Bm", "Cm", "Dskip", "z", "delta_bias"),
        shape_for=_scan_shape,
        shape_of=lambda x: {**_dims(x["u"], "BDT"), "N": int(x["A"].shape[1])},
        make_inputs=_scan_inputs,
        reference=_ref.bi_selective_scan,
        validate=validate_bi_selective_scan,
        out_shape=lambda x: tuple(x["u"].shape),
        # u, delta, z read and y written at [B,D,T]; Bm, Cm at [B,N,T]
        bytes_moved=lambda s, es: es * (4 * s["B"] * s["D"] * s["T"] + 2 * s["B"] * s["N"] * s["T"]),
        # per element of the [D, N] state, token and direction: exp, 2 mul-add, C dot
        flops=lambda s: 2 * 7 * s["B"] * s["D"] * s["N"] * s["T"],
        naive_impl=FAMILIES["aum"].naive_mixer,
        time_exponent=1,
        bwd_flops_factor=2.0,
        check_shapes=(_scan(1, 32, 13, tiny=True), _scan(2, 64, 64), _scan(1, 96, 200)),
        long_shapes=(_scan(1, 1536, 4096, long=True), _scan(1, 1536, 16401, long=True)),
    ),
)

#: Every op, by name, in listing order: the kernel ops above, then those registered with
#: :func:`register_op` (the ``network`` op, by :mod:`wkvbench.models.network_op`).
OPS: dict[str, OpSpec] = {spec.name: spec for spec in _RECORDS}


def register_op(record: OpSpec, replace: bool = False) -> OpSpec:
    """Add ``record`` to :data:`OPS` (an op defined outside this module); ValueError if its name is taken."""
    if not isinstance(record, OpSpec):
        raise TypeError(f"record: expected an OpSpec, got {type(record).__name__}")
    if record.name in OPS and OPS[record.name] is not record and not replace:
        raise ValueError(f"record: op {record.name!r} is already registered; pass replace=True to override it")
    OPS[record.name] = record
    return record


def get_op(name: str) -> OpSpec:
    """The record of op ``name``; a ValueError naming it and the known ops if unknown."""
    if name not in OPS:
        raise ValueError(f"op: unknown op {name!r}; expected one of {', '.join(OPS)}")
    return OPS[name]


def impl_op(op: str, model: Preset | str | None = None) -> str:
    """The op whose registered implementations run ``op`` for ``model`` (``op`` itself for a plain op)."""
    spec = get_op(op)
    if spec.impls_of is None:
        return op
    if model is None:
        raise ValueError(f"model: op {op!r} takes the implementations of its model's mixer; name the model")
    return spec.impls_of(get_preset(model))


def impl_ops(op: str) -> tuple[str, ...]:
    """Every op whose implementations may run ``op`` (for any model)."""
    spec = get_op(op)
    if spec.impls_of is None:
        return (op,)
    return tuple(dict.fromkeys(spec.impls_of(m) for m in PRESETS.values()))


def element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def tokens_of(shape: dict) -> int:
    return int(shape["B"]) * int(shape["T"])
