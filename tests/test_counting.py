"""Counted FLOPs and bytes (wkvbench.counting) and the op records' formulas held against them."""

from __future__ import annotations

import os

import pytest
import torch

from wkvbench import counting
from wkvbench.opspec import get_op

try:  # a module global: the simulator swaps the global ``cuda`` of a kernel for its fake module
    from numba import cuda
except ImportError:  # pragma: no cover
    cuda = None

needs_interpreter = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="Triton bytes are counted in the interpreter"
)


def test_count_torch_is_exact_on_known_ops():
    a, b = torch.ones(3, 4), torch.ones(4, 5)

    def fn(a, b):
        return torch.exp(a @ b) + 1.0

    out, c = counting.count_torch(fn, a, b)
    assert out.shape == (3, 5)
    assert c.matmul_flops == 2 * 3 * 4 * 5
    assert c.pointwise_flops == 2 * 15  # exp and add, one per output element
    # mm reads 12+20 floats, writes 15; exp reads and writes 15; add reads and writes 15
    assert c.op_bytes == 4 * (12 + 20 + 15 + 2 * 15 + 2 * 15)
    assert c.ops["mm"] == 120


def test_count_torch_counts_fused_multiply_add_twice_and_no_copies():
    x = torch.ones(10)
    _, c = counting.count_torch(lambda x: torch.addcmul(x, x, x).clone(), x)
    assert c.flops == 20


@needs_interpreter
def test_triton_counter_counts_unmasked_lanes_and_distinct_addresses():
    import triton
    import triton.language as tl

    @triton.jit
    def twice(x, y, n, BLOCK: tl.constexpr):
        offs = tl.arange(0, BLOCK)
        m = offs < n
        v = tl.load(x + offs, mask=m, other=0.0)
        v2 = tl.load(x + offs, mask=m, other=0.0)  # a re-read: issued bytes, not distinct ones
        tl.store(y + offs, v + v2, mask=m)

    x, y = torch.ones(10), torch.empty(10)
    _, mem = counting.count_triton(lambda: twice[(1,)](x, y, 10, BLOCK=16))
    assert (mem.load_bytes, mem.store_bytes, mem.loads, mem.stores) == (80, 40, 2, 1)
    assert (mem.distinct_load_bytes, mem.distinct_store_bytes) == (40, 40)
    with counting.triton_counter(counting.tensor_ranges(x, y)) as mem:
        twice[(1,)](x, y, 7, BLOCK=16)
    assert mem.io_distinct_bytes == 2 * 7 * 4
    assert mem.bytes == 3 * 7 * 4


@pytest.mark.skipif(
    cuda is None or os.environ.get("NUMBA_ENABLE_CUDASIM") != "1", reason="Numba bytes are counted in the simulator"
)
def test_numba_counter_counts_global_element_accesses():
    import numpy as np

    @cuda.jit
    def twice(x, y, n):
        i = cuda.grid(1)
        if i < n:
            y[i] = x[i] + x[i]  # two reads of one element: issued 8 bytes, distinct 4

    x, y = np.ones(10, dtype=np.float32), np.zeros(10, dtype=np.float32)
    dx, dy = cuda.to_device(x), cuda.to_device(y)
    _, mem = counting.count_numba(lambda: twice[1, 16](dx, dy, 7))
    assert (mem.load_bytes, mem.store_bytes, mem.loads, mem.stores) == (56, 28, 14, 7)
    assert (mem.distinct_load_bytes, mem.distinct_store_bytes) == (28, 28)
    assert dy.copy_to_host()[:7].tolist() == [2.0] * 7


def test_triton_counter_refuses_without_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"), counting.triton_counter():
        pass
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "0")
    with pytest.raises(RuntimeError, match="NUMBA_ENABLE_CUDASIM"), counting.numba_counter():
        pass


def test_count_call_rejects_bad_arguments():
    with pytest.raises(ValueError, match="op"):
        counting.count_call("network", "torch_loop", {"B": 1, "F": 8})
    with pytest.raises(ValueError, match="impl"):
        counting.count_call("bi_wkv7", "no_such", {"B": 1, "T": 2, "H": 1, "N": 16})
    with pytest.raises(ValueError, match="op"):
        counting.per_token_head("network", {})


# Each formula of the op records, against a count. "near": within 10%. Otherwise the reason is
# written beside the bound the count must stay inside.
FLOP_CHECKS = [
    ("bi_wkv7", "torch_loop", {"B": 1, "T": 4, "H": 1, "N": 16}, "near"),
    ("attention", "torch_eager", {"B": 1, "H": 1, "T": 16, "D": 16}, "near"),
    ("attention", "sdpa_math", {"B": 1, "H": 1, "T": 16, "D": 16}, "near"),
    ("bi_selective_scan", "torch_loop", {"B": 1, "D": 8, "T": 8, "N": 16}, "near"),
    # The chunked form computes L x L intra-chunk matrices (L = 32 on a CPU): O(L) work per token
    # beyond the recurrence that the formula counts. The formula is the op's work, not this one's.
    ("bi_wkv7", "torch_chunked", {"B": 1, "T": 64, "H": 1, "N": 16}, (1.5, 16.0)),
]


