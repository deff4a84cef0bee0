"""The network op's training step (docs/spec.md section 8): loss, backward, gradient check, optimizer."""

from __future__ import annotations

import math

import pytest
import torch

import wkvbench
import wkvbench.models as wm
from wkvbench import registry
from wkvbench.models import train
from wkvbench.models.network_op import NetworkCase, shape_for

SECONDS = 0.32


def _case(preset: str, dtype=torch.float32, optimizer: str = "none") -> NetworkCase:
    p = wm.get_preset(preset)
    return NetworkCase(p, shape_for(p, 1, p.tokens(SECONDS)), dtype, "cpu", optimizer=optimizer)


@pytest.mark.parametrize("preset, impl", [("A-RWKV-T", "torch_chunked"), ("AuM-T", "torch_chunked")])
def test_a_training_step_checks_the_parameter_gradients_against_float64(preset, impl):
    case = _case(preset)
    res = case.gate(impl, mode="fwd_bwd")
    assert res["passed"], res
    assert 0 < res["grad_rel_err"] <= res["grad_tol"] <= train.grad_ceiling(torch.float32, 24)
    assert res["saved_bytes"] > 0 and res["grad_worst"] == "params"
    fn, build = case.timed_call(case.bind(impl), "fwd_bwd")
    loss = fn()
    assert build is None and loss.dim() == 0 and math.isfinite(float(loss))
    assert float(train.flat_grads(case.net).norm()) > 0  # the step left its gradients


def test_a_mixer_with_a_wrong_backward_fails_the_gradient_check():
    """Right forward, gradient of v scaled by 3: the output passes, the parameter gradients do not."""

    class ScaledGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.view_as(x)

        @staticmethod
        def backward(ctx, g):
            return 3 * g

    def mixer(r, w, k, v, a, b, g=None):
        return wkvbench.bi_wkv7(r, w, k, ScaledGrad.apply(v), a, b, g, impl="torch_chunked", validate=False)

    wkvbench.register_impl("bi_wkv7", name="zz_bad_bwd", backend="torch", devices=("cpu",), backward=True)(mixer)
    try:
        res = _case("A-RWKV-T").gate("zz_bad_bwd", mode="fwd_bwd")
    finally:
        registry.unregister_impl("bi_wkv7", "zz_bad_bwd")
    assert not res["passed"] and "gradient rel_err" in res["why"], res
    assert res["rel_err"] <= res["tol"]  # the forward itself is right


def test_adamw_changes_the_weights_and_none_does_not():
    for name, moves in (("none", False), ("adamw", True)):
        case = _case("A-RWKV-T", optimizer=name)
        case.set_mode("fwd_bwd")
        before = case.net.head.weight.detach().clone()
        case.bind("torch_chunked")(**case.inputs)
        assert (not torch.equal(before, case.net.head.weight)) is moves, name
    with pytest.raises(ValueError, match="optimizer"):
        _case("A-RWKV-T", optimizer="sgd")


def test_targets_are_seeded_multilabel():
    t = train.targets(2, "cpu", seed=3)
    assert t.shape == (2, 527) and set(t.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(t, train.targets(2, "cpu", seed=3)) and not torch.equal(t, train.targets(2, "cpu", seed=4))


def test_the_adamw_state_is_counted_once_in_the_resident_bytes():
    """The worker's CUDA peak = allocator peak over the samples - allocation when they start + input +
    resident_bytes: AdamW's exp_avg/exp_avg_sq made before the samples must be in resident_bytes, state
    a first timed step makes must not (it is inside the window)."""
    case = _case("A-RWKV-T", optimizer="adamw")
    weights = sum(t.numel() * t.element_size() for t in (*case.net.parameters(), *case.net.buffers()))
    params = sum(p.numel() * p.element_size() for p in case.net.parameters())
    fn, _ = case.timed_call(case.bind("torch_chunked"), "fwd_bwd")
    assert case.optimizer_state_bytes() == 0 and case.resident_bytes == weights  # no state yet: made in the window
    fn()
    fn()  # the check's warm-up: at least two steps
    state = case._optimizer.state
    used = [p for p in case.net.parameters() if p.grad is not None]
    assert len(state) == len(used) and all({"exp_avg", "exp_avg_sq"} <= set(state[p]) for p in used)
    moments = sum(2 * p.numel() * p.element_size() for p in used)
    assert params * 1.9 < moments <= case.optimizer_state_bytes()  # two moments per parameter (+ step counters here)
    case.timed_call(case.bind("torch_chunked"), "fwd_bwd")
    assert case.resident_bytes == weights + case.optimizer_state_bytes()
    case.timed_call(case.bind("torch_chunked"), "fwd")  # inference: a leftover state is not part of its peak
    assert case.resident_bytes == weights
    plain = _case("A-RWKV-T")
    plain.timed_call(plain.bind("torch_chunked"), "fwd_bwd")[0]()
    plain.timed_call(plain.bind("torch_chunked"), "fwd_bwd")
    assert plain.optimizer_state_bytes() == 0 and plain.resident_bytes == weights
