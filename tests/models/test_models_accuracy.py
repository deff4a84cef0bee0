"""The network accuracy gate (docs/spec.md section 8) on CPU, and gradients through a whole network."""

from __future__ import annotations

import pytest
import torch

import wkvbench
import wkvbench.models as wm
from wkvbench import registry

SECONDS = 2.56  # 256 frames: 128 A-RWKV tokens, 302 AST tokens, 129 AuM tokens


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def cpu_torch_impls(op: str) -> list[str]:
    """Every PyTorch implementation of ``op`` that runs float32 on this CPU (Triton/Numba on CPU are
    interpreters/simulators: far too slow for a whole network, and checked op by op elsewhere)."""
    names = []
    for rec in wkvbench.list_impls(op):
        if rec.backend == "torch" and rec.available("cpu")[0] and rec.supports(torch.float32, 64)[0]:
            names.append(rec.name)
    return names


@pytest.mark.parametrize("preset", ["A-RWKV-T", "AST-B", "AuM-T"])
def test_every_cpu_mixer_passes_the_network_gate_fp32(preset):
    op = wm.op_for(preset)
    impls = cpu_torch_impls(op)
    expected = {"bi_wkv7": {"torch_loop", "torch_chunked"}, "attention": {"torch_eager", "sdpa_math"}}
    assert expected.get(op, {"torch_loop", "torch_chunked"}) <= set(impls)
    results = wm.check_many(preset, SECONDS, impls, dtype=torch.float32)
    for r in results:
        assert r.op == op and r.baseline == wm.baseline_for(op, torch.float32)
        assert 0 < r.baseline_err < 1e-4 and r.bar == min(2 * r.baseline_err, 1e-4)
        assert r.passed, r
        assert 0 < r.rel_err <= r.bar and r.max_abs_err > 0
    base = next(r for r in results if r.impl == results[0].baseline)
    assert base.rel_err == base.baseline_err


def _drop_ab(r, w, k, v, a, b, g=None):
    """Bi-WKV7 without the in-context (delta-rule) term: a = b = 0."""
    return wkvbench.bi_wkv7(r, w, k, v, torch.zeros_like(a), torch.zeros_like(b), g, impl="torch_chunked")


def _half_scale(q, k, v):
    """Attention with the score scale halved."""
    return wkvbench.attention(q * 0.5, k, v, impl="sdpa_math")


def _drop_skip(u, delta, A, A_b, Bm, Cm, Dskip=None, z=None, delta_bias=None, delta_softplus=True):
    """The scan without its D skip term."""
    return wkvbench.bi_selective_scan(
        u, delta, A, A_b, Bm, Cm, None, z, delta_bias, delta_softplus, impl="torch_chunked"
    )


@pytest.mark.parametrize(
    "preset, seconds, op, wrong, right",
    [
        ("A-RWKV-T", 0.64, "bi_wkv7", _drop_ab, "torch_chunked"),
        ("AST-B", 0.32, "attention", _half_scale, "sdpa_math"),
        ("AuM-T", 0.32, "bi_selective_scan", _drop_skip, "torch_chunked"),
    ],
)
def test_gate_fails_a_plugin_mixer_that_gets_a_term_wrong(preset, seconds, op, wrong, right):
    name = "zz_models_wrong"
    wkvbench.register_impl(op, name=name, backend="torch", devices=("cpu",))(wrong)
    try:
        bad, ok = wm.check_many(preset, seconds, [name, right])
    finally:
        registry.unregister_impl(op, name)
    assert not bad.passed and bad.rel_err > 100 * bad.bar, bad
    assert ok.passed and ok.baseline_err == bad.baseline_err


def test_bar_rule():
    assert wm.bar_for(torch.float32, 1e-6) == 2e-6
    assert wm.bar_for(torch.float32, 1e-3) == 1e-4  # float32 is also held to 1e-4
    assert wm.bar_for(torch.bfloat16, 1e-3) == 2e-3
    assert wm.baseline_for("attention", torch.bfloat16) == "sdpa_math"
    assert wm.baseline_for("attention", torch.float16) == "torch_eager"
    assert wm.baseline_for("bi_selective_scan", torch.bfloat16) == "torch_loop"


def test_reference_mixer_and_torch_loop_agree_in_float64():
    """Independent of the gate: the same float64 network with the reference mixer and with torch_loop."""
    net = wm.build("A-RWKV-T", 0.64, impl="reference", dtype=torch.float64)
    mel = wm.spectrogram(1, 0.64, dtype=torch.float64)
    with torch.no_grad():
        ref = net(mel)
        loop = net.set_impl("torch_loop")(mel)
    assert ref.dtype == torch.float64
    assert float((loop - ref).norm() / ref.norm()) < 1e-12


def _assert_finite_gradients(impl: str) -> None:
    net = wm.build("A-RWKV-T", 0.64, impl=impl).train()
    loss = net(wm.spectrogram(2, 0.64)).square().mean()
    loss.backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    unused = {f"blocks.0.att.{n}" for n in ("v0", "v1", "v2")}  # layer 0 makes v_first: no value residual
    bad = [n for n, g in grads.items() if (g is None) != (n in unused)]
    bad += [n for n, g in grads.items() if g is not None and not torch.isfinite(g).all()]
    assert not bad, bad
    # the mixer's inputs are trained, and layer 0's value feeds every later layer
    for name in ("blocks.3.att.w1", "blocks.3.att.a2", "blocks.3.att.gate.weight", "blocks.0.att.value.weight"):
        assert grads[name].abs().sum() > 0, name


def test_gradients_flow_through_a_rwkv_with_torch_loop():
    _assert_finite_gradients("torch_loop")


def test_gradients_flow_through_a_rwkv_with_torch_chunked():
    _assert_finite_gradients("torch_chunked")


def test_gate_turns_tf32_off_on_cuda_and_restores_it():
    """cuDNN allows TF32 by default: the float32 network's own convolutions must not use it."""
    from wkvbench.models.gate import exact_float32

    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        with exact_float32(torch.device("cpu")):
            assert torch.backends.cudnn.allow_tf32
        with exact_float32(torch.device("cuda")):
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
