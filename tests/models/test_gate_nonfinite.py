"""The network gate never passes a non-finite output (docs/spec.md section 8): NaN/inf mixers in every
dtype, a non-finite baseline network (comparison void), and the absolute ceiling beside the 2x rule."""

from __future__ import annotations

import math

import pytest
import torch

import wkvbench
import wkvbench.models as wm
from wkvbench import registry

SECONDS = 0.32  # 32 frames: 16 A-RWKV tokens, 26 AST tokens, 17 AuM tokens
GOOD = {"bi_wkv7": "torch_chunked", "attention": "sdpa_math", "bi_selective_scan": "torch_chunked"}


def _poisoned(op: str, value: float):
    """A mixer of ``op``: the good CPU mixer's output with one element set to ``value`` (NaN or inf)."""

    def fn(**tensors):
        y = wkvbench.ops.call(op, impl=GOOD[op], validate=False, **tensors).clone()
        y.view(-1)[0] = value
        return y

    return fn


def _register(op: str, name: str, fn, replace: bool = False) -> None:
    arg_names = wkvbench.opspec.OPS[op].args

    def plugin(*args, **kwargs):
        return fn(**dict(zip(arg_names, args, strict=False)), **kwargs)

    wkvbench.register_impl(op, name=name, backend="torch", devices=("cpu",), replace=replace)(plugin)


@pytest.fixture
def poisoned_mixers():
    names = []
    for op in GOOD:
        for tag, value in (("nan", math.nan), ("inf", math.inf)):
            _register(op, f"zz_{tag}_mixer", _poisoned(op, value))
            names.append((op, f"zz_{tag}_mixer"))
    yield ["zz_nan_mixer", "zz_inf_mixer"]
    for op, name in names:
        registry.unregister_impl(op, name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("preset", ["A-RWKV-T", "AST-B", "AuM-T"])
def test_nan_and_inf_mixers_are_wrong_in_every_dtype(preset, dtype, poisoned_mixers):
    op = wm.op_for(preset)
    bad_nan, bad_inf, good = wm.check_many(preset, SECONDS, [*poisoned_mixers, GOOD[op]], dtype=dtype)
    for bad in (bad_nan, bad_inf):
        assert not bad.passed, bad
        assert bad.why.startswith("non-finite output"), bad.why
        assert bad.rel_err == math.inf
    assert good.passed, good
    assert good.bar == min(2 * good.baseline_err, wm.gate.ceiling(dtype, wm.get_preset(preset).depth))


def test_a_nan_baseline_voids_the_comparison_instead_of_passing_everything(poisoned_mixers):
    """AST-B in bfloat16 is judged against sdpa_math; a plugin that replaces it by a NaN-producing one
    leaves no bar: a NaN mixer and a good one both fail, with the reason."""
    op, dtype = "attention", torch.bfloat16
    assert wm.baseline_for(op, dtype) == "sdpa_math"
    original = registry.get_impl(op, "sdpa_math")
    _register(op, "zz_copy_of_sdpa_math", original.fn)  # a good mixer that is not the baseline
    _register(op, "sdpa_math", _poisoned_by(original.fn), replace=True)
    try:
        nan_mixer, good = wm.check_many("AST-B", SECONDS, ["zz_nan_mixer", "zz_copy_of_sdpa_math"], dtype=dtype)
    finally:
        registry._REGISTRY[(op, "sdpa_math")] = original  # put the built-in record back
        registry.unregister_impl(op, "zz_copy_of_sdpa_math")
    assert registry.get_impl(op, "sdpa_math") is original
    assert good.baseline_err == math.inf and math.isnan(good.bar)
    for r in (nan_mixer, good):
        assert not r.passed, r
    assert nan_mixer.why.startswith("non-finite output")
    assert "comparison void" in good.why and "sdpa_math" in good.why


def _poisoned_by(fn):
    def nan_attention(q, k, v):
        return fn(q, k, v) * math.nan

    return nan_attention


def test_ceiling_caps_the_2x_rule():
    assert wm.gate.ceiling(torch.float32) == 1e-4
    assert wm.gate.ceiling(torch.bfloat16, 12) == pytest.approx(4e-3 * 12)
    assert wm.gate.ceiling(torch.float16, 24) == pytest.approx(1e-3 * 24)
    assert wm.bar_for(torch.bfloat16, 1e-3) == 2e-3  # the 2x rule below the ceiling
    assert wm.bar_for(torch.bfloat16, 0.5, 12) == pytest.approx(0.048)  # a poor baseline does not lift the bar
    assert wm.bar_for(torch.float16, 0.1, 24) == pytest.approx(0.024)
    assert math.isnan(wm.bar_for(torch.bfloat16, math.inf))
    assert not 0.0 <= wm.bar_for(torch.float16, math.nan)


def test_the_network_case_reports_a_nan_mixer_wrong_with_its_reason(poisoned_mixers):
    from wkvbench.models.network_op import NetworkCase, shape_for

    preset = wm.get_preset("A-RWKV-T")
    case = NetworkCase(preset, shape_for(preset, 1, preset.tokens(SECONDS)), torch.bfloat16, "cpu")
    res = case.gate("zz_nan_mixer")
    assert res["passed"] is False and "non-finite output" in res["why"]
    assert res["rel_err"] is None and res["tol"] is not None
