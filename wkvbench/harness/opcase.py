"""The worker's per-case state of a plain op: seeded inputs, the float64 truth, ``bind`` and ``gate``.

An op whose record has a ``prepare`` (the network op: :class:`wkvbench.models.network_op.NetworkCase`)
builds its own state; every other op gets an :class:`OpCase`. Both answer the same calls, so the
worker (:mod:`wkvbench.harness.worker`) has one check path:

* ``inputs`` (the timed call's keyword arguments) and ``resident_bytes`` (memory held besides them);
* ``set_mode(mode)``: what a timing mode needs before its first check (here: the output gradient
  and the float64 reference gradients of a training mode, once per case);
* ``bind(impl)``: the callable timed;
* ``gate(impl, timer, mode)``: the first call (timed by ``timer``) and the accuracy verdict:
  ``first_call_ms``, ``rel_err``, ``max_abs_err``, ``tol``, ``passed``, ``why`` when it failed, and
  what else the row records (``compiled``, the gradient errors, ``saved_bytes``).
"""

from __future__ import annotations

import gc

import torch

from wkvbench import accuracy, gradcheck, ops, registry
from wkvbench.harness import compiles
from wkvbench.schema import TRAINING_MODES


def _on_cpu(inputs: dict, device: torch.device) -> dict:
    """``inputs`` on the CPU, after freeing what the device's failed attempt left."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {k: v.cpu() if torch.is_tensor(v) else v for k, v in inputs.items()}


class OpCase:
    """One case of a plain op: inputs at the timed shape, the float64 reference at the check shape.

    ``case`` a sweep's :class:`~wkvbench.harness.suite.Case`; ``check_shape`` the shape the gate checks
    at (a shorter length; None: the timed shape). The reference is computed on the case's device,
    on the CPU if that runs out of memory.
    """

    resident_bytes = 0

    def __init__(self, case, dtype: torch.dtype, device: torch.device, check_shape: dict | None = None) -> None:
        self.case, self.dtype, self.device = case, dtype, device
        self.spec = ops.get_op(case.op)
        self.inputs = self.spec.make_inputs(case.shape, dtype, device, seed=case.seed, variant=case.variant)
        self.check_inputs = self.inputs
        if check_shape is not None:
            self.check_inputs = self.spec.make_inputs(check_shape, dtype, device, seed=case.seed, variant=case.variant)
        try:
            self.ref = self.spec.reference(**self.check_inputs)
        except torch.OutOfMemoryError:
            self.ref = self.spec.reference(**_on_cpu(self.check_inputs, self.device))
        self.grad_ref: dict | None = None  # float64 reference gradients (training modes)
        self.check_dy = None  # output gradient at the check shape
        self.dy = None  # output gradient at the timed shape

    def set_mode(self, mode: str) -> None:
        """In a training mode: the output gradients and the float64 reference gradients (once)."""
        if mode not in TRAINING_MODES or self.grad_ref is not None:
            return
        seed = self.case.seed
        self.check_dy = gradcheck.make_dy(self.spec.out_shape(self.check_inputs), self.dtype, self.device, seed)
        self.dy = gradcheck.make_dy(self.spec.out_shape(self.inputs), self.dtype, self.device, seed)
        try:
            self.grad_ref = gradcheck.reference_grads(self.case.op, self.check_inputs, self.check_dy)
        except torch.OutOfMemoryError:
            cpu = _on_cpu(self.check_inputs, self.device)
            self.grad_ref = gradcheck.reference_grads(self.case.op, cpu, self.check_dy.cpu())

    def _rec(self, impl: str) -> registry.Impl:
        return registry.get_impl(self.case.impl_op, impl)

    def bind(self, impl: str):
        """The registered function of ``impl``."""
        return self._rec(impl).fn

    def gate(self, impl: str, timer, mode: str) -> dict:
        """First call on NaN-poisoned output, output accuracy, and in a training mode the gradients
        against float64 autograd and the bytes the forward saves for the backward (timed shape)."""
        rec, dtype = self._rec(impl), self.dtype
        out_shape = self.spec.out_shape(self.check_inputs)
        cache_mods = compiles.prefixes_for(rec.module, rec.peer)
        before = compiles.kernel_cache_entries(cache_mods)
        y, first_ms = timer.first_call(
            lambda: accuracy.run_checked(rec.fn, self.check_inputs, out_shape, dtype, rec.accepts_out)
        )
        res = {
            "first_call_ms": first_ms,
            "compiled": compiles.compiled(before, compiles.kernel_cache_entries(cache_mods)),
        }
        if not torch.is_tensor(y) or tuple(y.shape) != tuple(out_shape):
            got = tuple(y.shape) if torch.is_tensor(y) else type(y).__name__
            return {**res, "passed": False, "why": f"returned {got}, expected a tensor of shape {out_shape}"}
        acc = accuracy.compare(y, self.ref, dtype, rec.tf32)
        del y
        res.update(rel_err=acc.rel_err, max_abs_err=acc.max_abs, tol=acc.tol)
        if not acc.passed:
            why = "non-finite output" if not acc.finite else f"rel_err {acc.rel_err:.3g} > tol {acc.tol:.3g}"
            return {**res, "passed": False, "why": why}
        if mode in TRAINING_MODES:
            names = gradcheck.grad_names(self.case.op, self.check_inputs)
            (_, grads), grad_ms = timer.first_call(
                lambda: gradcheck.implementation_grads(rec.fn, self.check_inputs, names, self.check_dy)
            )
            gacc = gradcheck.compare_grads(grads, self.grad_ref, dtype, rec.tf32)
            del grads
            res["first_call_ms"] = first_ms + grad_ms
            res.update(grad_rel_err=gacc.worst_err, grad_worst=gacc.worst, grad_tol=gacc.tol)
            if not gacc.passed:
                why = "non-finite gradient" if not gacc.finite else f"gradient {gacc.label()} > tol {gacc.tol:.3g}"
                return {**res, "passed": False, "why": why}
            # training memory at the timed shape: what the forward keeps for the backward
            res["saved_bytes"] = gradcheck.saved_bytes(
                rec.fn, self.inputs, gradcheck.grad_names(self.case.op, self.inputs)
            )
        return {**res, "passed": True}
