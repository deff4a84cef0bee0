"""The interpreted Triton Bi-WKV7 kernels give the same results whatever order their programs run in.

The Triton interpreter runs a launch's programs one at a time in grid order, so a kernel whose
programs communicate (the chunked forward's two-program ticket merge, the backwards' ``atomic_add``
into shared gradient buffers) is only ever seen in one order on the CPU. The ``program_order``
fixture (tests/impls/conftest.py) runs the programs reversed and shuffled; every kernel -- the
recurrent and chunked forwards, the per-token backward and the chunked backward -- must give the
results of the grid order within the dtype's bar. The interleavings of two programs running at
the same time are checked by the model of the ticket handshake (test_triton_handshake_model.py).
"""

from __future__ import annotations

import pytest
import torch

from wkvbench.accuracy import compare
from wkvbench.impls.bi_wkv7_triton import bwd as tt
from wkvbench.impls.bi_wkv7_triton import fwd as tk
from wkvbench.impls.bi_wkv7_triton.chunked_bwd import chunked_backward
from wkvbench.inputs import bi_wkv7_inputs

ORDERS = ("reversed", "shuffled")


def _inputs(T: int, dtype: torch.dtype) -> dict:
    return bi_wkv7_inputs(1, T, 1, 64, dtype=dtype, seed=T, variant="realistic")


def _backward_inputs(T: int, dtype: torch.dtype) -> tuple[dict, torch.Tensor, torch.Tensor]:
    x = _inputs(T, dtype)
    dy = torch.randn(x["r"].shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    _, states = tk.bi_wkv7_chunked(**x, block_v=64, save=True)
    return x, dy, states


# name -> (T, run(inputs) -> tuple of outputs); tiny shapes with several programs per launch
KERNELS = {
    "recurrent_forward": (5, lambda x: (tk.bi_wkv7_recurrent(**x, block_v=16),)),  # 4 programs
    "chunked_forward": (20, lambda x: (tk.bi_wkv7_chunked(**x, block_v=32, chunk_len=16),)),  # 2 x 2, 2 chunks
    "recurrent_backward": (2, lambda xb: tt.recurrent_backward(**xb[0], dy=xb[1], states=xb[2], block_v=32)),
    "chunked_backward": (20, lambda xb: chunked_backward(**xb[0], dy=xb[1], states=xb[2])),
}


CASES = [
    *((k, torch.float32) for k in KERNELS),
    ("chunked_forward", torch.bfloat16),
    ("chunked_backward", torch.float16),
]


@pytest.mark.parametrize("kernel,dtype", CASES, ids=lambda p: str(p).replace("torch.", ""))
def test_results_do_not_depend_on_program_order(program_order, kernel, dtype):
    T, run = KERNELS[kernel]
    x = _backward_inputs(T, dtype) if kernel.endswith("backward") else _inputs(T, dtype)
    program_order.order = "grid"
    base = run(x)
    grid_ran = list(program_order.ran)
    assert len(grid_ran) >= 2, "the launch must have several programs"
    for i, order in enumerate(ORDERS):
        program_order.order, program_order.seed = order, i
        out = run(x)
        assert sorted(program_order.ran) == sorted(grid_ran) and program_order.ran != grid_ran
        for n, (got, want) in enumerate(zip(out, base, strict=True)):
            acc = compare(got, want.double(), dtype)
            assert acc.finite and acc.passed, f"{order}: output {n} rel_err {acc.rel_err:.2e} > bar {acc.tol:.0e}"
