"""Tests of ``cupy_cuda`` (wkvbench/impls/bi_wkv7_cupy/ and its kernel source bi_wkv7_cupy.cu).

CuPy cannot run without a GPU, so the kernel source is checked on the CPU in two ways:

* host emulation: the SAME .cu file is compiled with g++ after ``wkvbench/hostemu/cuda_shim.h`` (one
  std::thread per CUDA thread, every block at once, ``__syncthreads`` as a std::barrier, shuffles
  through a per-warp exchange) and launched with the module's geometry on NaN-poisoned outputs; its result must meet
  the accuracy bar against the float64 reference, for every SPLIT, T in {1, 7, 20, 33}, all
  three I/O dtypes, with and without the gate;
* compile report: NVRTC (what CuPy uses) and nvcc compile every instantiation for sm_90 with
  zero spills and the documented shared-memory layout, the training kernels (forward with saving,
  backward; their gradients are tested in test_bi_wkv7_cupy_bwd.py) included.

With a GPU and CuPy the real launch is checked too (skipped here otherwise).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wkvbench.accuracy import GOAL, compare
from wkvbench.hostemu import launch
from wkvbench.impls import bi_wkv7_cupy as mod
from wkvbench.impls.bi_wkv7_cupy import train as _train
from wkvbench.inputs import bi_wkv7_inputs
from wkvbench.reference import bi_wkv7 as reference_bi_wkv7
from wkvbench.registry import get_impl

DTYPE_CODE = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}
ARGS = ("r", "w", "k", "v", "a", "b")


# ----------------------------------------------------------------------------- host emulation
@pytest.fixture(scope="module")
def host_lib(cuda_host, tmp_path_factory):
    lib = cuda_host("bi_wkv7_host.cpp", tmp_path_factory.mktemp("cuda_host"), mod.KERNEL_PATH.parent)
    return launch.declare(lib, "bi_wkv7_host.cpp")


def run_host(lib, x: dict, split: int, gate: bool) -> torch.Tensor:
    """Launch the emulated kernel like ``cupy_cuda`` does: y NaN-poisoned, y itself as the fp32 partial."""
    r = x["r"]
    B, T, H, _ = r.shape
    y = torch.full_like(r, float("nan"))
    part = y if r.dtype == torch.float32 else torch.full(r.shape, float("nan"), dtype=torch.float32)
    g = x["g"].data_ptr() if gate else None
    rc = lib.wkv_host_bi_wkv7(
        DTYPE_CODE[r.dtype], split, *[x[n].data_ptr() for n in ARGS], g, y.data_ptr(), part.data_ptr(), B, T, H
    )
    assert rc == 0
    return y


HOST_CASES = [
    # dtype, split, T, B, H, variant, gate. T = 1, 7, 20 for every SPLIT (fp32); T = 33 spans
    # several chunks in both phases with an odd middle token; B*H = 2 as (1, 2) and (2, 1).
    *[(torch.float32, s, T, 1 + (i % 2), 2 - (i % 2), "realistic", i != 1)
      for s in mod.SPLITS for i, T in enumerate((1, 7, 20))],
    *[(torch.bfloat16, 1, T, 1, 2, "realistic", True) for T in (1, 7, 20)],
    (torch.bfloat16, 8, 7, 2, 1, "realistic", False),
    (torch.float16, 2, 7, 2, 1, "realistic", True),
    (torch.float16, 4, 20, 1, 2, "realistic", True),
    (torch.float32, 1, 33, 1, 2, "weak_decay", True),
    (torch.float32, 2, 33, 2, 1, "strong_decay", True),
    (torch.float32, 1, 33, 1, 2, "mixed", False),
    (torch.bfloat16, 1, 33, 2, 1, "mixed", True),
]  # fmt: skip


@pytest.mark.parametrize("dtype,split,T,B,H,variant,gate", HOST_CASES)
def test_host_emulation_matches_reference(host_lib, dtype, split, T, B, H, variant, gate):
    x = bi_wkv7_inputs(B, T, H, 64, dtype=dtype, seed=T + 10 * split, variant=variant)
    y = run_host(host_lib, x, split, gate)
    ref = reference_bi_wkv7(*[x[n] for n in ARGS], x["g"] if gate else None)
    acc = compare(y, ref, dtype)
    assert acc.finite, "an output element was never written (NaN poison survived) or is not finite"
    assert acc.passed, f"rel_err {acc.rel_err:.3e} > bar {acc.tol:.0e} (max_abs {acc.max_abs:.3e})"
    if dtype == torch.float32:
        assert acc.rel_err <= GOAL[torch.float32], f"float32 rel_err {acc.rel_err:.3e} above the 1e-6 goal"


def test_host_emulation_directions_are_not_interchangeable(host_lib):
    """The gate weights the forward scan: g = 1 must give the causal scan alone, g = 0 the reverse one."""
    x = bi_wkv7_inputs(1, 9, 2, 64, dtype=torch.float32, seed=3)
    fwd, rev = {**x, "g": torch.ones_like(x["g"])}, {**x, "g": torch.zeros_like(x["g"])}
    y_f, y_r = run_host(host_lib, fwd, 4, True), run_host(host_lib, rev, 4, True)
    ref_f = reference_bi_wkv7(*[x[n] for n in ARGS], fwd["g"])
    ref_r = reference_bi_wkv7(*[x[n] for n in ARGS], rev["g"])
    assert compare(y_f, ref_f, torch.float32).rel_err < 1e-6
    assert compare(y_r, ref_r, torch.float32).rel_err < 1e-6
    assert compare(y_f, ref_r, torch.float32).rel_err > 0.1  # the two scans really differ


@pytest.mark.parametrize(
    "dtype,B,T,H,gate,use_out,misalign",
    [
        (torch.float32, 1, 5, 2, True, True, False),
        (torch.bfloat16, 2, 6, 1, False, False, True),
        (torch.float16, 1, 4, 1, True, True, True),
    ],
)
def test_launch_plan_runs_on_host_emulation(host_lib, dtype, B, T, H, gate, use_out, misalign):
    """cupy_cuda's own launch plan (argument order, grid, block, out=, fp32 scratch, alignment copies)."""
    x = bi_wkv7_inputs(B, T, H, 64, dtype=dtype, seed=5)
    if misalign:  # r as a view one element past a 16-byte boundary: the plan must copy it
        buf = torch.empty(x["r"].numel() + 1, dtype=dtype)
        buf[1:] = x["r"].reshape(-1)
        x["r"] = buf[1:].view(x["r"].shape)
        assert x["r"].data_ptr() % 16 != 0
    out = torch.full_like(x["r"], float("nan")) if use_out else None
    plan = mod.launch_plan(*[x[n] for n in ARGS], x["g"] if gate else None, out=out, num_sms=132)
    assert plan.grid == (B * H * plan.split,) and plan.block == (128,) and len(plan.args) == 12
    assert out is None or plan.y is out
    plan.y.fill_(float("nan"))
    rc = host_lib.wkv_host_launch(DTYPE_CODE[dtype], plan.split, plan.grid[0], plan.block[0], *map(int, plan.args))
    assert rc == 0
    acc = compare(plan.y, reference_bi_wkv7(*[x[n] for n in ARGS], x["g"] if gate else None), dtype)
    assert acc.passed, f"rel_err {acc.rel_err:.3e}"


