"""Tests of ``cupy_cuda``'s training path (wkvbench/impls/bi_wkv7_cupy/train.py, the training forward
in bi_wkv7_cupy.cu and the backward kernel bi_wkv7_cupy_bwd.cu).

CuPy cannot run without a GPU, so the kernels run in the host emulation: the SAME .cu files are
compiled with g++ after ``wkvbench/hostemu/cuda_shim.h`` (``hostemu/bi_wkv7_train_host.cpp``) and injected
as the Function's launcher, so the whole autograd Function -- training forward with its saves,
backward kernel, fp32 accumulation and conversion -- runs on the CPU against float64 autograd of
the reference (``wkvbench.gradcheck``): T = 1, 15, 16, 17, 50 in float32, and every I/O dtype at
T = 17 and 50 with and without the gate, each case running the variants realistic / strong_decay /
weak_decay as one batch of three and judged per variant. Also: the saved checkpoints and ``sa``
against a float64 hand expansion (T % CP != 0 included), the training forward's ``y`` against the
inference kernel bit for bit, and mutants of the backward that must fail. The training kernels'
compile report (sm_90, zero spills) is checked with the inference kernels' in test_bi_wkv7_cupy.py.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
import torch

from wkvbench import gradcheck
from wkvbench.accuracy import TOLERANCE, compare
from wkvbench.hostemu import launch
from wkvbench.impls import _cupy, bi_wkv7_catflip, bi_wkv7_cupy
from wkvbench.impls.bi_wkv7_cupy import train
from wkvbench.inputs import bi_wkv7_inputs
from wkvbench.reference import bi_wkv7 as reference_bi_wkv7
from wkvbench.registry import get_impl

ARGS = ("r", "w", "k", "v", "a", "b")
VARIANTS = ("realistic", "strong_decay", "weak_decay")
DTYPE_CODE = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}
SRC = bi_wkv7_cupy.KERNEL_PATH.parent


# ----------------------------------------------------------------------------- host emulation
def load_host(cuda_host, out_dir: Path, source_dir: Path = SRC) -> launch.CupyLauncher:
    """``train.Launcher`` running the training kernels built from ``source_dir``; records the launches."""
    lib = cuda_host("bi_wkv7_train_host.cpp", out_dir, source_dir)
    return launch.CupyLauncher(train=launch.declare(lib, "bi_wkv7_train_host.cpp"))


@pytest.fixture(scope="module")
def host(cuda_host, tmp_path_factory):
    return load_host(cuda_host, tmp_path_factory.mktemp("cupy_train_host"))


def variant_batch(T: int, dtype: torch.dtype, seed: int) -> dict:
    """One batch entry per variant, H = 1 (the loss separates over the batch: each is judged on its own)."""
    xs = [bi_wkv7_inputs(1, T, 1, 64, dtype=dtype, seed=seed + i, variant=v) for i, v in enumerate(VARIANTS)]
    return {n: torch.cat([x[n] for x in xs]) for n in (*ARGS, "g")}


def run_grads(launcher, inputs: dict, split=None, seed: int = 0):
    """(y, grads, reference y, reference grads) through ``gradcheck`` with the emulated Function."""
    dtype = inputs["r"].dtype
    names = gradcheck.grad_names("bi_wkv7", inputs)
    dy = gradcheck.make_dy(tuple(inputs["r"].shape), dtype, "cpu", seed)
    ref = gradcheck.reference_grads("bi_wkv7", inputs, dy)
    y, grads = gradcheck.implementation_grads(
        lambda **kw: train.bi_wkv7_train(**kw, launcher=launcher, split=split), inputs, names, dy
    )
    assert all(grads[n] is not None and grads[n].dtype == dtype for n in names)
    return y, grads, reference_bi_wkv7(**inputs), ref


def slice_errors(y, grads, y_ref, ref, dtype, i: int):
    """(output rel_err, GradAccuracy) of batch entry ``i``."""
    sl = slice(i, i + 1)
    acc = gradcheck.compare_grads({n: gr[sl] for n, gr in grads.items()}, {n: r[sl] for n, r in ref.items()}, dtype)
    return compare(y[sl], y_ref[sl], dtype).rel_err, acc


# dtype, T, gate, split: float32 at every T (the gate off at 15 and 17), every dtype at T = 17 and 50
# with and without the gate; SPLIT (None: pick_split's choice, 8 at B*H = 3) varied over the cases.
CASES = [
    *[(torch.float32, T, T not in (15, 17), s) for T, s in ((1, None), (15, 1), (16, 2), (17, 4), (50, None))],
    (torch.float32, 17, True, 1),
    (torch.float32, 50, False, 2),
    *[(dt, T, gate, s) for dt, s in ((torch.bfloat16, 4), (torch.float16, 1))
      for T in (17, 50) for gate in (True, False)],
]  # fmt: skip
WORST: dict[str, tuple[float, str]] = {}


@pytest.mark.parametrize("dtype,T,gate,split", CASES, ids=lambda p: str(p).replace("torch.", ""))
def test_emulated_training_matches_float64_autograd(host, dtype, T, gate, split):
    x = variant_batch(T, dtype, seed=10 * T + gate)
    inputs = {n: x[n] for n in ARGS} | ({"g": x["g"]} if gate else {})
    host.calls.clear()
    res = run_grads(host, inputs, split)
    kinds = [c[0].split("<")[0] for c in host.calls]
    assert kinds == [train.FWD_KERNEL, train.BWD_KERNEL], f"one forward and one backward launch, got {kinds}"
    assert ("dg" in gradcheck.compare_grads(res[1], res[3], dtype).errors) == gate
    failures = []
    for i, variant in enumerate(VARIANTS):
        fwd, acc = slice_errors(*res, dtype, i)
        key = str(dtype).replace("torch.", "")
        if acc.worst_err > WORST.get(key, (0.0, ""))[0]:
            WORST[key] = (acc.worst_err, f"{acc.label()} (T={T}, {variant}, gate={gate})")
        if not (fwd <= TOLERANCE[dtype] and acc.passed):
            failures.append(f"{variant}: y {fwd:.2e} (bar {TOLERANCE[dtype]:.0e}), worst {acc.label()}")
    print(f"worst gradient so far: {WORST}")
    assert not failures, f"gradient bar {gradcheck.grad_tolerance(dtype):.0e}: " + "; ".join(failures)


def test_emulated_training_several_batches_and_heads(host):
    """B = 2, H = 3 (block index = (dir * B + b) * H + h; heads interleaved in the token rows)."""
    x = bi_wkv7_inputs(2, 9, 3, 64, dtype=torch.float32, seed=12, variant="mixed")
    y, grads, y_ref, ref = run_grads(host, {n: x[n] for n in (*ARGS, "g")}, split=2)
    assert compare(y, y_ref, torch.float32).rel_err <= TOLERANCE[torch.float32]
    acc = gradcheck.compare_grads(grads, ref, torch.float32)
    assert acc.passed, acc.errors


@pytest.mark.parametrize(
    "old,new,grad",
    [
        ("dsai * s_a[j]", "0.f", "a"),  # the dsa a^T hand-over of the row group's dS
        ("dir == 0 ? rq : -rq", "rq", "g"),  # the reverse direction's sign in dg
    ],
)
def test_mutant_backward_fails(cuda_host, tmp_path, old, new, grad):
    """A backward missing one term must fail the float64 comparison (the forward stays exact)."""
    src = train.BWD_PATH.read_text()
    assert src.count(old) == 1, "the mutation no longer applies"
    for f in (bi_wkv7_cupy.KERNEL_PATH, _cupy.INCLUDE_DIR / "wkv_io.cuh"):
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / train.BWD_PATH.name).write_text(src.replace(old, new))
    mutant = load_host(cuda_host, tmp_path, source_dir=tmp_path)
    x = bi_wkv7_inputs(1, 17, 2, 64, dtype=torch.float32, seed=4)
    y, grads, y_ref, ref = run_grads(mutant, {n: x[n] for n in (*ARGS, "g")})
    assert compare(y, y_ref, torch.float32).rel_err <= TOLERANCE[torch.float32], (
        "the mutation touches only the backward"
    )
    acc = gradcheck.compare_grads(grads, ref, torch.float32)
    assert acc.errors[f"d{grad}"] > 100 * gradcheck.GRAD_TOLERANCE[torch.float32], f"the mutant passed: {acc.errors}"


# ----------------------------------------------------------------------------- what the forward saves
def hand_states(x: dict, reverse: bool):
    """float64 hand expansion of one direction of batch 0, head 0: (sa per token, state after each step)."""
    r, w, k, v, a, b = (x[n][0, :, 0].double() for n in ARGS)
    T = r.shape[0]
    S = torch.zeros(64, 64, dtype=torch.float64)
    sa, states = torch.zeros(T, 64, dtype=torch.float64), []
    for t in reversed(range(T)) if reverse else range(T):
        sa[t] = S @ a[t]
        S = S * torch.exp(-torch.exp(w[t]))[None, :] + torch.outer(sa[t], b[t]) + torch.outer(v[t], k[t])
        states.append(S)
    return sa, states


@pytest.mark.parametrize("dtype,T,split", [(torch.float32, 13, 4), (torch.bfloat16, 20, 8), (torch.float32, 3, 1)])
def test_saved_checkpoints_and_sa_match_hand_expansion(host, dtype, T, split):
    """Slot c holds the state after step min(c*CP + CP - 1, T-1) of each direction; sa is per token."""
    x = bi_wkv7_inputs(1, T, 1, 64, dtype=dtype, seed=T)
    y, xs, sa, ck = train.forward_save(*[x[n] for n in ARGS], x["g"], host, split=split)
    cp = train.checkpoint_tokens(dtype)
    assert ck.shape == (2, 1, 1, -(-T // cp), 64, 64) and sa.shape == (2, 1, T, 1, 64)
    assert sa.nbytes + ck.nbytes == train.saved_bytes(1, T, 1, 64, dtype)
    for d in (0, 1):
        sa_ref, states = hand_states(x, reverse=d == 1)
        assert float((sa[d, 0, :, 0].double() - sa_ref).norm() / sa_ref.norm()) < 1e-5
        for c in range(ck.shape[2]):
            want = states[min(c * cp + cp - 1, T - 1)]
            assert float((ck[d, 0, 0, c].double() - want).norm() / want.norm()) < 1e-5, (d, c)


def test_training_forward_output_equals_inference_kernel(host, cuda_host, tmp_path):
    """SAVE adds stores only: the training forward's y is the inference kernel's, bit for bit."""
    lib = cuda_host("bi_wkv7_host.cpp", tmp_path, SRC)
    lib.wkv_host_bi_wkv7.argtypes = [ctypes.c_int, ctypes.c_int, *[ctypes.c_void_p] * 9, *[ctypes.c_int] * 3]
    for dtype, split in ((torch.float16, 2), (torch.float32, 8)):
        x = bi_wkv7_inputs(2, 11, 1, 64, dtype=dtype, seed=6)
        y_train = train.forward_save(*[x[n] for n in ARGS], x["g"], host, split=split)[0]
        y = torch.full_like(x["r"], float("nan"))
        part = y if dtype == torch.float32 else torch.empty(y.shape, dtype=torch.float32)
        ptrs = [x[n].data_ptr() for n in (*ARGS, "g")]
        assert lib.wkv_host_bi_wkv7(DTYPE_CODE[dtype], split, *ptrs, y.data_ptr(), part.data_ptr(), 2, 11, 1) == 0
        assert torch.equal(y_train, y)


def test_saved_bytes_at_most_catflip():
    for dtype in bi_wkv7_cupy.DTYPES:
        per_token = train.saved_bytes(1, 1024, 1, 64, dtype) / (2 * 1024)  # per (token, head) and direction
        assert per_token == (1280 if dtype != torch.float32 else 2304)
        for T in (1, 7, 16, 17, 50, 333):
            assert train.saved_bytes(2, T, 3, 64, dtype) <= bi_wkv7_catflip.saved_bytes(2, T, 3, 64, dtype)
    assert bi_wkv7_cupy.saved_bytes(2, 17, 3) == train.saved_bytes(2, 17, 3)


# ----------------------------------------------------------------------------- Python side
def test_out_refused_with_grad_and_registration(host):
    x = bi_wkv7_inputs(1, 4, 1, 64, dtype=torch.float32)
    ins = [x[n].clone().requires_grad_() for n in ARGS]
    with pytest.raises(ValueError, match="^out:"):
        train.bi_wkv7_train(*ins, launcher=host, out=torch.empty_like(x["r"]))
    rec = get_impl("bi_wkv7", "cupy_cuda")
    assert rec.backward and rec.accepts_out


def test_gradient_flows_only_where_asked(host):
    """Only w requires grad: y still carries a graph and dw matches float64 autograd."""
    x = bi_wkv7_inputs(1, 9, 1, 64, dtype=torch.float32, seed=8)
    w = x["w"].clone().requires_grad_()
    y = train.bi_wkv7_train(x["r"], w, *[x[n] for n in ARGS[2:]], x["g"], launcher=host)
    (dw,) = torch.autograd.grad(y.sum(), [w])
    w64 = x["w"].double().requires_grad_()
    (dw_ref,) = torch.autograd.grad(reference_bi_wkv7(x["r"], w64, *[x[n] for n in ARGS[2:]], x["g"]).sum(), [w64])
    assert compare(dw, dw_ref, torch.float32).rel_err < 1e-5


# ----------------------------------------------------------------------------- on a GPU
def _gpu_ready() -> bool:
    return torch.cuda.is_available() and bi_wkv7_cupy._check(torch.device("cuda"))[0]


@pytest.mark.skipif(not _gpu_ready(), reason="needs a CUDA GPU and a working CuPy")
@pytest.mark.parametrize("dtype", bi_wkv7_cupy.DTYPES, ids=str)
@pytest.mark.parametrize("T", [1, 17, 64, 129])
def test_gpu_gradients_match_reference(dtype, T):
    x = bi_wkv7_inputs(2, T, 3, 64, dtype=dtype, device="cuda", seed=T)
    acc = gradcheck.check_grads("bi_wkv7", bi_wkv7_cupy.cupy_cuda, {n: x[n] for n in (*ARGS, "g")}, dtype)
    assert acc.passed, acc.errors
