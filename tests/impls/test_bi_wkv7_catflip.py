"""Tests of ``audiorwkv_catflip`` (wkvbench/impls/bi_wkv7_catflip.py and its kernels bi_wkv7_catflip.cu).

CuPy cannot run without a GPU, so the construction is checked on the CPU:

* host emulation: the SAME .cu file is compiled with g++ after ``wkvbench/hostemu/cuda_shim.h``
  (``hostemu/catflip_host.cpp``) and injected as the module's launcher, so the whole
  construction runs -- cat with the flipped copies, the autograd Function's training forward
  (checkpoints + sa) and backward kernel, the PyTorch merge -- against float64 autograd of the
  reference: outputs and every gradient (``dg`` included) at T = 1, 15, 16, 17, 50, variants
  realistic / strong_decay / weak_decay, all three I/O dtypes, with and without the gate;
* a mutant of the kernel source without the backward's ``dsa a^T`` term must fail that check;
* compile report: NVRTC compiles every kernel for sm_90 with zero spills.

With a GPU and CuPy the real launch is checked too (skipped here otherwise).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
import torch

from wkvbench.accuracy import TOLERANCE, compare
from wkvbench.hostemu import launch
from wkvbench.impls import bi_wkv7_catflip as mod
from wkvbench.inputs import bi_wkv7_inputs
from wkvbench.reference import bi_wkv7 as reference_bi_wkv7
from wkvbench.registry import get_impl

DTYPE_CODE = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}
ARGS = ("r", "w", "k", "v", "a", "b")
VARIANTS = ("realistic", "strong_decay", "weak_decay")
#: docs/spec.md section 5: each gradient tensor's relative L2 error at most
GRAD_TOLERANCE = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 1e-2}


# ----------------------------------------------------------------------------- host emulation
def load_host(cuda_host, out_dir: Path, source_dir: Path = mod.KERNEL_PATH.parent) -> ctypes.CDLL:
    """Build catflip_host.cpp with the kernel source found in ``source_dir``; declare its entry points."""
    return launch.declare(cuda_host("catflip_host.cpp", out_dir, source_dir), "catflip_host.cpp")


HostLauncher = launch.CatflipLauncher  # ``mod.Launcher`` on the host emulation; records what it launched


@pytest.fixture(scope="module")
def host(cuda_host, tmp_path_factory):
    return HostLauncher(load_host(cuda_host, tmp_path_factory.mktemp("catflip_host")))


def variant_batch(T: int, dtype: torch.dtype, seed: int) -> dict:
    """One batch entry per variant (the loss separates over the batch, so each is checked on its own slice)."""
    # At T = 1 a head's gradient is one dot product times a vector (e.g. dk = r (v . g dy)), so one
    # head's relative error is a one-sample statistic of the dy rounding: use 4 heads there.
    H = 4 if T == 1 else 1
    xs = [bi_wkv7_inputs(1, T, H, 64, dtype=dtype, seed=seed + i, variant=v) for i, v in enumerate(VARIANTS)]
    return {n: torch.cat([x[n] for x in xs]) for n in (*ARGS, "g")}


def run_both(launcher, x: dict, gate: bool, seed: int = 1):
    """(y, grads) of the emulated construction and of float64 autograd of the reference, same dy."""
    names = [*ARGS, "g"] if gate else list(ARGS)
    ins = [x[n].clone().requires_grad_() for n in names]
    y = mod.catflip(*ins[:6], ins[6] if gate else None, launcher=launcher)
    assert y.requires_grad and y.dtype == x["r"].dtype
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(y.dtype)
    grads = torch.autograd.grad(y, ins, grad_outputs=dy)
    i64 = [t.detach().double().requires_grad_() for t in ins]
    y_ref = reference_bi_wkv7(*i64[:6], i64[6] if gate else None)
    grads_ref = torch.autograd.grad(y_ref, i64, grad_outputs=dy.double())
    got, want = dict(zip(names, grads, strict=True)), dict(zip(names, grads_ref, strict=True))
    return names, y.detach(), got, y_ref.detach(), want


def worst_errors(names, y, grads, y_ref, grads_ref, dtype, sl=slice(None)) -> tuple[float, str, float]:
    """(forward rel_err, name of the worst gradient, its rel_err) on batch slice ``sl``."""
    fwd = compare(y[sl], y_ref[sl], dtype)
    assert fwd.finite
    errs = {}
    for n in names:
        acc = compare(grads[n][sl], grads_ref[n][sl], dtype)
        assert acc.finite, f"d{n}: not finite"
        assert grads[n].dtype == dtype and grads[n].shape == grads_ref[n].shape
        errs[n] = acc.rel_err
    worst = max(errs, key=errs.get)
    return fwd.rel_err, worst, errs[worst]


# Every dtype at every T, with the gate at T = 1, 16, 50 and without it at T = 15, 17 (each case runs
# the three variants as one batch of 3; the emulation and the float64 autograd dominate the time).
EMULATED_CASES = [(dt, T, T not in (15, 17)) for dt in (torch.float32, torch.bfloat16, torch.float16)
                  for T in (1, 15, 16, 17, 50)]  # fmt: skip


@pytest.mark.parametrize("dtype,T,gate", EMULATED_CASES, ids=lambda p: str(p).replace("torch.", ""))
def test_emulated_construction_forward_and_backward_match_reference(host, dtype, T, gate):
    x = variant_batch(T, dtype, seed=10 * T + gate)
    res = run_both(host, x, gate)
    kinds = [c[0] for c in host.calls[-2:]]
    assert kinds == ["fwd_save", "bwd"], f"the training path must launch fwd_save then bwd, got {kinds}"
    failures = []
    for i, variant in enumerate(VARIANTS):
        fwd, worst, err = worst_errors(*res, dtype, slice(i, i + 1))
        if fwd > TOLERANCE[dtype] or err > GRAD_TOLERANCE[dtype]:
            failures.append(f"{variant}: y {fwd:.2e} (bar {TOLERANCE[dtype]:.0e}), worst d{worst} {err:.2e}")
    assert not failures, f"bar for gradients {GRAD_TOLERANCE[dtype]:.0e}: " + "; ".join(failures)


def test_mutant_without_dsa_a_term_fails(cuda_host, tmp_path):
    """Dropping the ``dsa a^T`` term of dS's hand-over (both copies) must break the gradient check."""
    src = mod.kernel_source()
    assert src.count("dsai * s_a[j]") == 1 and src.count("s_dsa[j] * ai") == 1, "the mutation no longer applies"
    mutated = src.replace("dsai * s_a[j]", "0.f").replace("s_dsa[j] * ai", "0.f")
    (tmp_path / mod.KERNEL_PATH.name).write_text(mutated)
    mutant = HostLauncher(load_host(cuda_host, tmp_path, source_dir=tmp_path))
    x = bi_wkv7_inputs(1, 17, 2, 64, dtype=torch.float32, seed=4)
    res = run_both(mutant, x, gate=True)
    fwd, worst, err = worst_errors(*res, torch.float32)
    assert fwd <= TOLERANCE[torch.float32], "the mutation touches only the backward"
    assert err > 100 * GRAD_TOLERANCE[torch.float32], f"the mutant passed: worst d{worst} {err:.2e}"