@pytest.mark.parametrize("op,impl,shape,bound", FLOP_CHECKS, ids=lambda x: x if isinstance(x, str) else None)
def test_flop_formula_against_count(op, impl, shape, bound):
    row = counting.count_call(op, impl, shape)
    ratio = row["counted_flops"] / get_op(op).flops(shape)
    lo, hi = (0.9, 1.1) if bound == "near" else bound
    assert lo <= ratio <= hi, (op, impl, ratio, row["counted"])


# Bytes: the formula is the minimum (each input read once, the output written once). The kernels'
# distinct I/O bytes must match it; issued bytes are larger (re-reads across value blocks and
# programs, which a real L1/L2 absorbs) and are reported, not bounded.
BYTE_CHECKS = [
    ("bi_wkv7", "triton_recurrent", {"B": 1, "T": 2, "H": 1, "N": 64}),
    ("bi_wkv7", "triton_chunked", {"B": 1, "T": 2, "H": 1, "N": 64}),
    # The scan's formula leaves out the [D, N] parameters and [D] vectors (small beside [B, D, T])
    ("bi_selective_scan", "triton", {"B": 1, "D": 8, "T": 8, "N": 4}),
]


@needs_interpreter
@pytest.mark.parametrize("op,impl,shape", BYTE_CHECKS, ids=lambda x: x if isinstance(x, str) else None)
def test_byte_formula_against_distinct_io_bytes(op, impl, shape):
    row = counting.count_call(op, impl, shape)
    assert row["io_distinct_bytes"] == pytest.approx(row["formula_bytes"], rel=0.1)
    assert row["counted_bytes"] >= row["io_distinct_bytes"]
    assert row["bytes_per_token_head"] >= row["min_bytes_per_token_head"] * 0.9


# The CUDA C kernels, counted in the host emulation (needs g++; WKVBENCH_ALLOW_NO_CXX=1 turns the
# failure without one into a skip, as for the kernels' own host tests). cupy_cuda's fp32 partial
# lives in y for float32 (read back: issued above distinct); catflip's count adds its PyTorch ops.
CUDA_C_BYTE_CHECKS = [
    ("cupy_cuda", torch.float32),
    ("cupy_cuda", torch.bfloat16),
    ("audiorwkv_catflip", torch.float32),
]


def count_cuda_c(impl: str, shape: dict, dtype: torch.dtype = torch.float32, mode: str = "fwd") -> dict:
    from wkvbench.hostemu.build import NoCompiler

    try:
        return counting.count_call("bi_wkv7", impl, shape, dtype, mode=mode)
    except NoCompiler as exc:
        if os.environ.get("WKVBENCH_ALLOW_NO_CXX") == "1":
            pytest.skip(f"{exc} (WKVBENCH_ALLOW_NO_CXX=1 allows the skip)")
        pytest.fail(f"{exc}; counting the CUDA C kernels needs it (WKVBENCH_ALLOW_NO_CXX=1 to skip)", pytrace=False)


@pytest.mark.parametrize("impl,dtype", CUDA_C_BYTE_CHECKS, ids=lambda x: str(x).replace("torch.", ""))
def test_cuda_c_byte_formula_against_distinct_io_bytes(impl, dtype):
    B, T, H, N = 1, 2, 1, 64
    row = count_cuda_c(impl, {"B": B, "T": T, "H": H, "N": N}, dtype)
    es = torch.empty(0, dtype=dtype).element_size()
    assert row["formula_bytes"] == (7 * N + 1) * es * B * T * H
    assert row["io_distinct_bytes"] == pytest.approx(row["formula_bytes"], rel=0.1)
    assert row["counted_bytes"] >= row["distinct_bytes"] >= row["io_distinct_bytes"]
    assert row["bytes_per_token_head"] >= row["min_bytes_per_token_head"] * 0.9
    c = row["counted"]
    if impl == "audiorwkv_catflip":
        # one causal launch over the 2B sequences (inputs and flipped copies): each of r, w, k, v, a, b
        # read once, y written once -- the kernel's own bytes, exactly; cat/flip/lerp are PyTorch ops
        assert (c["load_bytes"], c["store_bytes"], c["atomic_bytes"]) == (
            6 * 2 * B * T * H * N * es,
            2 * B * T * H * N * es,
            0,
        )
        assert c["torch_op_bytes"] > 0 and [name for name, _ in c["launches"]] == ["wkv7_catflip_fwd<float, 64, false>"]
    else:
        assert (
            c["torch_op_bytes"] == 0 and len(c["launches"]) == 1 and c["launches"][0][0].startswith("bi_wkv7_kernel<")
        )
        # every output element written at least once (for 16-bit I/O also the fp32 partials)
        assert c["store_bytes"] >= B * T * H * N * es


