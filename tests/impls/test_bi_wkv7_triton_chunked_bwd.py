"""The chunked Bi-WKV7 backward (PyTorch form and Triton kernels) against float64 autograd.

The truth is autograd through ``wkvbench.reference.bi_wkv7`` (``wkvbench.gradcheck``). The
chunk-entry states the backward takes are produced here independently: the float64 reference
scan run on each prefix (forward direction) and each suffix (reverse direction), rounded to
float32 as the training forward saves them. tests/conftest.py sets TRITON_INTERPRET=1 without a
GPU, so the Triton kernels run on CPU tensors. Shapes are tiny: B = 1, H = 1 or 2, N = 64;
T = 1, 15, 16, 17, 50 (one token, one short chunk, one full chunk, a ragged second chunk,
four chunks). The default run covers all five T at float32 (realistic decays, with g) and every
dtype x input variant at T = 17 (with g) and T = 50 (without g); ``docs/notes/
triton_chunked_backward.md`` lists the worst errors of the full matrix.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from wkvbench import gradcheck, inputs, kernels, reference

pytest.importorskip("triton")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from wkvbench.impls.bi_wkv7_triton import chunked_bwd as mod  # noqa: E402
from wkvbench.impls.bi_wkv7_triton import common  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
NAMES = ("r", "w", "k", "v", "a", "b")
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
VARIANTS = ("realistic", "strong_decay", "weak_decay")


def chunk_states(x: dict, L: int = mod.CHUNK) -> torch.Tensor:
    """float32 ``[2, B, H, C, N, N]`` chunk-entry states of both directions, by the float64 reference."""
    B, T, H, N = x["r"].shape
    C = -(-T // L)
    st = torch.zeros(2, B, H, C, N, N, dtype=torch.float64, device=x["r"].device)
    for c in range(C):
        if c > 0:
            st[0, :, :, c] = reference.wkv7(*(x[n][:, : c * L] for n in NAMES))[1]
        if (c + 1) * L < T:
            st[1, :, :, c] = reference.wkv7(*(x[n][:, (c + 1) * L :] for n in NAMES), reverse=True)[1]
    return st.float()


def _case(T, dtype, variant="realistic", gate=True, H=1, B=1):
    x = inputs.bi_wkv7_inputs(B, T, H, 64, dtype=dtype, device=DEVICE, seed=T, variant=variant, gate=gate)
    dy = gradcheck.make_dy((B, T, H, 64), dtype, DEVICE, seed=T)
    return x, dy, gradcheck.reference_grads("bi_wkv7", x, dy), chunk_states(x)


def _grads(fn, x, dy, states, **kw) -> dict:
    out = fn(*(x[n] for n in NAMES), x.get("g"), dy, states, **kw)
    return dict(zip(("r", "w", "k", "v", "a", "b", "g"), out, strict=True))


def _check_kernel(T, dtype, variant="realistic", gate=True, H=1, B=1, prec=None):
    x, dy, ref, st = _case(T, dtype, variant, gate, H, B)
    grads = _grads(mod.chunked_backward, x, dy, st, prec=prec)
    assert (grads["g"] is None) == (not gate)
    for name, gr in grads.items():
        if gr is not None:
            assert gr.dtype == dtype and gr.shape == x[name].shape, name
    acc = gradcheck.compare_grads(grads, ref, dtype)
    assert acc.finite and acc.passed, f"{acc.label()} > {acc.tol:.0e}: {acc.errors}"
    return acc


# ----------------------------------------------------------------------------- PyTorch form
@pytest.mark.parametrize("T", (1, 15, 50))
@pytest.mark.parametrize("variant", VARIANTS)
def test_torch_form_matches_autograd(T, variant):
    """The algorithm in float64 (only the states are float32): far below every bar."""
    x, dy, ref, st = _case(T, torch.float64, variant, gate=T != 15)
    acc = gradcheck.compare_grads(_grads(mod.chunked_backward_torch, x, dy, st), ref, torch.float32)
    assert acc.finite and acc.worst_err < 1e-6, acc.errors


# ----------------------------------------------------------------------------- Triton kernels
@pytest.mark.parametrize("T", (1, 15, 16, 17, 50))
def test_kernel_float32_every_length(T):
    _check_kernel(T, torch.float32, H=2)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("T", (17, 50))
def test_kernel_dtypes_and_variants(T, variant, dtype):
    _check_kernel(T, dtype, variant, gate=T == 17)


@pytest.mark.parametrize(
    "T, dtype, variant",
    ((1, torch.float16, "realistic"), (17, torch.float32, "strong_decay"), (50, torch.bfloat16, "weak_decay")),
    ids=lambda p: str(p).replace("torch.", ""),
)
def test_kernel_3xtf32(T, dtype, variant):
    """The 3xTF32 tensor-core dots (``prec=2``, ``triton_chunked_tc``) within the same bars; float32
    within 5e-6, 20x below its bar (docs/notes/triton_chunked_backward.md lists the full matrix)."""
    acc = _check_kernel(T, dtype, variant, prec=2)
    if dtype == torch.float32:
        assert acc.worst_err < 5e-6, acc.errors


@triton.jit
def _split_kernel(x_ptr, hi_ptr, lo_ptr, n: tl.constexpr):
    v = tl.load(x_ptr + tl.arange(0, n))
    h = common._tf32_rne(v)
    tl.store(hi_ptr + tl.arange(0, n), h)
    tl.store(lo_ptr + tl.arange(0, n), common._tf32_rne(v - h))


def test_3xtf32_split_is_exact_and_rounds_to_nearest_even():
    """``_tf32_rne``'s hi and lo parts are TF32 values (so the tensor cores' truncation leaves them
    as they are and the interpreter's dots are the hardware's), ties go to even, hi + lo is x to 2^-21."""
    x = torch.tensor([1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 1.0 + 2.0**-11 + 2.0**-20, -3.14159265, 1e-30, 7e5])
    xp = torch.nn.functional.pad(x, (0, 2))
    hp, lp = torch.empty_like(xp), torch.empty_like(xp)
    _split_kernel[(1,)](xp, hp, lp, n=8)
    hi, lo = hp[:6], lp[:6]
    assert hi[0] == 1.0 and hi[1] == 1.0 + 4 * 2.0**-11 and hi[2] == 1.0 + 2.0**-10  # even, even, above the tie
    bits = hi.view(torch.int32) & 0x1FFF
    assert (bits == 0).all() and ((lo.view(torch.int32) & 0x1FFF) == 0).all()
    assert ((hi + lo - x[:6]).abs() <= 2.0**-21 * x[:6].abs()).all()  # the dropped residual: < 2^-22 relative


def test_kernel_batch_offsets_and_gate():
    """B = 2, H = 2: batch and head offsets of the inputs, the gate and the state buffers."""
    _check_kernel(17, torch.bfloat16, "realistic", gate=True, H=2, B=2)


@pytest.mark.parametrize("drop, hit, prec", ((1, "da", 0), (2, "dw", 0), (1, "da", 2)))
def test_mutation_is_caught(drop, hit, prec):
    """Dropping one term (1: the sa path of the carried dS, 2: the state's decay term of dw) fails,
    with exact (0) and 3xTF32 (2) dots."""
    x, dy, ref, st = _case(33, torch.float32, "realistic", gate=True)
    good = gradcheck.compare_grads(_grads(mod.chunked_backward, x, dy, st, prec=prec), ref, torch.float32)
    bad = gradcheck.compare_grads(_grads(mod.chunked_backward, x, dy, st, prec=prec, _drop=drop), ref, torch.float32)
    assert good.passed
    assert not bad.passed and bad.errors[hit] > 100 * bad.tol, bad.errors


def test_directions_are_not_interchangeable():
    """Swapping the two directions' states breaks the result (each direction reads its own)."""
    x, dy, ref, st = _case(40, torch.float32, "realistic", gate=True)
    bad = gradcheck.compare_grads(_grads(mod.chunked_backward, x, dy, st.flip(0).contiguous()), ref, torch.float32)
    assert not bad.passed


def test_segments_give_identical_results(monkeypatch):
    """The workspace holds one segment of chunks per direction (dS carried between segments): one chunk per
    segment, three (a ragged last segment) and all four (the default at T = 50) give the same bits; what
    each call allocates is :func:`workspace_bytes`."""
    x, dy, _, st = _case(50, torch.float32, "strong_decay", gate=True)
    allocated, real = [], mod.workspace
    monkeypatch.setattr(mod, "workspace", lambda *a, **k: allocated.append(real(*a, **k)) or allocated[-1])
    whole = _grads(mod.chunked_backward, x, dy, st)
    for seg in (1, 3):
        part = _grads(mod.chunked_backward, x, dy, st, segment=seg)
        for name, gr in whole.items():
            assert torch.equal(part[name], gr), (seg, name)
    nbytes = [sum(t.nbytes for t in ws.values() if t is not None) for ws in allocated]
    assert nbytes == [mod.workspace_bytes(1, 50, 1, segment=seg) for seg in (None, 1, 3)]
    assert nbytes[1] < nbytes[0]  # two chunks (one shared) with copied states, below all four


def test_workspace_is_one_segment():
    """What a backward allocates is :func:`workspace_bytes`; for long sequences one segment of
    ``SEGMENTS``: <= 88 / 8 bytes per element of y (+ the shared chunk and the carried dS)."""
    for B, T, H, seg in ((1, 50, 1, None), (2, 300, 3, 5), (1, 16, 2, 7), (1, 400, 1, None)):
        C = -(-T // mod.CHUNK)
        S = mod._segment(C, seg)
        ws = mod.workspace(B, H, C if S == C else S + 1, "cpu", copy_states=S < C)
        assert sum(t.nbytes for t in ws.values() if t is not None) == mod.workspace_bytes(B, T, H, segment=seg)
    assert [mod.segment_chunks(C) for C in (1, 4, 17, 18, 64, 65, 1024)] == [1, 4, 17, 8, 8, 9, 128]
    assert all(-(-C // mod.segment_chunks(C)) <= mod.SEGMENTS for C in range(1, 3000))
    E = 8 * 16384 * 12 * 64
    assert mod.workspace_bytes(8, 16384, 12) / E < 88 * 129 / 1024 + 0.1  # 11.1 B
    assert mod.workspace_bytes(8, 16384, 12, segment=1024) / E > 56  # one segment: the whole 56 B


# ----------------------------------------------------------------------------- arguments
def test_bad_arguments_name_the_argument():
    x = inputs.bi_wkv7_inputs(1, 20, 1, 64, seed=0)
    dy = torch.zeros_like(x["r"])
    st = torch.zeros(2, 1, 1, 2, 64, 64)
    args = [x[n] for n in NAMES]
    with pytest.raises(ValueError, match="states"):
        mod.chunked_backward(*args, x["g"], dy, st[:, :, :, :1])
    with pytest.raises(TypeError, match="states"):
        mod.chunked_backward(*args, x["g"], dy, st.double())
    with pytest.raises(ValueError, match="dy"):
        mod.chunked_backward(*args, x["g"], dy[:, :10], st)
    with pytest.raises(ValueError, match="g"):
        mod.chunked_backward(*args, x["g"][..., None], dy, st)
    with pytest.raises(TypeError, match="k"):
        mod.chunked_backward(x["r"], x["w"], x["k"].half(), *args[3:], x["g"], dy, st)
    with pytest.raises(ValueError, match="prec"):
        mod.chunked_backward(*args, x["g"], dy, st, prec=1)
    for seg in (0, 1.5, True):
        with pytest.raises(ValueError, match="segment"):
            mod.chunked_backward(*args, x["g"], dy, st, segment=seg)
    with pytest.raises(ValueError, match="head size"):
        mod.chunked_backward(*(t[..., :32] for t in args), x["g"], dy[..., :32], st[..., :32, :32])


# ----------------------------------------------------------------------------- sm_90 compile
_SNIPPET = """
import json, sys
from wkvbench.impls import _compile
from wkvbench.impls.bi_wkv7_triton import chunked_bwd as mod
vs = [v for v in mod.kernel_variants() if v["impl"] == sys.argv[1] and sys.argv[2] in v["config"]]
print("@@JSON@@" + json.dumps(_compile.triton_compile_rows(vs, 90)))
"""


def _compile_rows(impl: str, config_part: str) -> list[dict]:
    """sm_90 compile rows of the variants of ``impl`` whose config contains ``config_part`` (clean subprocess)."""
    proc = subprocess.run([sys.executable, "-c", _SNIPPET, impl, config_part], capture_output=True, text=True,
                          env=kernels.clean_env(), timeout=900)  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@JSON@@")]
    assert lines, proc.stderr[-2000:]
    return json.loads(lines[0][len("@@JSON@@") :])


def _assert_no_spills(rows: list[dict]) -> None:
    for r in rows:
        assert "error" not in r and "skipped" not in r, r
        assert 0 < r["registers"] <= 255 and r["shared_bytes"] >= 0, r
        assert r["local_bytes"] == 0, f"{r['kernel']} {r['config']} spills {r['local_bytes']} bytes"


def test_kernel_variants_cover_both_precisions():
    vs = mod.kernel_variants()
    exact = [v for v in vs if v["impl"] == mod.IMPL]
    tc = [v for v in vs if v["impl"] == mod.IMPL_TC]
    assert len(exact) == 3 * (1 + len(mod.CHUNK_PARTS)) and len(tc) == 3 * (1 + len(mod.chunk_parts(2)))
    assert all(v["constexprs"]["PREC"] == 0 for v in exact) and all(v["constexprs"]["PREC"] == 2 for v in tc)


def test_compile_report_sm90_no_spills():
    """Every exact-float32 variant compiles for sm_90 (no GPU, no interpreter) without spills, on CUDA cores."""
    rows = _compile_rows(mod.IMPL, "dots=ieee")
    assert len(rows) == 3 * (1 + len(mod.CHUNK_PARTS))
    _assert_no_spills(rows)
    assert all(r["tensor_core_pct"] == 0.0 and r["ffma"] > 0 for r in rows), rows


def test_compile_report_sm90_3xtf32_on_tensor_cores():
    """The 3xTF32 backward of the training target's dtype (bfloat16): no spills and >= 90% of its
    multiply-add FLOPs on tensor cores in the SASS (``wkvbench kernels`` shows every dtype)."""
    rows = _compile_rows(mod.IMPL_TC, "bfloat16")
    assert len(rows) == 1 + len(mod.chunk_parts(2))
    _assert_no_spills(rows)
    assert all(r["tensor_core_pct"] >= 90 and r["mma"] > 0 for r in rows), rows
