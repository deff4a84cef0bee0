"""The network accuracy gate (docs/spec.md section 8): a mixer inside a whole network vs float64.

For a preset, a duration, a dtype and a device, one network is built (``seed``), and its output on
one realistic spectrogram is compared with the output of the *same* network -- the same weights
as rounded to the dtype, the same input as rounded to the dtype -- run in float64 with the op's
float64 reference as mixer. The error is the relative L2 ``||y - ref|| / ||ref||`` over the logits
(max absolute error beside it, docs/spec.md section 5).

An implementation passes when its error is at most twice the error of the same network with the
op's naive baseline in the same dtype (FlashAttention's rule), and at most an absolute ceiling per
dtype (:func:`ceiling`: 1e-4 in float32; the op's output bar times the network's depth in
bfloat16/float16):

    bar = min(2 * baseline_err, ceiling(dtype, depth))

A non-finite output is never a pass: the network under test with a NaN/inf anywhere in its logits
fails ("non-finite output"), and so does every mixer when the baseline network's or the float64
twin's output is not finite ("comparison void"). While the gate runs, the mixer skips the op's
value checks (shapes, dtypes and devices are still checked), so a NaN a mixer writes reaches the
logits and is judged here instead of being rejected by the next layer's input check.

Baselines: the family's naive mixer (:attr:`wkvbench.presets.Family.gate_baseline`): ``torch_loop``
for bi_wkv7 and the scan; ``torch_eager`` for attention, which keeps AST's precision and is
registered for float32/float16 only, so bfloat16 uses ``sdpa_math``.

On CUDA, TF32 is switched off for cuDNN convolutions and matmuls while the gate runs (cuDNN allows
it by default): otherwise the network's own patch and ConvShift convolutions would round float32
to TF32, and every mixer, the baseline included, would miss the 1e-4 float32 bar. A mixer that
itself computes on TF32 (``tf32=True`` on its record) is judged in bfloat16 instead (docs/spec.md
section 5); in a float32 network it is expected to fail.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from wkvbench.accuracy import TOLERANCE
from wkvbench.models import train
from wkvbench.models.common import REFERENCE, SpectrogramNet, spectrogram
from wkvbench.models.factory import build
from wkvbench.presets import FAMILIES, get_preset

FP32_BAR = 1e-4
BASELINE_FACTOR = 2.0
DEFAULT_DEPTH = 12  # A-RWKV and AST; AuM has 24 blocks


def baseline_for(op: str, dtype: torch.dtype) -> str:
    """The gate's baseline implementation of mixer op ``op`` in ``dtype`` (its family record's)."""
    for family in FAMILIES.values():
        if family.mixer_op == op:
            return family.gate_baseline(dtype)
    raise ValueError(f"op: {op!r} is the token mixer of no network family")


@dataclass(frozen=True)
class CheckResult:
    """One implementation inside one network against the float64 network."""

    preset: str
    seconds: float
    op: str
    impl: str
    dtype: str
    device: str
    batch: int
    rel_err: float
    max_abs_err: float
    baseline: str
    baseline_err: float
    bar: float
    passed: bool
    why: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _errors(y: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    diff = y.to(torch.float64) - ref
    rel = float(diff.norm() / ref.norm()) if float(ref.norm()) > 0 else float(diff.norm())
    if not bool(torch.isfinite(y).all()):
        rel = math.inf
    return rel, float(diff.abs().max())


def finite(t: torch.Tensor) -> bool:
    """Whether every element of ``t`` is finite."""
    return bool(torch.isfinite(t).all())


def ceiling(dtype: torch.dtype, depth: int = DEFAULT_DEPTH) -> float:
    """The absolute ceiling of the network error in ``dtype`` (docs/spec.md section 8): 1e-4 in
    float32, the op's output bar (docs/spec.md section 5) times ``depth`` blocks otherwise."""
    if dtype == torch.float32:
        return FP32_BAR
    return TOLERANCE[dtype] * int(depth) if dtype in TOLERANCE else math.inf


