"""Attention implementations against the float64 reference, and their registry records."""

import importlib.util
import sys
import types

import pytest
import torch

import wkvbench
from wkvbench.accuracy import compare, run_checked
from wkvbench.impls import attention_flash_attn, attention_torch
from wkvbench.inputs import attention_inputs
from wkvbench.opspec import get_op
from wkvbench.registry import get_impl, select_impl

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
HALF = (torch.float16, torch.bfloat16)
CPU = torch.device("cpu")


def test_records_priorities_and_flags():
    want = {
        "sdpa_flash": 30,
        "sdpa_cudnn": 28,
        "sdpa_efficient": 25,
        "flash_attn": 32,
        "sdpa_math": 5,
        "torch_eager": 0,
    }
    for name, prio in want.items():
        rec = get_impl("attention", name)
        assert rec.priority == prio, name
        assert (rec.name == get_op("attention").naive_impl) == (name == "torch_eager"), name
        assert rec.peer == (name == "flash_attn"), name
    # FlashAttention and cuDNN have no float32 path: declared honestly
    for name in ("sdpa_flash", "sdpa_cudnn", "flash_attn"):
        assert set(get_impl("attention", name).dtypes) == set(HALF)
        assert get_impl("attention", name).devices == ("cuda",)
    assert torch.float32 in get_impl("attention", "sdpa_efficient").dtypes
    assert set(get_impl("attention", "sdpa_math").devices) == {"cpu", "cuda"}


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_auto_is_sdpa_math(dtype):
    assert select_impl("attention", CPU, dtype).name == "sdpa_math"


@pytest.mark.parametrize("name", ["sdpa_flash", "sdpa_efficient", "sdpa_cudnn", "flash_attn"])
def test_gpu_backends_say_why_not_on_cpu(name):
    ok, why = get_impl("attention", name).available(CPU)
    assert not ok and "cuda" in why


@pytest.mark.parametrize(
    "impl, dtype",
    [("torch_eager", torch.float32), ("torch_eager", torch.float16), ("torch_eager", torch.float64)]
    + [("sdpa_math", dt) for dt in (*DTYPES, torch.float64)],
)
@pytest.mark.parametrize("shape", [(1, 1, 1, 64), (2, 3, 17, 64), (1, 2, 40, 32)])
def test_cpu_impls_match_reference(impl, dtype, shape):
    x = attention_inputs(*shape, dtype=dtype, seed=sum(shape))
    ref = wkvbench.reference.attention(**x)
    y = wkvbench.attention(**x, impl=impl)
    assert y.dtype == dtype and y.shape == x["q"].shape
    acc = compare(y, ref, dtype)
    assert acc.passed, acc


def test_eager_out_is_fully_written():
    x = attention_inputs(2, 2, 9, 64, seed=3)
    y = run_checked(attention_torch.torch_eager, x, tuple(x["q"].shape), torch.float32, accepts_out=True)
    assert compare(y, wkvbench.reference.attention(**x), torch.float32).passed


def test_eager_not_offered_for_bfloat16():
    """AST's eager form in bfloat16 is over the bar by construction (bf16 logits): not registered."""
    ok, why = get_impl("attention", "torch_eager").supports(torch.bfloat16)
    assert not ok and "bfloat16" in why


def test_probe_reports_missing_backend_reason():
    ok, why = attention_torch._probe("NO_SUCH_BACKEND", CPU, torch.float32)
    assert not ok and "NO_SUCH_BACKEND" in why


# ----------------------------------------------------------------------------- flash_attn adapter
def test_flash_attn_adapter_layout(monkeypatch):
    """The adapter hands flash-attn [B, T, H, D] views and maps its output back to [B, H, T, D]."""
    seen = {}

    def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False):
        assert dropout_p == 0.0 and not causal and softmax_scale is None
        assert q.stride(-1) == 1  # what flash-attn needs; no copy was made
        seen["shape"] = tuple(q.shape)
        o = wkvbench.reference.attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return o.transpose(1, 2).contiguous().to(q.dtype)

    monkeypatch.setitem(sys.modules, "flash_attn", types.SimpleNamespace(flash_attn_func=flash_attn_func))
    x = attention_inputs(2, 3, 11, 64, seed=1)
    y = attention_flash_attn.flash_attn(**x)
    assert seen["shape"] == (2, 11, 3, 64)
    assert compare(y, wkvbench.reference.attention(**x), torch.float32).rel_err < 1e-6


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash-attn is installed")
def test_flash_attn_unavailable_reason():
    ok, why = attention_flash_attn._check(torch.device("cuda"))
    assert not ok and "not installed" in why


# ----------------------------------------------------------------------------- on a GPU
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_impls_match_reference(cuda_impls_match, dtype):
    x = attention_inputs(2, 3, 200, 64, dtype=dtype, device="cuda", seed=2)
    assert cuda_impls_match("attention", x, wkvbench.reference.attention(**x), dtype) >= 2
