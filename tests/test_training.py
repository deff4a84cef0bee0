"""Backward passes: every differentiable CPU implementation's gradients against float64 autograd.

docs/spec.md section 1 ("Backward") and section 5 (gradient bars). The truth is autograd through
the float64 references; small shapes in all three dtypes, T not a multiple of any chunk length,
strong and weak decays, with and without the gate (and the scan's optional inputs). A mutant whose
backward drops a term must fail the same check; an implementation without backward refuses
inputs that require grad instead of detaching them.
"""

import pytest
import torch

import wkvbench
from wkvbench import gradcheck, ops, registry, verify
from wkvbench.impls.bi_wkv7_torch import torch_loop as wkv_loop

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _check(op: str, impl: str, inputs: dict, dtype, seed: int = 0) -> gradcheck.GradAccuracy:
    rec = registry.get_impl(op, impl)
    assert rec.backward
    return gradcheck.check_grads(op, rec.fn, inputs, dtype, tf32=rec.tf32, seed=seed)


CASES = [(d, "realistic") for d in DTYPES] + [(torch.float32, "strong_decay"), (torch.float32, "weak_decay")]


@pytest.mark.parametrize("dtype,variant", CASES, ids=str)
@pytest.mark.parametrize("impl", ["torch_loop", "torch_chunked"])
def test_bi_wkv7_gradients_match_float64(impl, dtype, variant):
    # T = 37: not a multiple of torch_chunked's chunk (32 on CPU) nor of the reference's block (64)
    inputs = ops.make_case_inputs("bi_wkv7", {"B": 2, "T": 37, "H": 1, "N": 16}, dtype, "cpu", seed=3, variant=variant)
    acc = _check("bi_wkv7", impl, inputs, dtype)
    assert set(acc.errors) == {"dr", "dw", "dk", "dv", "da", "db", "dg"}
    assert acc.passed, acc.label()
    assert acc.worst_err <= gradcheck.grad_tolerance(dtype)


@pytest.mark.parametrize("impl", ["torch_loop", "torch_chunked"])
def test_bi_wkv7_gradients_without_gate_and_across_the_reference_blocks(impl):
    inputs = ops.make_case_inputs("bi_wkv7", {"B": 1, "T": 70, "H": 1, "N": 16}, torch.float32, "cpu", seed=5)
    inputs["g"] = None
    acc = _check("bi_wkv7", impl, inputs, torch.float32)
    assert set(acc.errors) == {"dr", "dw", "dk", "dv", "da", "db"}  # no dg without g
    assert acc.passed, acc.label()


def test_torch_chunked_gradients_with_a_short_chunk():
    fn = registry.get_impl("bi_wkv7", "torch_chunked").fn
    inputs = ops.make_case_inputs("bi_wkv7", {"B": 1, "T": 23, "H": 2, "N": 16}, torch.float32, "cpu", seed=2)
    acc = gradcheck.check_grads("bi_wkv7", lambda **x: fn(**x, chunk_len=5), inputs, torch.float32)
    assert acc.passed, acc.label()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("impl", ["torch_loop", "torch_chunked"])
@pytest.mark.parametrize("optional", [True, False], ids=["Dskip-z-bias", "plain"])
def test_scan_gradients_match_float64(impl, dtype, optional):
    inputs = ops.make_case_inputs("bi_selective_scan", {"B": 2, "D": 8, "T": 29, "N": 4}, dtype, "cpu", seed=1)
    if not optional:
        inputs.update(Dskip=None, z=None, delta_bias=None)
    acc = _check("bi_selective_scan", impl, inputs, dtype)
    want = {"du", "ddelta", "dA", "dA_b", "dBm", "dCm"} | ({"dDskip", "dz", "ddelta_bias"} if optional else set())
    assert set(acc.errors) == want
    assert acc.passed, acc.label()


@pytest.mark.parametrize(
    "impl,dtype",
    [("torch_eager", torch.float32), ("torch_eager", torch.float16)] + [("sdpa_math", d) for d in DTYPES],
    ids=str,
)
def test_attention_gradients_match_float64(impl, dtype):
    inputs = ops.make_case_inputs("attention", {"B": 1, "H": 2, "T": 19, "D": 32}, dtype, "cpu", seed=4)
    acc = _check("attention", impl, inputs, dtype)
    assert set(acc.errors) == {"dq", "dk", "dv"}
    assert acc.passed, acc.label()


def test_public_entry_points_carry_gradients():
    x = ops.make_case_inputs("bi_wkv7", {"B": 1, "T": 9, "H": 1, "N": 8}, torch.float32, "cpu")
    x = {k: v.clone().requires_grad_(True) for k, v in x.items()}
    y = wkvbench.bi_wkv7(**x, impl="torch_chunked")
    y.sum().backward()
    assert all(v.grad is not None and v.grad.shape == v.shape for v in x.values())
    # impl="auto" with inputs that require grad picks an implementation with backward
    assert wkvbench.bi_wkv7(**x).requires_grad


