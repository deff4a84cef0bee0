"""The network accuracy gate (docs/spec.md section 8): a mixer inside a whole network vs float64.

For a preset, a duration, a dtype and a device, one network is built (``seed``), and its output on
one realistic spectrogram is compared with the output of the *same* network -- the same weights
as rounded to the dtype, the same input as rounded to the dtype -- run in float64 with the op's
float64 reference as mixer. The error is the relative L2 ``||y - ref|| / ||ref||`` over the logits
(max absolute error beside it, docs/spec.md section 5).

An implementation passes when its error is at most twice the error of the same network with the
op's naive baseline in the same dtype (FlashAttention's rule), and, in float32, also at most 1e-4:

    bar = min(2 * baseline_err, 1e-4) for float32, 2 * baseline_err otherwise

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
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from wkvbench.models.common import REFERENCE, SpectrogramNet, spectrogram
from wkvbench.models.factory import build
from wkvbench.presets import FAMILIES, get_preset

FP32_BAR = 1e-4
BASELINE_FACTOR = 2.0


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

    def as_dict(self) -> dict:
        return asdict(self)


def _errors(y: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    diff = y.to(torch.float64) - ref
    rel = float(diff.norm() / ref.norm()) if float(ref.norm()) > 0 else float(diff.norm())
    if not bool(torch.isfinite(y).all()):
        rel = math.inf
    return rel, float(diff.abs().max())


def bar_for(dtype: torch.dtype, baseline_err: float) -> float:
    """The error an implementation may reach in a network, given the baseline's error."""
    bar = BASELINE_FACTOR * baseline_err
    return min(bar, FP32_BAR) if dtype == torch.float32 else bar


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

    def __init__(self, net: SpectrogramNet, mel: torch.Tensor) -> None:
        p = next(net.parameters())
        self.net, self.mel, self.dtype, self.device = net, mel, p.dtype, p.device
        with torch.no_grad(), exact_float32(self.device):
            twin = copy.deepcopy(net).to(torch.float64)
            twin.mixer.impl = REFERENCE
            self.ref = twin(mel.to(torch.float64))
        del twin
        self._baseline: tuple[str, float] | None = None

    def error(self, impl: str) -> tuple[float, float]:
        """``(rel_err, max_abs_err)`` of the network with mixer ``impl`` (checked) against the float64 twin."""
        old = self.net.mixer.impl
        self.net.set_impl(impl)
        try:
            with torch.no_grad(), exact_float32(self.device):
                return _errors(self.net(self.mel), self.ref)
        finally:
            self.net.mixer.impl = old

    def baseline(self) -> tuple[str, float]:
        """The family's baseline mixer in this dtype and its error."""
        if self._baseline is None:
            name = self.net.family_record.gate_baseline(self.dtype)
            self._baseline = (name, self.error(name)[0])
        return self._baseline

    def judge(self, impl: str) -> dict:
        """``rel_err``, ``max_abs_err``, ``baseline``, ``baseline_err``, ``bar`` and ``passed`` for ``impl``."""
        base, base_err = self.baseline()
        rel, mx = self.error(impl)
        bar = bar_for(self.dtype, base_err)
        return {"rel_err": rel, "max_abs_err": mx, "baseline": base, "baseline_err": base_err, "bar": bar,
                "passed": bool(rel <= bar)}  # fmt: skip


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
    gate = NetworkGate(net, spectrogram(batch, seconds, dtype=dtype, device=device, seed=seed))
    common = {"preset": model.name, "seconds": float(seconds), "op": net.op, "dtype": str(dtype).replace("torch.", "")}
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
