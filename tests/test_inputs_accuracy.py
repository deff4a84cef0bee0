"""The realistic-input generator stays in the RWKV-7 domain; the accuracy bar behaves."""

import math

import pytest
import torch

from wkvbench import accuracy
from wkvbench.inputs import WKV7_VARIANTS, bi_wkv7_inputs


@pytest.mark.parametrize("variant", WKV7_VARIANTS)
def test_wkv7_inputs_in_domain(variant):
    x = bi_wkv7_inputs(2, 50, 3, 64, seed=1, variant=variant)
    assert (x["w"] < -0.5).all()
    d = torch.exp(-torch.exp(x["w"]))
    assert ((d > 0.545) & (d < 1)).all()
    kappa = -x["a"]
    torch.testing.assert_close(kappa.norm(dim=-1), torch.ones(2, 50, 3))
    alpha = x["b"] / kappa
    assert ((alpha > 0) & (alpha < 1)).all()
    assert ((x["g"] > 0) & (x["g"] < 1)).all() and x["g"].shape == (2, 50, 3)
    if variant == "strong_decay":
        assert (d < 0.56).all()
    if variant == "weak_decay":
        assert (d > 0.999).all()


def test_inputs_seeded_and_device_independent():
    a = bi_wkv7_inputs(1, 5, 1, 64, seed=3)
    b = bi_wkv7_inputs(1, 5, 1, 64, seed=3)
    c = bi_wkv7_inputs(1, 5, 1, 64, seed=4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["r"], c["r"])
    h = bi_wkv7_inputs(1, 5, 1, 64, seed=3, dtype=torch.bfloat16)
    torch.testing.assert_close(h["r"].float(), a["r"], rtol=1e-2, atol=1e-2)


def test_inputs_bad_arguments():
    with pytest.raises(ValueError, match="variant"):
        bi_wkv7_inputs(1, 5, 1, 64, variant="nope")
    with pytest.raises(ValueError, match="T"):
        bi_wkv7_inputs(1, 0, 1, 64)


def test_tolerances_match_contract():
    assert accuracy.tolerance(torch.float32) == 2e-5
    assert accuracy.tolerance(torch.float16) == 1e-3
    assert accuracy.tolerance(torch.bfloat16) == 4e-3
    assert accuracy.tolerance(torch.float32, tf32=True) == 4e-3


def test_compare_catches_nan_and_error():
    ref = torch.randn(10, dtype=torch.float64)
    assert accuracy.compare(ref.float(), ref, torch.float32).passed
    y = ref.float().clone()
    y[3] = float("nan")
    acc = accuracy.compare(y, ref, torch.float32)
    assert not acc.passed and not acc.finite and math.isinf(acc.rel_err)
    acc = accuracy.compare(ref.float() * 1.001, ref, torch.float32)
    assert not acc.passed and acc.rel_err == pytest.approx(1e-3, rel=1e-3)
    with pytest.raises(ValueError, match="shape"):
        accuracy.compare(ref[:5].float(), ref, torch.float32)


def test_run_checked_poisons_out():
    def lazy(x, out=None):
        out[:5] = x[:5]  # forgets the rest
        return out

    x = torch.randn(10)
    y = accuracy.run_checked(lazy, {"x": x}, (10,), torch.float32, accepts_out=True)
    assert torch.isnan(y[5:]).all()
    assert not accuracy.compare(y, x.double(), torch.float32).passed