def test_cuda_c_training_step_counts_both_launches_and_the_backward_atomics():
    B, T, H, N = 1, 2, 1, 64
    row = count_cuda_c("cupy_cuda", {"B": B, "T": T, "H": H, "N": N}, mode="fwd_bwd")
    c = row["counted"]
    assert [name.split("<")[0] for name, _ in c["launches"]] == ["bi_wkv7_train_kernel", "bi_wkv7_bwd_kernel"]
    # the backward adds into zeroed fp32 buffers: exactly two atomicAdds per element of dr..db and dg
    assert c["atomics"] == 2 * (6 * B * T * H * N + B * T * H) and c["atomic_bytes"] == 4 * c["atomics"]
    assert row["formula_bytes"] is None and row["formula_flops"] == get_op("bi_wkv7").flops_in(row["shape"], "fwd_bwd")
    row = count_cuda_c("audiorwkv_catflip", {"B": B, "T": T, "H": H, "N": N}, mode="fwd_bwd")
    kinds = [name.split("<")[0] + ("_save" if "true" in name else "") for name, _ in row["counted"]["launches"]]
    assert kinds == ["wkv7_catflip_fwd_save", "wkv7_catflip_bwd"] and row["counted"]["torch_op_bytes"] > 0


def test_training_flop_formula_against_count():
    # fwd_bwd: the forward's FLOPs times 1 + bwd_flops_factor (2), against the loop's autograd. The
    # loop's backward also turns each step's gradient of a sliced input into a full-size tensor
    # (select_backward) and adds those up: O(T) adds per step that the op's backward does not need
    # (the counted ``add`` FLOPs grow 5.6x from T = 4 to 16) -- under 10% at T = 4,
    # N = 64 (1.08), growing with T (1.16 at T = 16) and as N shrinks (1.14 at T = 4, N = 16).
    shape = {"B": 1, "T": 4, "H": 1, "N": 64}
    row = counting.count_call("bi_wkv7", "torch_loop", shape, mode="fwd_bwd")
    assert 1.0 <= row["counted_flops"] / get_op("bi_wkv7").flops_in(shape, "fwd_bwd") <= 1.1, row["counted"]
    with pytest.raises(ValueError, match="mode"):
        counting.count_call("bi_wkv7", "torch_loop", shape, mode="bwd")


def test_count_cli_counts_cuda_c_or_says_why_not(capsys, monkeypatch):
    from wkvbench import cli
    from wkvbench.hostemu import build

    argv = ["count", "--op", "bi_wkv7", "--tokens", "2", "--dim", "H=1", "--impl", "audiorwkv_catflip"]
    count_cuda_c("audiorwkv_catflip", {"B": 1, "T": 2, "H": 1, "N": 64})  # g++ is here (or the skip applies)
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "audiorwkv_catflip" in out and "1,796" in out and "CUDA C host-emulated" in out
    # a launch over the counting cap (16 sequences x 12 heads: over 16,384 threads) is refused, exit 2
    assert cli.main(["count", "--op", "bi_wkv7", "--tokens", "2", "--batch", "16", "--impl", "cupy_cuda"]) == 2
    assert "cupy_cuda: not counted: shape: launch" in capsys.readouterr().err
    monkeypatch.setattr(build, "find_gxx", lambda: None)
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "audiorwkv_catflip: not counted: g++ not found" in out and "Traceback" not in out


def test_attention_byte_formula_is_below_eager_traffic():
    # No attention kernel runs on a CPU with counted bytes; eager attention writes and reads the
    # T x T scores, so its traffic is above the flash-attention minimum the formula gives.
    shape = {"B": 1, "H": 1, "T": 16, "D": 16}
    row = counting.count_call("attention", "torch_eager", shape)
    assert row["counted_bytes"] > row["formula_bytes"]


@needs_interpreter
def test_count_cli_prints_counted_against_formula(capsys):
    from wkvbench import cli

    rc = cli.main(
        [
            "count",
            "--op",
            "bi_wkv7",
            "--tokens",
            "2",
            "--dim",
            "H=1",
            "--impl",
            "torch_loop",
            "--impl",
            "triton_recurrent",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "B/tok-head min" in out and "triton_recurrent" in out
    assert "1,796" in out  # (7 * 64 + 1) * 4 bytes per (token, head) at float32
    with pytest.raises(SystemExit):
        cli.main(["count", "--op", "bi_wkv7", "--tokens", "2", "--dim", "H=0"])


def test_network_flop_estimate_against_count():
    # The network's estimate (per-token weights, head, depth x mixer; elementwise left out) against
    # the counted forward, norms and activations included: A-RWKV-T with the loop mixer.
    from wkvbench.presets import get_preset

    spec, model = get_op("network"), get_preset("A-RWKV-T")
    shape = spec.shape_for(model, 1, 16)
    case = spec.prepare(model, shape, torch.float32, torch.device("cpu"), 0, None)
    inputs = spec.make_inputs(shape, torch.float32, torch.device("cpu"), 0)
    _, c = counting.count_torch(case.bind("torch_loop"), **inputs)
    assert c.flops == pytest.approx(spec.flops(shape), rel=0.1)
