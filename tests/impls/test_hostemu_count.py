"""The counting build of the host emulation (``wkvbench/hostemu/mem_counter.cpp``, ``hostemu/count.py``).

A hand-made kernel with known traffic gives exact counts: loads, stores (a 16-byte ``uint4``
through ``__ldg`` counting 16 bytes), an ``atomicAdd`` as one read-modify-write, a re-read that
adds issued bytes but no distinct ones, and shared memory and an unregistered buffer left out.
Without g++ these FAIL unless ``WKVBENCH_ALLOW_NO_CXX=1`` allows a skip. The CUDA C kernels'
counts against the op record's formula are in tests/test_counting.py.
"""

from __future__ import annotations

import ctypes

import pytest
import torch

from wkvbench.hostemu import count

KERNEL = r"""
#include "cuda_shim.h"

__global__ void traffic(const float* x, float* y, const uint4* q, uint4* p, float* acc, float* hidden, int n) {
    __shared__ float s[32];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    s[threadIdx.x] = 1.0f;  // shared memory: not counted
    __syncthreads();
    if (i < n) {
        // x[i] and x[i + 1]: every element of x read twice (issued 8 bytes, distinct 4); y stored once
        y[i] = x[i] * s[threadIdx.x] + x[(i + 1) % n];
        p[i] = __ldg(q + i);           // 16 loaded, 16 stored
        atomicAdd(acc, 1.0f);          // 4 read-modify-written
        hidden[i] = 2.0f;              // not registered: not counted
    }
}

extern "C" int run(const float* x, float* y, const uint4* q, uint4* p, float* acc, float* hidden, int n) {
    cuda_host::launch(&traffic, 2, 32, x, y, q, p, acc, hidden, n);
    return 0;
}
"""


@pytest.fixture(scope="module")
def counted(host_builder, tmp_path_factory):
    src = tmp_path_factory.mktemp("count_driver") / "traffic_count.cpp"
    text, _ = host_builder.rewrite_shared(KERNEL)
    src.write_text(text)
    lib = ctypes.CDLL(str(host_builder.build(str(src), count=True)))
    lib.run.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int]
    return lib, count.Counter(lib)


def test_counter_counts_a_hand_made_kernel_exactly(counted):
    lib, counter = counted
    n = 37  # two blocks of 32, the last 27 threads idle
    x, y = torch.arange(n, dtype=torch.float32), torch.zeros(n)
    q, p = torch.arange(4 * n, dtype=torch.int32), torch.zeros(4 * n, dtype=torch.int32)
    acc, hidden = torch.zeros(1), torch.zeros(n)
    counter.clear()
    ids = {name: counter.register(t.data_ptr(), t.numel() * t.element_size()) for name, t in
           {"x": x, "y": y, "q": q, "p": p, "acc": acc}.items()}  # fmt: skip
    assert lib.run(x.data_ptr(), y.data_ptr(), q.data_ptr(), p.data_ptr(), acc.data_ptr(), hidden.data_ptr(), n) == 0
    assert torch.equal(y, x + x.roll(-1)) and torch.equal(p, q) and acc.item() == n and hidden.eq(2).all()
    stats = {name: counter.stats(i) for name, i in ids.items()}  # {load, store, atomic} bytes, then accesses
    assert {name: st[:3] for name, st in stats.items()} == {
        "x": [8 * n, 0, 0],
        "y": [0, 4 * n, 0],
        "q": [16 * n, 0, 0],  # __ldg of a uint4: 16 bytes (g++ may issue it as four 4-byte loads)
        "p": [0, 16 * n, 0],
        "acc": [0, 0, 4 * n],  # one read-modify-write per thread
    }
    assert stats["x"][3] == 2 * n and stats["y"][4] == n and stats["acc"][5] == n
    assert counter.touched(ids["x"], 0, 4 * n).all() and not counter.touched(ids["x"], 1, 4 * n).any()
    assert counter.touched(ids["p"], 1, 16 * n).all() and not counter.touched(ids["p"], 0, 16 * n).any()
    assert counter.touched(ids["acc"], 0, 4).all() and counter.touched(ids["acc"], 1, 4).all()
    counter.clear()


def test_counter_refuses_overlapping_buffers(counted):
    _, counter = counted
    buf = torch.zeros(16)
    counter.clear()
    counter.register(buf.data_ptr(), 64)
    with pytest.raises(RuntimeError, match="overlap"):
        counter.register(buf.data_ptr() + 8, 8)
    counter.clear()


def test_count_call_refuses_what_it_cannot_count():
    x = {n: torch.zeros(1, 2, 1, 32) for n in ("r", "w", "k", "v", "a", "b")}
    with pytest.raises(ValueError, match="impl"):
        count.count_call("triton_recurrent", x)
    with pytest.raises(ValueError, match="r: .*N=64"):
        count.count_call("cupy_cuda", x)
