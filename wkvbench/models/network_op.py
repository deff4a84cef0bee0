"""The ``network`` op: a whole network (A-RWKV, AST-B, AuM) benchmarked like any other op.

docs/spec.md sections 7 and 8. This module defines the op and registers its record with
:func:`wkvbench.opspec.register_op` on import (``import wkvbench`` imports it):

* its shape (:func:`shape_for`): the mixer op's shape dict for the model, batch and tokens, plus
  ``F`` (spectrogram frames: the fewest that give those tokens, i.e. the frames the patch grid
  uses; a remainder the grid drops is not fed), ``L`` (depth), ``W`` (width) and ``P`` (weight
  elements applied to every token, see :func:`flops`);
* its input (:func:`make_inputs`): ``{"mel": [B, F, 128]}``, the models package's spectrogram;
* its FLOPs (:func:`flops`), an **estimate**, not a count: 2 FLOPs per token for every weight
  element of the per-token matrices and convolutions (``P``: linears, LoRA factors, patch and
  ConvShift/causal convolutions), 2 per sequence for the head, plus ``L`` times the mixer op's
  own FLOPs; norms, activations, softmax and other elementwise work are not counted;
* :class:`NetworkCase`, the per-case state the harness worker builds once (outside the timed
  region): the network in the case's dtype (seeded weights), its float64 twin for the gate, and
  per implementation the timed callable (:meth:`NetworkCase.bind`) and the network accuracy
  gate (:meth:`NetworkCase.gate`).

The implementations of ``network`` are those of its model's mixer op (``bi_wkv7``, ``attention``
or ``bi_selective_scan``), plugins included: ``impl`` names the mixer.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor

from wkvbench.models import train
from wkvbench.models.ast_vit import NUM_CLASSES
from wkvbench.models.common import REFERENCE, spectrogram
from wkvbench.models.factory import _construct, build
from wkvbench.models.gate import NetworkGate
from wkvbench.opspec import DEFAULT_MODE, OPS, OpSpec, register_op
from wkvbench.presets import MEL_BINS, PRESETS, Preset, get_preset
from wkvbench.schema import CHECKPOINTS, PRECISIONS, TRAINING_MODES

#: Parameters applied elementwise, once per sequence, or as embeddings: not in ``P``.
_NOT_PER_TOKEN = ("pos_embed", "cls_token", "dist_token", "A_log", "A_b_log", "mu", "r_k", "head", "mlp_head")
_EXTRA = ("F", "L", "W", "P")


@functools.cache
def per_token_weights(preset: str) -> int:
    """``P``: weight elements of the matrices and convolutions every token passes through (meta build)."""
    with torch.device("meta"):
        net = _construct(get_preset(preset), 2.56, "auto", init=False)
    total = 0
    for name, p in net.named_parameters():
        parts = name.split(".")
        if p.dim() < 2 or any(x in _NOT_PER_TOKEN for x in parts):
            continue
        total += p.numel()
    return total


def shape_for(preset: Preset, batch: int, tokens: int) -> dict:
    family = preset.family_record
    mixer = OPS[family.mixer_op].shape_for(preset, batch, tokens)
    frames = family.frames_for_tokens(tokens)
    mixer["T"] = preset.tokens(frames / 100)  # the grid's own count (a check length may fall between grids)
    return {**mixer, "F": frames, "L": preset.depth, "W": preset.width, "P": per_token_weights(preset.name)}


def mixer_op_of_shape(shape: dict) -> str:
    """The mixer op whose shape dict ``shape`` extends (by its dimension names)."""
    dims = set(shape) - set(_EXTRA)
    for preset in PRESETS.values():  # the mixer ops' shape dicts differ in their dimension names
        op = preset.family_record.mixer_op
        if dims == set(OPS[op].shape_for(preset, 1, 1)):
            return op
    raise ValueError(f"shape: {sorted(shape)} is not a network shape")


def mixer_shape(shape: dict) -> dict:
    return {k: v for k, v in shape.items() if k not in _EXTRA}


def flops(shape: dict) -> float:
    """Forward FLOPs, an estimate (see the module docstring)."""
    B, T = shape["B"], shape["T"]
    mixer = OPS[mixer_op_of_shape(shape)].flops(mixer_shape(shape))
    return 2.0 * B * T * shape["P"] + 2.0 * B * NUM_CLASSES * shape["W"] + shape["L"] * mixer


def bytes_moved(shape: dict, element_size: int) -> int:
    """Minimum bytes: the per-token weights read once, the spectrogram read, the logits written."""
    return element_size * (shape["P"] + shape["B"] * shape["F"] * MEL_BINS + shape["B"] * NUM_CLASSES)


def make_inputs(shape: dict, dtype, device, seed: int = 0, variant: str = "realistic") -> dict:
    return {"mel": spectrogram(shape["B"], shape["F"] / 100, dtype=dtype, device=device, seed=seed)}


def validate(mel=None, check_values: bool = True) -> None:
    if not isinstance(mel, Tensor):
        raise TypeError(f"mel: expected a torch.Tensor, got {type(mel).__name__}")
    if mel.dim() != 3 or mel.shape[2] != MEL_BINS or min(mel.shape) < 1:
        raise ValueError(f"mel: expected [B, frames, {MEL_BINS}], got {tuple(mel.shape)}")


def no_reference(**inputs) -> Tensor:
    raise ValueError("network: the float64 truth is the float64 network (NetworkCase.gate), not a function of mel")


def head_size(shape: dict) -> int | None:
    op = mixer_op_of_shape(shape)
    return {"bi_wkv7": shape.get("N"), "attention": shape.get("D")}.get(op)


class NetworkCase:
    """One network case in the worker: the network built once, its float64 twin, the gate per mixer.

    ``preset`` a preset (or its name), ``shape`` the network shape (:func:`shape_for`), ``check_shape`` the shape
    the gate checks at (a shorter duration; None: the same). Weights come from ``seed`` (the same
    network for every mixer; :meth:`bind` swaps only the mixer). ``optimizer``: what a training step
    ends with (:data:`wkvbench.models.train.OPTIMIZERS`; ``none``: forward, loss and backward only).
    ``checkpoint``: ``blocks`` recomputes each block in the backward (:data:`wkvbench.schema.CHECKPOINTS`).
    """

    def __init__(
        self,
        preset: Preset | str,
        shape: dict,
        dtype,
        device,
        seed: int = 0,
        check_shape: dict | None = None,
        optimizer: str = "none",
        precision: str = "pure",
        checkpoint: str = "none",
    ):
        self.preset = get_preset(preset)
        self.dtype, self.device, self.seed = dtype, torch.device(device), int(seed)
        self.optimizer_name, self.precision = optimizer, precision
        self.context = None  # autocast: float32 weights and input, the forward under torch.autocast(dtype)
        if precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
        if precision == "autocast":
            if dtype not in (torch.bfloat16, torch.float16):
                raise ValueError(f"precision: autocast needs bfloat16 or float16, got {dtype}")
            self.context = functools.partial(torch.autocast, self.device.type, dtype=dtype)
        self.weight_dtype = torch.float32 if self.context is not None else dtype
        if checkpoint not in CHECKPOINTS:
            raise ValueError(f"checkpoint: expected one of {CHECKPOINTS}, got {checkpoint!r}")
        self.checkpoint = checkpoint
        self.net = build(self.preset, shape["F"] / 100, REFERENCE, self.weight_dtype, self.device, self.seed)
        self.net.checkpoint_blocks = checkpoint == "blocks"  # not the gate's float64 twin: it has no memory limit
        train.make_optimizer(optimizer, self.net)  # checks the name before anything runs
        self.inputs = make_inputs(shape, self.weight_dtype, self.device, self.seed)  # the timed call's
        self._weight_bytes = sum(t.numel() * t.element_size() for t in (*self.net.parameters(), *self.net.buffers()))
        self._held_state_bytes = 0  # the optimizer state when the timed call was last handed out (timed_call)
        self.shape = shape
        self.check_shape = check_shape if check_shape is not None else shape
        self.mode = DEFAULT_MODE
        self.target = train.targets(shape["B"], self.device, self.seed)  # the timed training step's labels
        self._optimizer = None
        # an optimizer step moves the weights: the gate judges (and each mixer starts from) these
        self._initial = None if optimizer == "none" else {k: v.clone() for k, v in self.net.state_dict().items()}
        self._network_gate: NetworkGate | None = None
        self._gate()  # the float64 twin's output, once per case

    def bind(self, impl: str) -> Callable[..., Tensor]:
        """The callable the harness times for ``impl``: in ``fwd`` the network's forward with that mixer
        (``torch.no_grad``), in ``fwd_bwd`` one training step (:func:`wkvbench.models.train.step`).
        The mode is read at call time (one bound callable serves every mode of the case)."""
        self.net.set_impl(impl)  # checked once here, not in the timed calls
        net = self.net

        def call(mel: Tensor) -> Tensor:
            net.mixer.impl = impl
            if self.mode in TRAINING_MODES:
                return train.step(net, mel, self.target, self._optimizer, self.context)
            with torch.no_grad(), self._autocast():
                return net(mel)

        return call

    def _restore(self) -> None:
        """The initial weights and a fresh optimizer (after optimizer steps); nothing without an optimizer."""
        if self._initial is None:
            return
        self.net.load_state_dict(self._initial)
        if self._optimizer is not None:
            self._optimizer = train.make_optimizer(self.optimizer_name, self.net)

    def _autocast(self):
        return self.context() if self.context is not None else contextlib.nullcontext()

    @property
    def resident_bytes(self) -> int:
        """Memory held besides the input that the worker's peak adds to what the timed calls allocate:
        the weights and buffers, plus the optimizer state (AdamW's ``exp_avg``, ``exp_avg_sq``) that
        existed when :meth:`timed_call` handed out the call (see there)."""
        return self._weight_bytes + self._held_state_bytes

    def optimizer_state_bytes(self) -> int:
        """Bytes of the optimizer's state tensors on the network's device (0 without an optimizer or
        before its first step; AdamW's ``step`` counters live on the CPU beside a GPU network)."""
        if self._optimizer is None:
            return 0
        return sum(
            t.numel() * t.element_size()
            for state in self._optimizer.state.values()
            for t in state.values()
            if isinstance(t, Tensor) and t.device == self.device
        )

    def timed_call(self, fn: Callable[..., Tensor], mode: str):
        """What the worker times in ``mode``: ``fn`` (from :meth:`bind`) on the case's input; nothing to build.

        The worker's peak memory (``cmd_sample``, CUDA) is the allocator's peak over the timed calls minus
        what was allocated just after this returns, plus the input and :attr:`resident_bytes`. So the
        optimizer state is counted once either way: state made before (in practice by the check's warm-up,
        at least two steps) is allocated before the window and is added back through
        :attr:`resident_bytes`, measured here; state a first timed step makes falls inside the window.
        """
        self.set_mode(mode)
        self.net.zero_grad(set_to_none=True)  # no stale gradients in the memory the samples start from
        self._held_state_bytes = self.optimizer_state_bytes() if mode in TRAINING_MODES else 0
        return (lambda: fn(**self.inputs)), None

    def _gate(self) -> NetworkGate:
        """The network gate at the check shape (built on first need; the timed network when the same)."""
        if self._network_gate is None:
            f = self.check_shape["F"]
            net = self.net
            if f != self.net.frames:
                net = build(self.preset, f / 100, REFERENCE, self.weight_dtype, self.device, self.seed)
                net.checkpoint_blocks = self.net.checkpoint_blocks  # gated as it is timed
            mel = self.inputs["mel"] if self.check_shape == self.shape else None
            if mel is None:
                mel = make_inputs(self.check_shape, self.weight_dtype, self.device, self.seed)["mel"]
            autocast = self.dtype if self.context is not None else None
            self._network_gate = NetworkGate(net, mel, self.seed, autocast)
        return self._network_gate

    def set_mode(self, mode: str) -> None:
        """``fwd`` or ``fwd_bwd`` (the record's modes); a training mode makes the optimizer (if any)."""
        if mode not in OPS["network"].modes:
            raise ValueError(f"mode: the network op runs in {OPS['network'].modes}, not {mode!r}")
        self.mode = mode
        if mode in TRAINING_MODES and self._optimizer is None:
            self._optimizer = train.make_optimizer(self.optimizer_name, self.net)

    def gate(self, impl: str, timer=None, mode: str = DEFAULT_MODE) -> dict:
        """The first call of ``impl`` (timed by ``timer``, a :class:`~wkvbench.harness.timing.Timer`) and
        the network gate (docs/spec.md section 8): ``rel_err``, ``max_abs_err``, ``tol`` (the bar), ``passed``;
        in a training mode also the gradient check (``grad_rel_err``, ``grad_tol``) and ``saved_bytes``."""
        self.set_mode(mode)
        first_ms = None
        if timer is not None:
            fn = self.bind(impl)
            _, first_ms = timer.first_call(lambda: fn(**self.inputs))
        self._restore()
        g = self._gate().judge(impl)
        res = {"first_call_ms": first_ms, "rel_err": _num(g["rel_err"]), "max_abs_err": _num(g["max_abs_err"])}
        res["tol"] = _num(g["bar"])
        if not g["passed"]:
            return {**res, "passed": False, "why": f"network gate: {g['why']}"}
        if mode in TRAINING_MODES:
            gg = self._gate().grad_judge(impl)
            res.update(grad_rel_err=_num(gg["grad_rel_err"]), grad_tol=_num(gg["grad_tol"]), grad_worst="params")
            if not gg["passed"]:
                return {**res, "passed": False, "why": f"network gate: {gg['why']}"}
            self.net.mixer.impl = impl
            res["saved_bytes"] = train.saved_bytes(self.net, self.inputs["mel"], self.target, self.context)
        return {**res, "passed": True}


def _num(x: float) -> float | None:
    """``x``, or None when it is not finite (a row holds no NaN/inf; the verdict says why)."""
    return x if math.isfinite(x) else None


register_op(
    OpSpec(
        name="network",
        label="network",
        family="a-rwkv",
        default_model="A-RWKV-S",
        args=("mel",),
        grad_args=("mel",),
        shape_for=shape_for,  # the mixer's shape + F (frames), L (depth), W (width), P
        shape_of=lambda x: {"B": int(x["mel"].shape[0]), "F": int(x["mel"].shape[1])},
        make_inputs=make_inputs,
        reference=no_reference,  # the truth is the float64 network: see prepare
        validate=validate,
        out_shape=lambda x: (int(x["mel"].shape[0]), NUM_CLASSES),
        bytes_moved=bytes_moved,
        flops=flops,  # an estimate
        naive_impl="",  # per model: its family's naive mixer (OpSpec.naive_for)
        time_exponent=1,
        bwd_flops_factor=2.0,
        modes=(DEFAULT_MODE, "fwd_bwd"),  # inference, and one training step (NetworkCase.bind)
        head_size=head_size,
        impls_of=lambda preset: preset.family_record.mixer_op,
        prepare=NetworkCase,
    )
)
