"""Triton Bi-WKV7 kernels against the float64 reference (CPU: the Triton interpreter).

tests/conftest.py sets TRITON_INTERPRET=1 when there is no GPU, so the kernels run on CPU
tensors here. Shapes are tiny (the interpreter costs milliseconds per launch and per op):
N = 64 (the only head size), B * H = 2, T in {1, 5, 17, 20} -- covering T = 1, T below one
chunk, a ragged last chunk and an odd/even number of recurrent steps. Every output goes through
``accuracy.run_checked`` (NaN-poisoned ``out=``) and ``accuracy.compare`` (the contract's bar).
The last test compiles every kernel variant for sm_90 in a clean subprocess and checks there
are no register spills.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from wkvbench import inputs, kernels, reference
from wkvbench.accuracy import compare, run_checked
from wkvbench.registry import get_impl

triton = pytest.importorskip("triton")
import triton.language as tl  # noqa: E402

from wkvbench.impls import bi_wkv7_triton as tk  # noqa: E402
from wkvbench.impls.bi_wkv7_triton import chunked_bwd as wyb  # noqa: E402
from wkvbench.impls.bi_wkv7_triton.common import _unit_lower_inverse  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
TS = (1, 5, 17, 20)


def _check(fn, x: dict, dtype, tf32: bool = False, **kw):
    """Run ``fn`` NaN-poisoned and compare with the float64 reference; return the Accuracy."""
    ref = reference.bi_wkv7(**x)
    y = run_checked(lambda **a: fn(**a, **kw), x, tuple(x["r"].shape), dtype, accepts_out=True)
    acc = compare(y, ref, dtype, tf32=tf32)
    assert acc.finite, "non-finite output (an element left unwritten?)"
    assert acc.passed, f"rel_err {acc.rel_err:.3g} > {acc.tol:.3g}"
    return acc


def _bv(dtype) -> int:
    """Largest value block the chunked kernel launches for this dtype (fewest interpreter programs)."""
    return max(tk.chunked_blocks(exact=dtype == torch.float32))


def _inputs(T, dtype, B=1, H=2, seed=0, variant="realistic", gate=True):
    return inputs.bi_wkv7_inputs(B, T, H, 64, dtype=dtype, device=DEVICE, seed=seed + T, variant=variant, gate=gate)


# ----------------------------------------------------------------------------- recurrent
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("T", TS)
def test_recurrent_matches_reference(T, dtype):
    _check(tk.bi_wkv7_recurrent, _inputs(T, dtype, H=1), dtype, block_v=16)


def test_recurrent_registered_default_config_no_gate_strong_decay():
    """The registered function (default BV = 4 at B*H = 2), g = None, strongest decays."""
    x = _inputs(6, torch.float32, variant="strong_decay", gate=False)
    assert "g" not in x
    _check(get_impl("bi_wkv7", "triton_recurrent").fn, x, torch.float32)


# ----------------------------------------------------------------------------- chunked
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("T", TS)
def test_chunked_matches_reference(T, dtype):
    _check(tk.bi_wkv7_chunked, _inputs(T, dtype), dtype, block_v=_bv(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
def test_chunked_strong_decay_several_chunks(dtype):
    """Decays at the edge of the domain (largest factored exponents), 3 chunks, one ragged."""
    _check(tk.bi_wkv7_chunked, _inputs(37, dtype, variant="strong_decay"), dtype, block_v=_bv(dtype))


def test_chunked_weak_decay_swapped_roles_two_value_blocks():
    """Long memory; the reverse program takes the first ticket; two value blocks per head."""
    x = _inputs(35, torch.bfloat16, variant="weak_decay")
    _check(tk.bi_wkv7_chunked, x, torch.bfloat16, block_v=32, swap=1)


def test_chunked_registered_default_config_no_gate():
    """The registered function with its default config (BV = 8 at B*H = 2) and g = None."""
    x = _inputs(5, torch.float16, gate=False)
    _check(get_impl("bi_wkv7", "triton_chunked").fn, x, torch.float16)


def test_chunked_tf32_variant_is_registered_and_within_bf16_bar():
    rec = get_impl("bi_wkv7", "triton_chunked_tf32")
    assert rec.tf32 and rec.dtypes == (torch.float32,)
    x = _inputs(20, torch.float32, variant="mixed")
    acc = _check(lambda **a: tk.bi_wkv7_chunked(**a, tf32=True, block_v=64), x, torch.float32, tf32=True)
    # TF32 operands (10-bit mantissa, rounded to nearest): well inside the bf16 bar, far from exact.
    assert 1e-6 < acc.rel_err < 1e-3


def test_chunked_tc_variant_is_registered_and_within_fp32_bar():
    """3xTF32 split dots (``tc``): float32 accuracy (measured ~2e-7 at T <= 50; TF32 alone ~4e-4)."""
    rec = get_impl("bi_wkv7", "triton_chunked_tc")
    assert not rec.tf32 and rec.dtypes == DTYPES
    x = _inputs(17, torch.float32, variant="strong_decay")
    acc = _check(lambda **a: tk.bi_wkv7_chunked(**a, tc=True, block_v=32), x, torch.float32)
    assert acc.rel_err < 2e-6
    with pytest.raises(ValueError, match="tc"):
        tk.bi_wkv7_chunked(**x, tc=True, tf32=True)


def test_chunked_longer_chunk_and_batch():
    """chunk_len = 32 (the same kernel at L = 32), B = 2: batch offsets and a ragged chunk."""
    x = _inputs(40, torch.float32, B=2, H=1)
    _check(tk.bi_wkv7_chunked, x, torch.float32, block_v=32, chunk_len=32)


def test_recurrent_and_chunked_agree_at_float32():
    """An independent cross-check: the two algorithms agree far below the float32 bar."""
    x = _inputs(19, torch.float32, variant="mixed")
    y1 = tk.bi_wkv7_recurrent(**x, block_v=16)
    y2 = tk.bi_wkv7_chunked(**x, block_v=32)
    assert float((y1 - y2).norm() / y2.norm()) < 2e-6


@triton.jit
def _inverse_probe(a_ptr, z_ptr, L: tl.constexpr, PREC: tl.constexpr):
    o = tl.arange(0, L)
    A = tl.load(a_ptr + o[:, None] * L + o[None, :])
    tl.store(z_ptr + o[:, None] * L + o[None, :], _unit_lower_inverse(A, L, PREC))


@pytest.mark.parametrize("L, prec", ((16, 0), (32, 0), (16, 2)))
def test_unit_lower_inverse_is_exact(L, prec):
    """The in-kernel (I - A)^-1 against float64, with entries large enough that A^(L/2) matters
    (``prec`` 0: exact float32 dots, 2: 3xTF32)."""
    gen = torch.Generator().manual_seed(L)
    A = (torch.rand(L, L, generator=gen, dtype=torch.float64) * 1.6 - 0.8).tril(-1)
    z = torch.empty(L, L, dtype=torch.float32)
    _inverse_probe[(1,)](A.float().contiguous(), z, L, prec)
    want = torch.linalg.inv(torch.eye(L, dtype=torch.float64) - A.float().double())
    assert float((z.double() - want).norm() / want.norm()) < 1e-5


# ----------------------------------------------------------------------------- registry, configs
def test_registration_and_priorities():
    chunked, rec = get_impl("bi_wkv7", "triton_chunked"), get_impl("bi_wkv7", "triton_recurrent")
    torch_chunked = get_impl("bi_wkv7", "torch_chunked")
    assert chunked.priority > rec.priority > torch_chunked.priority
    for r in (chunked, rec):
        assert r.head_sizes == (64,) and r.accepts_out and r.backend == "triton"
        assert r.supports(torch.bfloat16, 64)[0] and not r.supports(torch.bfloat16, 32)[0]
    assert chunked.available("cpu") == (True, "ok")  # the interpreter is on under pytest


def test_check_without_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    ok, why = tk._check(torch.device("cpu"))
    assert not ok and why == "CPU needs TRITON_INTERPRET=1 (wkvbench --interpret)"
    monkeypatch.setattr(tk, "HAS_TRITON", False)
    assert tk._check(torch.device("cuda")) == (False, "triton not installed")


@pytest.mark.parametrize("B", (1, 2, 4, 8, 16, 64))
def test_configs_fill_the_gpu(B):
    """Programs per launch at A-RWKV-B width (H = 12) on 132 SMs."""
    H, sms = 12, 132
    rc = tk.recurrent_config(B, H, sms)
    assert B * H * 64 // rc["BV"] >= min(sms, 16 * B * H)  # >= 1 program per SM at batch 1
    for exact in (False, True):
        cc = tk.chunked_config(B, H, sms, exact=exact)
        progs = 2 * B * H * 64 // cc["BV"]
        per_sm = 2 if cc["num_warps"] == 4 else 1
        assert cc["BV"] in tk.chunked_blocks(exact) and cc["L"] == 16
        assert progs <= per_sm * sms or cc["BV"] == max(tk.chunked_blocks(exact))  # one wave, or least work
    assert tk.chunked_config(1, H, sms)["BV"] == 8  # batch 1: 192 programs for 132 SMs


# ----------------------------------------------------------------------------- sm_90 compile
TC_IMPLS = ("triton_chunked_tc", wyb.IMPL_TC)
_SNIPPET = """
import json, sys
from wkvbench.impls import _compile
from wkvbench.impls import bi_wkv7_triton as tk
from wkvbench.impls.bi_wkv7_triton import chunked_bwd as wyb
tc = ("triton_chunked_tc", wyb.IMPL_TC)
vs = tk.kernel_variants() + wyb.kernel_variants()
vs = [v for v in vs if v["impl"] not in tc] if sys.argv[1] == "all" else [
    v for v in vs if v["impl"] == "triton_chunked_tc" and v["config"].endswith("BV=32 warps=8 dots=tf32x3 save")]
