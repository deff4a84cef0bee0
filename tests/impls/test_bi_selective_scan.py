"""Bidirectional selective-scan implementations against the float64 reference.

The Triton kernel runs under the interpreter here (conftest sets TRITON_INTERPRET=1 without a
GPU) on tiny shapes; a subprocess compiles it for sm_90 without the interpreter and checks that
it does not spill.
"""

import importlib.util
import os
import sys
import types

import pytest
import torch

import wkvbench
from wkvbench import kernels
from wkvbench.accuracy import compare, run_checked
from wkvbench.impls import bi_selective_scan_mamba as selective_scan_mamba
from wkvbench.impls import bi_selective_scan_torch as selective_scan_torch
from wkvbench.impls import bi_selective_scan_triton as selective_scan_triton
from wkvbench.impls.bi_selective_scan_torch import torch_chunked, torch_loop
from wkvbench.impls.bi_selective_scan_triton import bi_selective_scan_triton
from wkvbench.inputs import bi_selective_scan_inputs
from wkvbench.opspec import get_op
from wkvbench.reference import bi_selective_scan as ref_bi
from wkvbench.reference import selective_scan as ref_scan
from wkvbench.registry import get_impl, select_impl

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
OPTIONS = [
    {},
    {"z": None},
    {"Dskip": None, "delta_bias": None},
    {"z": None, "Dskip": None, "delta_softplus": False},
]


def inputs(B, D, T, N=16, dtype=torch.float32, seed=0, device="cpu", **over):
    x = bi_selective_scan_inputs(B, D, T, N, dtype=dtype, seed=seed, device=device)
    x["delta_softplus"] = True
    x.update(over)
    if not x["delta_softplus"]:  # without softplus, keep dt = delta + bias a small positive step
        x["delta"] = (x["delta"].float().abs() * 0.05).to(dtype)
        if x.get("delta_bias") is not None:
            x["delta_bias"] = torch.full_like(x["delta_bias"], 0.01)
    return x


def check(y, x, dtype, max_rel=None):
    acc = compare(y, ref_bi(**x), dtype)
    assert y.dtype == dtype and y.shape == x["u"].shape
    assert acc.passed, acc
    if max_rel is not None:
        assert acc.rel_err <= max_rel, acc


def test_records():
    want = {"triton": 30, "mamba_ssm": 32, "torch_chunked": 10, "torch_loop": 0}
    for name, prio in want.items():
        rec = get_impl("bi_selective_scan", name)
        naive = get_op("bi_selective_scan").naive_impl == name
        assert rec.priority == prio and naive == (name == "torch_loop") and rec.peer == (name == "mamba_ssm")
    ok, why = get_impl("bi_selective_scan", "mamba_ssm").available("cpu")
    assert not ok and "cuda" in why


def test_cpu_auto_without_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    ok, why = get_impl("bi_selective_scan", "triton").available("cpu")
    assert not ok and "TRITON_INTERPRET" in why
    assert select_impl("bi_selective_scan", torch.device("cpu"), torch.float32).name == "torch_chunked"


# ----------------------------------------------------------------------------- torch_loop, torch_chunked
@pytest.mark.parametrize("impl", ["torch_loop", "torch_chunked"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 8, 1), (2, 16, 13), (1, 24, 130)])
def test_torch_matches_reference(impl, dtype, shape):
    x = inputs(*shape, dtype=dtype, seed=sum(shape))
    check(wkvbench.bi_selective_scan(**x, impl=impl), x, dtype, max_rel=1e-6 if dtype == torch.float32 else None)


def test_loop_across_its_token_blocks():
    x = inputs(1, 4, 300, seed=30)  # torch_loop precomputes decays 256 tokens at a time
    check(torch_loop(**x), x, torch.float32, max_rel=1e-6)


@pytest.mark.parametrize("fn", [torch_loop, torch_chunked])
@pytest.mark.parametrize("opts", OPTIONS)
def test_torch_optional_arguments(fn, opts):
    x = inputs(2, 8, 21, dtype=torch.float32, seed=4, **opts)
    check(fn(**x), x, torch.float32, max_rel=1e-6)