def test_padding_does_not_change_outputs(host):
    """T = 17 runs padded to 32 in training; its y must equal the unpadded inference forward bit for bit."""
    x = bi_wkv7_inputs(2, 17, 2, 64, dtype=torch.bfloat16, seed=7)
    with torch.no_grad():
        y_inf = mod.catflip(*[x[n] for n in ARGS], x["g"], launcher=host)
    assert host.calls[-1][0] == "fwd"
    ins = [x[n].clone().requires_grad_() for n in ARGS]
    y_train = mod.catflip(*ins, x["g"], launcher=host)
    assert host.calls[-1][0] == "fwd_save"
    assert torch.equal(y_train.detach(), y_inf)
    # the padded training forward of the 2B sequences: the state after the pad equals the state after token 16
    xs = [torch.cat([x[n], x[n].flip(1)]) for n in ARGS]
    padded = [mod._pad(t, mod.padded_tokens(17), mod.W_PAD if i == 1 else 0.0) for i, t in enumerate(xs)]
    y2, sa, ck = mod.causal_forward(padded, host, save=True)
    assert ck.shape == (4, 2, 32 // mod.checkpoint_tokens(torch.bfloat16), 64, 64)
    assert sa.nbytes + ck.nbytes == mod.saved_bytes(2, 17, 2, 64, torch.bfloat16)
    assert torch.all(sa[:, 17:] == 0) and torch.all(y2[:, 17:] == 0)


def test_padding_tokens_leave_the_state_unchanged(host):
    """w = W_PAD gives d == 1 exactly in fp32, so the last checkpoint (after the pad) is S_{T-1}."""
    x = bi_wkv7_inputs(1, 13, 1, 64, dtype=torch.float32, seed=2)
    xs = [mod._pad(x[n], 16, mod.W_PAD if n == "w" else 0.0) for n in ARGS]
    _, _, ck = mod.causal_forward(xs, host, save=True)
    S = torch.zeros(64, 64, dtype=torch.float64)  # hand expansion of the recurrence, float64
    r, w, k, v, a, b = (x[n][0, :, 0].double() for n in ARGS)
    for t in range(13):
        S = S * torch.exp(-torch.exp(w[t]))[None, :] + torch.outer(S @ a[t], b[t]) + torch.outer(v[t], k[t])
    assert ck.shape == (1, 1, 2, 64, 64)
    assert float((ck[0, 0, -1].double() - S).norm() / S.norm()) < 1e-6


def test_inference_path_saves_nothing_and_fills_out(host):
    x = bi_wkv7_inputs(1, 5, 2, 64, dtype=torch.float16, seed=3)
    out = torch.full_like(x["r"], float("nan"))
    host.calls.clear()
    y = mod.catflip(*[x[n] for n in ARGS], None, launcher=host, out=out)
    assert y.data_ptr() == out.data_ptr() and [c[0] for c in host.calls] == ["fwd"]
    assert compare(out, reference_bi_wkv7(*[x[n] for n in ARGS]), torch.float16).passed
    ins = [x[n].clone().requires_grad_() for n in ARGS]
    with pytest.raises(ValueError, match="^out:"):
        mod.catflip(*ins, launcher=host, out=out)


def test_gradient_flows_only_where_asked(host):
    """Only w requires grad: y still carries a graph, and the gradient of w matches float64 autograd."""
    x = bi_wkv7_inputs(1, 9, 1, 64, dtype=torch.float32, seed=8)
    w = x["w"].clone().requires_grad_()
    y = mod.catflip(x["r"], w, x["k"], x["v"], x["a"], x["b"], x["g"], launcher=host)
    assert y.grad_fn is not None
    (dw,) = torch.autograd.grad(y.sum(), [w])
    w64 = x["w"].double().requires_grad_()
    (dw_ref,) = torch.autograd.grad(reference_bi_wkv7(x["r"], w64, *[x[n] for n in ARGS[2:]], x["g"]).sum(), [w64])
    assert compare(dw, dw_ref, torch.float32).rel_err < 1e-5


# ----------------------------------------------------------------------------- compile report
def test_compile_report_every_kernel_compiles_without_spills(report):
    seen = set()
    for row in report:
        cfg = dict(p.split("=") for p in row["config"].split())
        seen.add((cfg["dtype"], cfg["kind"]))
        assert row["impl"] == "audiorwkv_catflip" and row["kernel"].startswith("wkv7_catflip_")
        assert 0 < row["registers"] <= 255, row
        assert row["local_bytes"] == 0 and row["spill_bytes"] == 0, f"spills/stack: {row}"
        # shared memory: the staged vectors, 5 per token forward, 9 backward
        assert row["shared_bytes"] == 4 * 64 * (9 if cfg["kind"] == "bwd" else 5), row
        assert row["compiler"].startswith(("nvrtc", "nvcc"))
        print(
            f"{row['name']:<40} regs {row['registers']:>3}  smem {row['shared_bytes']:>5}  spills 0  {row['compiler']}"
        )
    assert seen == {(str(dt).replace("torch.", ""), kind) for dt in mod.DTYPES for kind in mod.KINDS}


def test_compile_report_nvcc_agrees(report, nvcc_agrees):
    nvcc_agrees(mod, report)


# ----------------------------------------------------------------------------- Python side
def test_registration():
    rec = get_impl("bi_wkv7", "audiorwkv_catflip")
    assert rec.backend == "cupy" and rec.devices == ("cuda",) and rec.accepts_out
    assert rec.head_sizes == (64,) and set(rec.dtypes) == set(mod.DTYPES)
    assert rec.priority < get_impl("bi_wkv7", "cupy_cuda").priority  # a baseline, never "auto"'s first pick


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU explanation")
def test_unavailable_without_gpu_says_why():
    ok, why = mod._check(torch.device("cuda"))
    assert not ok and "cupy" in why
    assert not get_impl("bi_wkv7", "audiorwkv_catflip").available("cpu")[0]


def test_validation_names_the_argument():
    """The module's own checks (the shared argument checks: tests/impls/test_gpu_tooling.py)."""
    x = bi_wkv7_inputs(1, 3, 1, 64, dtype=torch.float32)
    with pytest.raises(ValueError, match="^kind:"):
        mod.kernel_name("backward", torch.float32)
    with pytest.raises(ValueError, match="^r: the training forward"):
        mod.causal_forward([x[n] for n in ARGS], lambda *a: None, save=True)


# ----------------------------------------------------------------------------- on a GPU
def _gpu_ready() -> bool:
    return torch.cuda.is_available() and mod._check(torch.device("cuda"))[0]


@pytest.mark.skipif(not _gpu_ready(), reason="needs a CUDA GPU and a working CuPy")
@pytest.mark.parametrize("dtype", mod.DTYPES, ids=str)
@pytest.mark.parametrize("T", [1, 17, 64, 129])
def test_gpu_forward_and_backward_match_reference(dtype, T):
    x = bi_wkv7_inputs(2, T, 3, 64, dtype=dtype, device="cuda", seed=T)
    out = torch.full_like(x["r"], float("nan"))
    y = mod.audiorwkv_catflip(**{n: x[n] for n in ARGS}, g=x["g"], out=out)
    assert y.data_ptr() == out.data_ptr()
    assert compare(y, reference_bi_wkv7(*[x[n] for n in ARGS], x["g"]), dtype).passed
    names, y, grads, y_ref, grads_ref = run_both(mod.cupy_launcher, x, gate=True)
    fwd, worst, err = worst_errors(names, y, grads, y_ref, grads_ref, dtype)
    assert fwd <= TOLERANCE[dtype] and err <= GRAD_TOLERANCE[dtype], f"y {fwd:.2e}, worst d{worst} {err:.2e}"
