"""torch_loop and torch_chunked against the float64 reference (docs/spec.md section 5 bars)."""

import pytest
import torch

import wkvbench
from wkvbench.accuracy import compare, run_checked
from wkvbench.impls.bi_wkv7_torch import torch_chunked, torch_loop, wkv7_chunked
from wkvbench.inputs import bi_wkv7_inputs

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.mark.parametrize("impl", ["torch_loop", "torch_chunked"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 17, 3), (1, 65, 2)])
def test_matches_reference(impl, dtype, shape):
    B, T, H = shape
    x = bi_wkv7_inputs(B, T, H, 64, dtype=dtype, seed=T)
    ref = wkvbench.reference.bi_wkv7(**x)
    y = wkvbench.bi_wkv7(**x, impl=impl)
    assert y.dtype == dtype and y.shape == x["r"].shape
    acc = compare(y, ref, dtype)
    assert acc.passed, acc


@pytest.mark.parametrize("variant", ["strong_decay", "weak_decay", "mixed"])
@pytest.mark.parametrize("chunk_len", [16, 32, 64, 128])
def test_chunked_stress_variants_and_chunk_lengths(variant, chunk_len):
    x = bi_wkv7_inputs(1, 300, 2, 64, seed=7, variant=variant)
    ref = wkvbench.reference.bi_wkv7(**x)
    acc = compare(torch_chunked(**x, chunk_len=chunk_len), ref, torch.float32)
    assert acc.passed and acc.rel_err < 2e-6, acc


@pytest.mark.parametrize("fn", [torch_loop, torch_chunked])
def test_out_is_fully_written_and_gate_default(fn):
    x = bi_wkv7_inputs(2, 19, 2, 64, seed=1, gate=False)
    ref = wkvbench.reference.bi_wkv7(**x)
    y = run_checked(fn, x, tuple(x["r"].shape), torch.float32, accepts_out=True)
    assert compare(y, ref, torch.float32).passed


def test_float64_path_is_exact():
    x = bi_wkv7_inputs(1, 50, 2, 64, dtype=torch.float64, seed=4)
    ref = wkvbench.reference.bi_wkv7(**x)
    for fn in (torch_loop, torch_chunked):
        assert compare(fn(**x), ref, torch.float64).rel_err < 1e-12


def test_chunk_len_is_validated():
    x = bi_wkv7_inputs(1, 4, 1, 64)
    args = [x[n] for n in "rwkvab"]
    for bad in (0, 129, 2.5):
        with pytest.raises(ValueError, match="chunk_len"):
            wkv7_chunked(*args, chunk_len=bad)


def test_no_overflow_at_strong_edge_long_chunk():
    """Every decay at w = -0.5 exactly (the domain's edge) with the longest chunk stays finite."""
    x = bi_wkv7_inputs(1, 256, 1, 64, seed=2)
    x["w"] = torch.full_like(x["w"], -0.5)
    ref = wkvbench.reference.bi_wkv7(**x)
    acc = compare(torch_chunked(**x, chunk_len=128), ref, torch.float32)
    assert acc.finite and acc.passed, acc