def test_kernel_bf16_rounding_matches_torch(host_lib):
    """The kernel's integer float->bf16 rounding (same code on the device) is torch's round-to-nearest-even."""
    gen = np.random.default_rng(0)
    bits = gen.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32)
    specials = np.array([0.0, -0.0, 1.0, 1.00390625, 1.005859375, 3.4e38, 3.3961e38, 1e-40, -1e-45,
                         np.inf, -np.inf, np.nan], dtype=np.float32)  # fmt: skip
    x = np.concatenate([bits.view(np.float32), specials, np.nextafter(specials, np.float32(1))])
    out = np.empty(x.shape, dtype=np.uint16)
    host_lib.wkv_host_float_to_bf16(x.ctypes.data, out.ctypes.data, x.size)
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    nan = np.isnan(x)
    assert np.array_equal(out[~nan], want[~nan])
    assert np.all((out[nan] & 0x7F80) == 0x7F80) and np.all((out[nan] & 0x007F) != 0)  # NaN stays NaN
    back = np.empty(x.shape, dtype=np.float32)
    host_lib.wkv_host_bf16_to_float(out.ctypes.data, back.ctypes.data, x.size)
    assert np.array_equal(back[~nan], torch.from_numpy(want.view(np.int16)).view(torch.bfloat16).float().numpy()[~nan])


# ----------------------------------------------------------------------------- compile report
def test_compile_report_every_instantiation_compiles_without_spills(report):
    seen = set()
    for row in report:
        cfg = dict(p.split("=") for p in row["config"].split())
        if "kind" in cfg:
            continue  # a training kernel: the next test
        dtype, split = getattr(torch, cfg["dtype"]), int(cfg["SPLIT"])
        seen.add((dtype, split))
        assert row["impl"] == "cupy_cuda" and row["kernel"] == "bi_wkv7_kernel"
        assert 0 < row["registers"] <= 255, row
        assert row["local_bytes"] == 0 and row["spill_bytes"] == 0, f"spills/stack: {row}"
        # shared memory is exactly the documented staging layout, and leaves room for 4 blocks per SM
        assert row["shared_bytes"] == mod.shared_bytes(dtype, 64, split), row
        assert row["shared_bytes"] <= 48 * 1024
        assert row["compiler"].startswith(("nvrtc", "nvcc"))
    assert seen == {(dt, s) for dt in mod.DTYPES for s in mod.SPLITS}