# ----------------------------------------------------------------------------- mutation
class _DropsDa(torch.autograd.Function):
    """The right forward; a backward that drops the in-context term's gradient (da = 0)."""

    @staticmethod
    def forward(ctx, r, w, k, v, a, b, g):
        ctx.save_for_backward(r, w, k, v, a, b, g)
        return wkv_loop(r, w, k, v, a, b, g)

    @staticmethod
    def backward(ctx, dy):
        xs = [x.detach().requires_grad_(True) for x in ctx.saved_tensors]
        with torch.enable_grad():
            y = wkv_loop(*xs)
            grads = list(torch.autograd.grad(y, xs, dy))
        grads[4] = torch.zeros_like(grads[4])  # the mutation
        return tuple(grads)


@pytest.fixture
def mutant():
    @wkvbench.register_impl("bi_wkv7", name="zz_drops_da", backend="test", devices=("cpu",), backward=True)
    def zz_drops_da(r, w, k, v, a, b, g=None):
        return _DropsDa.apply(r, w, k, v, a, b, g)

    yield "zz_drops_da"
    registry.unregister_impl("bi_wkv7", "zz_drops_da")


def test_a_backward_that_drops_a_term_fails(mutant):
    inputs = ops.make_case_inputs("bi_wkv7", {"B": 1, "T": 11, "H": 2, "N": 16}, torch.float32, "cpu", seed=1)
    acc = _check("bi_wkv7", mutant, inputs, torch.float32)
    assert not acc.passed and acc.worst == "da" and acc.worst_err == pytest.approx(1.0)
    assert acc.errors["dr"] < 1e-5  # the rest is right: only the dropped term is caught
    # and verify's gradient check reports it wrong, naming the gradient, while the forward passes
    rec, refs = registry.get_impl("bi_wkv7", mutant), verify._RefCache(torch.device("cpu"), seed=0)
    shape = verify.Shape({"B": 2, "T": 5, "H": 2, "N": 64}, tiny=True)
    assert verify.check_one("bi_wkv7", rec, shape, torch.float32, refs).status == "ok"
    row = verify.check_grad_one("bi_wkv7", rec, shape, torch.float32, refs)
    assert row.check == "grad" and row.status == "wrong" and row.grad_worst == "da" and "worst da" in row.note


# ----------------------------------------------------------------------------- no backward
@pytest.fixture
def forward_only():
    @wkvbench.register_impl("bi_wkv7", name="zz_fwd_only", backend="test", devices=("cpu",))
    def zz_fwd_only(r, w, k, v, a, b, g=None):
        with torch.no_grad():  # would silently detach if it were ever called with grads
            return wkv_loop(r, w, k, v, a, b, g)

    yield "zz_fwd_only"
    registry.unregister_impl("bi_wkv7", "zz_fwd_only")


def test_an_implementation_without_backward_raises_when_asked_for_gradients(forward_only):
    assert not registry.get_impl("bi_wkv7", forward_only).backward
    x = ops.make_case_inputs("bi_wkv7", {"B": 1, "T": 5, "H": 1, "N": 8}, torch.float32, "cpu")
    assert wkvbench.bi_wkv7(**x, impl=forward_only).shape == x["r"].shape  # inference is fine
    x["w"] = x["w"].clone().requires_grad_(True)
    with pytest.raises(ValueError, match="zz_fwd_only.*has no backward"):
        wkvbench.bi_wkv7(**x, impl=forward_only)
    with torch.no_grad():
        wkvbench.bi_wkv7(**x, impl=forward_only)  # no gradients asked for under no_grad


def test_gradient_bars_are_the_spec_s():
    assert gradcheck.GRAD_TOLERANCE[torch.float32] == 1e-4
    assert gradcheck.GRAD_TOLERANCE[torch.float16] == 5e-3
    assert gradcheck.GRAD_TOLERANCE[torch.bfloat16] == 1e-2
    assert gradcheck.grad_tolerance(torch.float32, tf32=True) == 1e-2


class _SavesExtra(torch.autograd.Function):
    """Saves its input (free: the caller holds it) and one float32 tensor of 3 x 5 elements (60 bytes)."""

    @staticmethod
    def forward(ctx, x):
        extra = torch.ones(3, 5, dtype=torch.float32)
        ctx.save_for_backward(x, extra, extra[1:])  # a view of a saved storage is not counted twice
        return x * 2

    @staticmethod
    def backward(ctx, dy):
        return dy * 2


def test_saved_bytes_counts_what_the_forward_keeps_beyond_the_inputs():
    x = {"x": torch.randn(4, 7, dtype=torch.float64)}
    assert gradcheck.saved_bytes(lambda x: _SavesExtra.apply(x), x, ["x"]) == 60
    # plain autograd: x * x saves x twice (free), exp saves its float64 output (4 * 7 * 8 bytes)
    assert gradcheck.saved_bytes(lambda x: (x * x).exp(), x, ["x"]) == 4 * 7 * 8
    assert gradcheck.saved_bytes(lambda x: x + 1, x, ["x"]) == 0