def test_torch_float64_is_exact():
    x = inputs(1, 8, 40, dtype=torch.float64, seed=2)
    ref = ref_bi(**x)
    for fn in (torch_loop, torch_chunked):
        assert compare(fn(**x), ref, torch.float64).rel_err < 1e-13


@pytest.mark.parametrize("chunk_len", [1, 5, 16, 64, 300])
def test_chunked_any_chunk_length(chunk_len):
    x = inputs(1, 8, 77, seed=chunk_len)
    check(torch_chunked(**x, chunk_len=chunk_len), x, torch.float32, max_rel=1e-6)


def test_chunked_memory_budget_groups_chunks():
    x = inputs(2, 8, 90, seed=6)
    cdt = torch.float32
    dt, du, A2, Bt, Ct = selective_scan_torch._stacked(
        x["u"], x["delta"], x["A"], x["A_b"], x["Bm"], x["Cm"], x["delta_bias"], True, cdt
    )
    S, D, T = 4, 8, 90
    args = (dt.reshape(S, D, T), du.reshape(S, D, T), A2.expand(2, 2, D, -1).reshape(S, D, -1))
    args += (Bt.reshape(S, T, -1), Ct.reshape(S, T, -1))
    whole = selective_scan_torch.selective_scan_chunked(*args, chunk_len=8)
    grouped = selective_scan_torch.selective_scan_chunked(*args, chunk_len=8, budget=1)  # one chunk at a time
    loop = selective_scan_torch.selective_scan_loop(*args)
    assert torch.equal(whole, grouped)
    assert torch.allclose(whole, loop, rtol=1e-5, atol=1e-6)


def test_chunked_is_log_space_safe_under_strong_decay():
    """dt ~ 3 and A down to -17: a chunk's cumulative decay is exp(-3000) -- underflows, never overflows.

    A chunked scan that divides by cumulative decays (exp(+sum dt |A|)) would produce Inf/NaN here.
    """
    x = inputs(1, 8, 600, seed=9)
    x["delta_bias"] = torch.full_like(x["delta_bias"], 3.0)
    y = torch_chunked(**x, chunk_len=128)
    assert torch.isfinite(y).all()
    check(y, x, torch.float32, max_rel=1e-6)


def test_chunked_rejects_bad_chunk_len():
    x = inputs(1, 4, 5)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="^chunk_len"):
            torch_chunked(**x, chunk_len=bad)


@pytest.mark.parametrize("fn", [torch_loop, torch_chunked])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_torch_out_is_fully_written(fn, dtype):
    x = inputs(2, 8, 19, dtype=dtype, seed=1)
    check(run_checked(fn, x, tuple(x["u"].shape), dtype, accepts_out=True), x, dtype)


# ----------------------------------------------------------------------------- triton (interpreter)
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
# the interpreter runs on CPU tensors; with a GPU and no interpreter the kernel runs on CUDA
TDEV = "cuda" if torch.cuda.is_available() and not INTERPRETING else "cpu"
interp = pytest.mark.skipif(TDEV == "cpu" and not INTERPRETING, reason="needs CUDA or the interpreter")


@interp
def test_triton_default_config_d32():
    x = inputs(1, 32, 13, seed=13, device=TDEV)
    check(wkvbench.bi_selective_scan(**x, impl="triton"), x, torch.float32, max_rel=1e-6)


@interp
@pytest.mark.parametrize("dtype", DTYPES)
def test_triton_multi_tile_masked_channels(dtype):
    """T = 20 over tiles of 8 (a partial tile in both directions), D = 5 over blocks of 4."""
    x = inputs(2, 5, 20, dtype=dtype, seed=20, device=TDEV)
    check(bi_selective_scan_triton(**x, block_t=8), x, dtype, max_rel=1e-6 if dtype == torch.float32 else None)