def test_compile_report_training_kernels_compile_without_spills(report):
    seen = set()
    for row in report:
        cfg = dict(p.split("=") for p in row["config"].split())
        if "kind" not in cfg:
            continue  # an inference kernel: the test above
        dtype = getattr(torch, cfg["dtype"])
        assert row["local_bytes"] == 0 and row["spill_bytes"] == 0, f"spills/stack: {row}"
        assert 0 < row["registers"] <= 255 and int(cfg["CP"]) == _train.checkpoint_tokens(dtype)
        if cfg["kind"] == "bwd":
            assert row["kernel"] == _train.BWD_KERNEL and row["shared_bytes"] == 4 * (9 * 64 + 2), row
            seen.add((dtype, "bwd"))
        else:
            split = int(cfg["SPLIT"])
            assert row["kernel"] == _train.FWD_KERNEL
            assert row["shared_bytes"] == mod.shared_bytes(dtype, 64, split), row
            seen.add((dtype, split))
        print(f"{row['name']:<45} regs {row['registers']:>3}  smem {row['shared_bytes']:>5}  spills 0")
    assert seen == {(dt, k) for dt in mod.DTYPES for k in (*mod.SPLITS, "bwd")}


def test_compile_report_nvcc_agrees(report, nvcc_agrees):
    nvcc_agrees(mod, report)


# ----------------------------------------------------------------------------- Python side
def test_registration():
    rec = get_impl("bi_wkv7", "cupy_cuda")
    assert rec.backend == "cupy" and rec.devices == ("cuda",) and rec.priority == 25
    assert rec.head_sizes == (64,) and set(rec.dtypes) == set(mod.DTYPES) and rec.accepts_out
    assert rec.supports(torch.bfloat16, 64)[0] and not rec.supports(torch.bfloat16, 128)[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU explanation")
def test_unavailable_without_gpu_says_why():
    ok, why = mod._check(torch.device("cuda"))
    assert not ok and ("cupy" in why)
    ok, why = get_impl("bi_wkv7", "cupy_cuda").available("cuda")
    assert not ok and why
    assert not get_impl("bi_wkv7", "cupy_cuda").available("cpu")[0]


def test_pick_split_fills_the_gpu_at_batch_1():
    # A-RWKV-B: 12 heads. Batch 1 must not leave 120 of 132 SMs idle; batch 8 keeps whole rows.
    s1 = mod.pick_split(12, 132)
    assert s1 == 8 and 12 * s1 >= 90
    assert mod.pick_split(96, 132) == 1
    for bh in (1, 3, 12, 24, 48, 96, 200, 1000):
        s = mod.pick_split(bh, 132)
        assert s in mod.SPLITS
        best = min(mod.predicted_step_cycles(bh, 132, t) for t in mod.SPLITS)
        assert mod.predicted_step_cycles(bh, 132, s) <= best / 0.9
    with pytest.raises(ValueError, match="bh"):
        mod.pick_split(0, 132)


def test_validation_names_the_argument():
    """The module's own check (the shared argument checks: tests/impls/test_gpu_tooling.py)."""
    x = bi_wkv7_inputs(1, 3, 1, 64, dtype=torch.float32)
    with pytest.raises(ValueError, match="^split:"):
        mod.cupy_cuda(**{n: x[n] for n in ARGS}, split=3)


# ----------------------------------------------------------------------------- on a GPU
def _gpu_ready() -> bool:
    return torch.cuda.is_available() and mod._check(torch.device("cuda"))[0]


@pytest.mark.skipif(not _gpu_ready(), reason="needs a CUDA GPU and a working CuPy")
@pytest.mark.parametrize("dtype", mod.DTYPES)
@pytest.mark.parametrize("T", [1, 7, 20, 129])
def test_gpu_matches_reference_every_split(dtype, T):
    x = bi_wkv7_inputs(2, T, 3, 64, dtype=dtype, device="cuda", seed=T)
    ref = reference_bi_wkv7(*[x[n] for n in ARGS], x["g"])
    for split in (None, *mod.SPLITS):
        out = torch.full_like(x["r"], float("nan"))
        y = mod.cupy_cuda(**{n: x[n] for n in ARGS}, g=x["g"], out=out, split=split)
        assert y.data_ptr() == out.data_ptr()
        acc = compare(y, ref, dtype)
        assert acc.passed, f"split={split}: rel_err {acc.rel_err:.3e}"
    y = mod.cupy_cuda(**{n: x[n] for n in ARGS})
    assert compare(y, reference_bi_wkv7(*[x[n] for n in ARGS]), dtype).passed


@pytest.mark.skipif(not _gpu_ready(), reason="needs a CUDA GPU and a working CuPy")
def test_gpu_runs_on_torch_current_stream():
    """Launched on torch's current stream: ordered after work queued there before it."""
    x = bi_wkv7_inputs(1, 300, 2, 64, dtype=torch.bfloat16, device="cuda", seed=1)
    r_late = torch.zeros_like(x["r"])
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)  # keep the side stream busy; r arrives only after it
        r_late.copy_(x["r"])
        y = mod.cupy_cuda(r=r_late, **{n: x[n] for n in ARGS[1:]}, g=x["g"])
    side.synchronize()
    ref = reference_bi_wkv7(*[x[n] for n in ARGS], x["g"])
    assert compare(y, ref, torch.bfloat16).passed  # a launch on another stream would have read r = 0