def bar_for(dtype: torch.dtype, baseline_err: float, depth: int = DEFAULT_DEPTH) -> float:
    """The error an implementation may reach in a network, given the baseline's error: twice it,
    at most :func:`ceiling`. A non-finite baseline error gives no bar (``nan``: nothing passes)."""
    if not math.isfinite(baseline_err):
        return math.nan
    return min(BASELINE_FACTOR * baseline_err, ceiling(dtype, depth))


@contextlib.contextmanager
def exact_float32(device: torch.device) -> Iterator[None]:
    """No TF32 in cuDNN convolutions and CUDA matmuls inside the block (restored afterwards)."""
    if device.type != "cuda":
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


class NetworkGate:
    """The gate for one built network and one input: the float64 twin's output (once), each mixer's
    error against it, and the bar from the family's baseline mixer (run once, on first need)."""

    def __init__(
        self, net: SpectrogramNet, mel: torch.Tensor, seed: int = 0, autocast: torch.dtype | None = None
    ) -> None:
        p = next(net.parameters())
        self.net, self.mel, self.dtype, self.device = net, mel, p.dtype, p.device
        self.context = None  # autocast: float32 weights, the forward under torch.autocast(autocast)
        if autocast is not None:
            self.dtype = autocast
            self.context = functools.partial(torch.autocast, self.device.type, dtype=autocast)
        with torch.no_grad(), exact_float32(self.device):
            self.ref = self._twin()(mel.to(torch.float64))
        self._baseline: tuple[str, float] | None = None
        self.target = train.targets(mel.shape[0], self.device, seed)  # the training step's labels
        self._ref_grads: torch.Tensor | None = None
        self._grad_baseline: tuple[str, float] | None = None

    def _autocast(self):
        return self.context() if self.context is not None else contextlib.nullcontext()

    def _twin(self) -> SpectrogramNet:
        """The float64 twin: the same weights (as rounded to the dtype), the reference mixer."""
        twin = copy.deepcopy(self.net).to(torch.float64)
        twin.mixer.impl = REFERENCE
        twin.checkpoint_blocks = False  # the truth keeps its activations (no recompute of the float64 loops)
        twin.zero_grad(set_to_none=True)
        return twin

    # ------------------------------------------------------------------ training (fwd_bwd)
    def ref_grads(self) -> torch.Tensor:
        """The float64 twin's parameter gradients of one training step, as one vector (once)."""
        if self._ref_grads is None:
            with exact_float32(self.device):
                self._ref_grads = train.grads(self._twin(), self.mel.to(torch.float64), self.target)
        return self._ref_grads

    def grad_error(self, impl: str) -> float:
        """Relative L2 of the network's parameter gradients with mixer ``impl`` (inf: not finite)."""
        old = self.net.mixer.impl, self.net.mixer.validate
        self.net.set_impl(impl)
        try:
            self.net.mixer.validate = False
            with exact_float32(self.device):
                g = train.grads(self.net, self.mel, self.target, self.context)
        finally:
            self.net.mixer.impl, self.net.mixer.validate = old
        return train.grad_error(g, self.ref_grads())

    def grad_judge(self, impl: str) -> dict:
        """``grad_rel_err``, ``grad_baseline_err``, ``grad_tol`` and ``passed`` (``why`` when it failed)."""
        if self._grad_baseline is None:
            name = self.net.family_record.gate_baseline(self.dtype)
            self._grad_baseline = (name, self.grad_error(name))
        base, base_err = self._grad_baseline
        if not bool(torch.isfinite(self.ref_grads()).all()):
            base_err = math.inf
        err = self.grad_error(impl)
        depth = self.net.preset.depth
        bar = train.grad_bar(self.dtype, base_err, depth)
        out = {"grad_rel_err": err, "grad_baseline_err": base_err, "grad_tol": bar}
        if not math.isfinite(err):
            return {**out, "passed": False, "why": "non-finite parameter gradient"}
        if not math.isfinite(base_err):
            why = f"the baseline network's ({base}) gradients are not finite: comparison void"
            return {**out, "passed": False, "why": why}
        if not err <= bar:
            ceil = train.grad_ceiling(self.dtype, depth)
            why = f"gradient rel_err {err:.3g} > bar {bar:.3g} (2x {base} at {base_err:.3g}, ceiling {ceil:.3g})"
            return {**out, "passed": False, "why": why}
        return {**out, "passed": True}

    def _run(self, impl: str) -> torch.Tensor:
        """The logits of the network with mixer ``impl`` (checked), the op's value checks off."""
        old = self.net.mixer.impl, self.net.mixer.validate
        self.net.set_impl(impl)
        try:
            self.net.mixer.validate = False
            with torch.no_grad(), exact_float32(self.device), self._autocast():
                return self.net(self.mel)
        finally:
            self.net.mixer.impl, self.net.mixer.validate = old

    def error(self, impl: str) -> tuple[float, float]:
        """``(rel_err, max_abs_err)`` of the network with mixer ``impl`` (checked) against the float64 twin
        (``rel_err`` is inf when the output is not finite)."""
        return _errors(self._run(impl), self.ref)

    def baseline(self) -> tuple[str, float]:
        """The family's baseline mixer in this dtype and its error (inf: its output is not finite)."""
        if self._baseline is None:
            name = self.net.family_record.gate_baseline(self.dtype)
            self._baseline = (name, self.error(name)[0])
        return self._baseline

    def judge(self, impl: str) -> dict:
        """``rel_err``, ``max_abs_err``, ``baseline``, ``baseline_err``, ``bar``, ``passed`` and, when it
        failed, ``why`` for ``impl``."""
        base, base_err = self.baseline()
        y = self._run(impl)
        rel, mx = _errors(y, self.ref)
        bar = bar_for(self.dtype, base_err, self.net.preset.depth)
        out = {"rel_err": rel, "max_abs_err": mx, "baseline": base, "baseline_err": base_err, "bar": bar}
        if not finite(y):
            return {**out, "passed": False, "why": f"non-finite output ({_census(y)})"}
        if not finite(self.ref):
            return {**out, "passed": False, "why": "the float64 network's output is not finite: comparison void"}
        if not math.isfinite(base_err):
            why = f"the baseline network ({base}) output is not finite in {_dtype_name(self.dtype)}: comparison void"
            return {**out, "passed": False, "why": why}
        if not rel <= bar:
            why = f"rel_err {rel:.3g} > bar {bar:.3g} (2x {base} at {base_err:.3g}, ceiling {self.ceiling:.3g})"
            return {**out, "passed": False, "why": why}
        return {**out, "passed": True}

    @property
    def ceiling(self) -> float:
        """The absolute ceiling of this network's error in its dtype."""
        return ceiling(self.dtype, self.net.preset.depth)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _census(y: torch.Tensor) -> str:
    """``"3 NaN, 1 inf of 527"``: what is not finite in ``y``."""
    nan, inf = int(torch.isnan(y).sum()), int(torch.isinf(y).sum())
    return f"{nan} NaN, {inf} inf of {y.numel()}"


def check_many(
    preset: str,
    seconds: float,
    impls: list[str],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    batch: int = 1,
    seed: int = 0,
) -> list[CheckResult]:
    """:func:`check` for several implementations, sharing one network, input, truth and baseline run."""
    model = get_preset(preset)
    net = build(model, seconds, model.family_record.gate_baseline(dtype), dtype=dtype, device=device, seed=seed)
    for impl in impls:  # every name checked before anything runs
        net.set_impl(impl)
    gate = NetworkGate(net, spectrogram(batch, seconds, dtype=dtype, device=device, seed=seed), seed)
    common = {"preset": model.name, "seconds": float(seconds), "op": net.op, "dtype": _dtype_name(dtype)}
    common.update(device=str(torch.device(device)), batch=batch)
    return [CheckResult(**common, impl=impl, **gate.judge(impl)) for impl in impls]


def check(
    preset: str,
    seconds: float,
    impl: str,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    batch: int = 1,
    seed: int = 0,
) -> CheckResult:
    """Network output error of ``impl`` vs the float64 network, the baseline's error, the bar, pass/fail."""
    return check_many(preset, seconds, [impl], dtype=dtype, device=device, batch=batch, seed=seed)[0]