@interp
@pytest.mark.parametrize("opts", OPTIONS[1:])
def test_triton_optional_arguments_and_odd_state_size(opts):
    x = inputs(1, 3, 11, N=5, seed=3, device=TDEV, **opts)  # N = 5 is padded to 8 inside
    check(bi_selective_scan_triton(**x, block_t=8), x, torch.float32, max_rel=1e-6)


@interp
def test_triton_out_is_fully_written_half():
    x = inputs(1, 4, 7, dtype=torch.float16, seed=7, device=TDEV)
    y = run_checked(lambda **a: bi_selective_scan_triton(**a, block_t=8), x, tuple(x["u"].shape), torch.float16, True)
    check(y, x, torch.float16)


def test_triton_rejects_bad_block():
    x = inputs(1, 4, 5)
    with pytest.raises(ValueError, match="^block_t"):
        bi_selective_scan_triton(**x, block_t=12)


@pytest.mark.skipif(selective_scan_triton.triton is None, reason="triton not installed")
def test_triton_compiles_for_sm90_without_spills():
    rows = kernels.report_module("wkvbench.impls.bi_selective_scan_triton", cc=90)
    assert rows and len(rows) == 3, rows
    for r in rows:
        assert "error" not in r, r
        assert r["local_bytes"] == 0, r
        assert 0 < r["registers"] <= 255, r
        assert r["impl"] == "triton" and r["compiler"].startswith("triton")


# ----------------------------------------------------------------------------- mamba_ssm adapter
def _fake_selective_scan_fn(calls):
    """mamba_ssm's selective_scan_fn semantics (the float64 reference), with its dtype rules."""

    def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        for name, t in (("A", A), ("D", D), ("delta_bias", delta_bias)):
            assert t is None or t.dtype == torch.float32, name
        calls.append(tuple(B.shape))
        return ref_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus).to(u.dtype)

    return selective_scan_fn


@pytest.mark.parametrize("opts", OPTIONS)
def test_mamba_adapter_fo_bi(opts):
    calls = []
    x = inputs(2, 8, 17, seed=5, **opts)
    y = selective_scan_mamba.bi_selective_scan_with(
        _fake_selective_scan_fn(calls),
        **{k: x.get(k) for k in ("u", "delta", "A", "A_b", "Bm", "Cm")},
        Dskip=x.get("Dskip"),
        z=x.get("z"),
        delta_bias=x.get("delta_bias"),
        delta_softplus=x["delta_softplus"],
    )
    assert len(calls) == 2
    check(y, x, torch.float32, max_rel=1e-6)


def test_mamba_adapter_through_registry_function(monkeypatch):
    calls = []
    mod = types.ModuleType("mamba_ssm.ops.selective_scan_interface")
    mod.selective_scan_fn = _fake_selective_scan_fn(calls)
    for name in ("mamba_ssm", "mamba_ssm.ops"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "mamba_ssm.ops.selective_scan_interface", mod)
    x = inputs(1, 8, 9, dtype=torch.bfloat16, seed=8)
    x["Dskip"] = x["Dskip"].to(torch.bfloat16)  # cast back to float32 by the adapter, as mamba_ssm requires
    y = run_checked(selective_scan_mamba.mamba_ssm, x, tuple(x["u"].shape), torch.bfloat16, accepts_out=True)
    check(y, x, torch.bfloat16)


@pytest.mark.skipif(importlib.util.find_spec("mamba_ssm") is not None, reason="installed")
def test_mamba_unavailable_reason():
    ok, why = selective_scan_mamba._check(torch.device("cuda"))
    assert not ok and "not installed" in why


# ----------------------------------------------------------------------------- on a GPU
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_impls_match_reference(cuda_impls_match, dtype):
    x = bi_selective_scan_inputs(2, 96, 300, 16, dtype=dtype, device="cuda", seed=1)
    assert cuda_impls_match("bi_selective_scan", x, ref_bi(**x), dtype) >= 1