print("@@JSON@@" + json.dumps(_compile.triton_compile_rows(vs, 90)))
"""


def _compile_rows(which: str) -> list[dict]:
    """sm_90 rows in a clean subprocess: ``"all"`` but the 3xTF32 variants, or ``"tc"`` a 3xTF32 training forward."""
    proc = subprocess.run([sys.executable, "-c", _SNIPPET, which], capture_output=True, text=True,
                          env=kernels.clean_env(), timeout=1200)  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@JSON@@")]
    assert lines, proc.stderr[-2000:]
    return json.loads(lines[0][len("@@JSON@@") :])


def _assert_no_spills(rows: list[dict]) -> None:
    for r in rows:
        assert "error" not in r, f"{r['config']}: {r.get('error')}"
        assert 0 < r["registers"] <= 255 and r["shared_bytes"] >= 0, r
        assert r["local_bytes"] == 0, f"{r['impl']} {r['config']} spills {r['local_bytes']} bytes"


@pytest.mark.slow  # a compiler subprocess per kernel variant: a minute or more
def test_compile_report_sm90_no_spills():
    """Every variant, inference and training forwards and the backward, compiles for sm_90 with zero spills.

    The 3xTF32 variants (``triton_chunked_tc``) are left to the next test and to the chunked
    backward's tests (the training dtypes; ``wkvbench kernels`` lists them all): compiling them all
    here would double this test's minutes."""
    rows = _compile_rows("all")
    impls = {"triton_recurrent", "triton_chunked", "triton_chunked_tf32", "triton_* (backward)"}
    assert {r["impl"] for r in rows} == impls | {wyb.IMPL}  # the chunked kinds' WY backward, listed here
    vs = tk.kernel_variants() + wyb.kernel_variants()
    assert len(rows) == sum(v["impl"] not in TC_IMPLS for v in vs)
    assert sum(r["impl"] == wyb.IMPL for r in rows) == sum(v["impl"] == wyb.IMPL for v in vs)
    assert sum(r["kernel"] == "_bi_wkv7_bwd_kernel" for r in rows) == 18  # 3 dtypes x 3 BV x gate or not
    assert sum(r["config"].endswith(" save") for r in rows) == 3 * 2 + 3 + 4 + 4 + 4  # training forwards
    _assert_no_spills(rows)


def test_compile_report_sm90_tc_training_forward():
    """The 3xTF32 float32 training forward at BV = 32 (what ``chunked_config`` picks at the training
    target): no spills, >= 90% of the multiply-add FLOPs on tensor cores."""
    assert tk.chunked_config(8, 12, exact=True, tc=True)["BV"] == 32
    rows = _compile_rows("tc")
    assert len(rows) == 1
    _assert_no_spills(rows)
    assert all(r["tensor_core_pct"] >= 90 for r in rows), rows
