"""numba_cuda (fused recurrent Numba CUDA kernel) against the float64 reference.

Without a GPU the kernel runs in the Numba CUDA simulator (tests/conftest.py sets
NUMBA_ENABLE_CUDASIM=1), one Python thread per CUDA thread, so shapes stay tiny: N = 64,
T in {1, 6, 13} (odd T exercises the middle token both directions reach at the same step),
B*H <= 2. Every rows-per-block split (64: one block per head, 32, 16: four) is covered.
The sm_90 compile (registers, spills) of every kernel, the training ones included, is checked in
a clean subprocess without the simulator; the training path itself: test_bi_wkv7_numba_bwd.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wkvbench import accuracy, kernels, reference
from wkvbench.registry import get_impl

nb = pytest.importorskip("wkvbench.impls.bi_wkv7_numba")
if nb.cuda is None:
    pytest.skip(f"numba-cuda not installed: {nb._IMPORT_ERROR}", allow_module_level=True)

DEV = "cuda" if torch.cuda.is_available() and not nb.SIMULATOR else "cpu"
if DEV == "cpu" and not nb.SIMULATOR:
    pytest.skip("no GPU and NUMBA_ENABLE_CUDASIM is not set", allow_module_level=True)

IMPL = get_impl("bi_wkv7", "numba_cuda")
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _inputs(B, T, H, dtype, seed=0, variant="realistic", gate=True):
    from wkvbench.inputs import bi_wkv7_inputs

    return bi_wkv7_inputs(B, T, H, 64, dtype=dtype, device=DEV, seed=seed, variant=variant, gate=gate)


def _run(x, rows_per_block=None):
    def fn(**kw):
        return nb.numba_cuda(**kw, rows_per_block=rows_per_block)

    return accuracy.run_checked(fn, x, tuple(x["r"].shape), x["r"].dtype, accepts_out=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize(("B", "T", "H", "R"), [(1, 1, 2, 64), (2, 6, 1, 16), (1, 13, 1, 32)])
def test_matches_reference(dtype, B, T, H, R):
    x = _inputs(B, T, H, dtype, seed=T)
    y = _run(x, R)
    acc = accuracy.compare(y, reference.bi_wkv7(**x), dtype)
    assert y.dtype == dtype
    assert acc.passed, acc
    assert acc.rel_err <= accuracy.GOAL[dtype] * 2, acc  # a recurrence in fp32 is well inside the bar


def test_gate_none_is_one_half_and_strong_decay():
    x = _inputs(1, 13, 1, torch.float32, seed=3, variant="strong_decay", gate=False)
    y = _run(x, 64)
    acc = accuracy.compare(y, reference.bi_wkv7(**x), torch.float32)
    assert acc.passed, acc
    half = torch.full(x["r"].shape[:3], 0.5, dtype=torch.float32, device=DEV)
    assert torch.equal(y, _run({**x, "g": half}, 64))


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16), ids=("float16", "bfloat16"))
def test_low_precision_io_is_exact_widening_and_rne_narrowing(dtype):
    """The fp16/bf16 kernels must equal the fp32 kernel on the same (already rounded) values,
    rounded to nearest even by torch: this pins the in-kernel bf16 bit casts independently."""
    x = _inputs(1, 6, 1, dtype, seed=11)
    y = _run(x, 16)
    y32 = _run({n: t.float() for n, t in x.items()}, 16)
    assert torch.equal(y, y32.to(dtype))


def test_rows_per_block_variants_agree_and_public_api():
    import wkvbench

    x = _inputs(1, 6, 2, torch.float32, seed=5)
    assert nb.choose_rows_per_block(2) == 16
    y = wkvbench.bi_wkv7(**x, impl="numba_cuda")  # auto: R = 16, four blocks per head
    assert torch.equal(y, _run(x, 64))  # same arithmetic per row, only the split differs
    assert accuracy.compare(y, reference.bi_wkv7(**x), torch.float32).passed


def test_registration_and_availability(monkeypatch):
    assert IMPL.backend == "numba" and IMPL.head_sizes == (64,) and IMPL.priority == 15 and IMPL.backward
    assert set(IMPL.devices) == {"cuda", "cpu"} and IMPL.accepts_out
    assert set(IMPL.dtypes) == set(DTYPES)
    ok, why = IMPL.available(DEV)
    assert ok, why
    monkeypatch.setattr(nb, "SIMULATOR", False)
    ok, why = nb._check(torch.device("cpu"))
    assert not ok and "NUMBA_ENABLE_CUDASIM=1" in why
    monkeypatch.setattr(nb, "cuda", None)
    ok, why = nb._check(torch.device("cpu"))
    assert not ok and "numba-cuda not installed" in why


def test_bad_input_raises():
    x = _inputs(1, 2, 1, torch.float32)
    with pytest.raises(ValueError, match="rows_per_block"):
        nb.numba_cuda(**x, rows_per_block=48)
    with pytest.raises(ValueError, match="out"):
        nb.numba_cuda(**x, out=torch.empty(1, 2, 1, 32, device=DEV))
    with pytest.raises(ValueError, match="head size"):
        nb.numba_cuda(**{n: t[..., :32].contiguous() if t.dim() == 4 else t for n, t in x.items()})
    assert nb.choose_rows_per_block(12, 132) == 16 and nb.choose_rows_per_block(96, 132) == 32
    assert nb.choose_rows_per_block(132, 132) == 64


@pytest.mark.slow  # a compiler subprocess per kernel variant: a minute or more
def test_compile_report_sm90_no_spills():
    """compile_ptx for sm_90 in a clean subprocess (simulator off); ptxas -v for resources.

    Every kernel: inference, training forward and backward (256 threads: at most 255 registers,
    which the launch bounds guarantee), for each I/O dtype.
    """
    rows = kernels.report_module("wkvbench.impls.bi_wkv7_numba", cc=90, timeout=600)
    assert rows and all("error" not in row for row in rows), rows
    names = ("bi_wkv7_kernel", "bi_wkv7_fwd_save_kernel", "bi_wkv7_bwd_kernel")
    want = {(name, f"dtype={str(dt).replace('torch.', '')}") for name in names for dt in DTYPES}
    assert len(rows) == len(want) and {(row["kernel"], row["config"].split()[0]) for row in rows} == want
    for row in rows:
        assert row["impl"] == "numba_cuda" and row["compiler"].startswith("numba")
        bwd = row["kernel"] == "bi_wkv7_bwd_kernel"
        assert row["shared_bytes"] >= ((2 * 9 * 64 + 4 * 64) * 4 if bwd else 2 * 2 * 5 * 64 * 4), row
        if row["registers"] is not None:  # ptxas found: the state must stay in registers
            assert (128 if bwd else 64) < row["registers"] <= 255, row
            assert row["local_bytes"] == 0 and row["spill_bytes"] == 0, row
        else:
            assert row["local_bytes"] == 0, row
        print(f"{row['kernel']:<24} {row['config']:<42} regs {row['registers']}  smem {row['shared_bytes']}  spills 0")


@pytest.mark.skipif(not nb.SIMULATOR, reason="simulator only")
def test_simulator_shared_arrays_are_one_per_call_site_under_thread_races():
    """Every thread of a block must get the same shared array (the simulator's own check-then-set races)."""
    import threading
    import time

    from numba.cuda.simulator import kernelapi

    shared = kernelapi.FakeCUDAShared(0)

    class SlowDict(dict):
        def get(self, key, default=None):  # widen the check-then-set window to force the race
            res = dict.get(self, key, default)
            time.sleep(0.002)
            return res

    shared._allocations = SlowDict()
    got = []

    def site():
        got.append(shared.array((4,), np.float32))  # one call site for every thread

    threads = [threading.Thread(target=site) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 16 and all(a is got[0] for a in got)
