"""Bi-WKV7 as one fused recurrent Numba CUDA kernel: ``numba_cuda``.

The ``bi_wkv7`` op (docs/spec.md section 1), N = 64, float32/float16/bfloat16 I/O, fp32 state: the
fused recurrent class of the official RWKV-7 CUDA kernel (a thread owns one value row of the
state), both scan directions and the gate merge in one launch (``fwd.py``). With grad on it trains
through ``train.py`` (training forward in ``fwd.py``, fused backward ``bwd.py``; template expansion
and launching ``common.py``). Runs on ``cuda``, or on ``cpu`` under the Numba CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``). Design, compile statistics and GPU predictions: docs/notes/numba_bi_wkv7.md.
"""

from __future__ import annotations

import functools
import re

import torch

from wkvbench.impls import _compile, _gpu
from wkvbench.impls.bi_wkv7_numba import fwd, train
from wkvbench.impls.bi_wkv7_numba.common import (
    _DTYPES,
    _IMPORT_ERROR,
    KINDS,
    ROWS_CHOICES,
    SIMULATOR,
    N,
    choose_rows_per_block,
    cuda,
    numba,
)
from wkvbench.impls.bi_wkv7_numba.fwd import kernel_source
from wkvbench.impls.bi_wkv7_numba.train import BiWKV7Numba, saved_bytes
from wkvbench.ops import validate_bi_wkv7
from wkvbench.registry import register_impl

__all__ = ["KINDS", "N", "ROWS_CHOICES", "SIMULATOR", "choose_rows_per_block", "compile_report", "cuda",
           "kernel_source", "numba_cuda", "saved_bytes"]  # fmt: skip


# ----------------------------------------------------------------------------- availability
def _check(device: torch.device) -> tuple[bool, str]:
    if cuda is None:
        return False, f"numba-cuda not installed ({_IMPORT_ERROR})"
    if device.type == "cpu":
        if not SIMULATOR:
            return False, "CPU needs NUMBA_ENABLE_CUDASIM=1 (wkvbench --interpret)"
        return True, "ok"
    if SIMULATOR:
        return False, "NUMBA_ENABLE_CUDASIM=1 is set: numba runs the CPU simulator, not the GPU"
    ok, why = _gpu.nvvm_status()  # without libNVVM no kernel compiles, whatever the driver says
    if not ok:
        return False, f"{why}; {_gpu.NVVM_NEEDS}"
    try:
        if not cuda.is_available():
            return False, "numba-cuda sees no CUDA device"
    except Exception as exc:
        return False, f"numba-cuda cannot reach the GPU: {exc}"
    return True, "ok"


@functools.cache
def _device_ok(device_type: str, index: int | None) -> tuple[bool, str]:
    """``_check`` once per device: the launch path does not ask the driver on every call."""
    return _check(torch.device(device_type, index))


@register_impl(
    "bi_wkv7",
    name="numba_cuda",
    backend="numba",
    devices=("cuda", "cpu"),
    dtypes=_DTYPES,
    head_sizes=(N,),
    priority=15,
    backward=True,
    check=_check,
    description="fused recurrent Numba CUDA kernel: a thread per state row, both directions and the gate in one "
    "launch; differentiable (fused backward)",
)
def numba_cuda(r, w, k, v, a, b, g=None, *, out=None, rows_per_block: int | None = None):
    """Fused recurrent Numba CUDA kernel: a thread per state row, both directions and the gate in one launch.

    With grad mode on and an input requiring grad, the output carries an autograd graph (training
    forward saving ``sa`` and checkpoints, fused backward; ``out=`` is then refused); otherwise
    the inference kernel runs and nothing is saved.
    """
    if cuda is None:
        raise RuntimeError(f"numba_cuda: numba-cuda is not installed ({_IMPORT_ERROR})")
    # shapes, dtypes and devices of the inputs and the gate: the op's own validation (no value checks)
    validate_bi_wkv7(r, w, k, v, a, b, g, check_values=False)
    B, T, H, n = r.shape
    if n != N:
        raise ValueError(f"r: head size {n} not supported by numba_cuda (compiled for N = {N})")
    if r.dtype not in KINDS:
        raise TypeError(f"r: dtype {r.dtype} not supported by numba_cuda; use float32, float16 or bfloat16")
    dev = r.device
    ok, why = _device_ok(dev.type, dev.index)
    if not ok:
        raise ValueError(f"r: numba_cuda cannot run on {dev}: {why}")
    training = _gpu.training_call(out, r, w, k, v, a, b, g)
    out = None if training else _gpu.check_out(out, r)
    if rows_per_block is None:
        R = choose_rows_per_block(B * H, _gpu.sm_count(dev))
    elif rows_per_block in ROWS_CHOICES:
        R = rows_per_block
    else:
        raise ValueError(f"rows_per_block: must be one of {ROWS_CHOICES}, got {rows_per_block!r}")
    if B > 65535 or H > 65535:
        raise ValueError(f"r: batch {B} and heads {H} must each be <= 65535 (CUDA grid y/z limit)")
    if training:
        return BiWKV7Numba.apply(r, w, k, v, a, b, g, R)
    return fwd.forward(r, w, k, v, a, b, g, out, R)


# ----------------------------------------------------------------------------- compile report
def compile_report(cc: int = 90) -> list[dict]:
    """Compile the kernels of every I/O dtype for ``sm_<cc>`` without a GPU; resource use per kernel.

    Inference, training forward and backward kernels (``fwd.py``, ``bwd.py``).

    Must run without ``NUMBA_ENABLE_CUDASIM`` (the caller uses a clean subprocess). PTX comes from
    ``numba.cuda.compile_ptx`` (libNVVM, and NVRTC for the target check); registers, shared memory
    and spills from ``ptxas -v`` when a ptxas is found (else only the PTX-declared memory). A
    missing numba-cuda, libNVVM or NVRTC gives a ``skipped`` row naming what brings it.
    """
    if cuda is None:
        return _compile.skipped_rows(["numba_cuda"], _compile.ToolMissing.extra("numba", _IMPORT_ERROR))
    if SIMULATOR:
        raise RuntimeError("compile_report needs NUMBA_ENABLE_CUDASIM unset (run it in a clean subprocess)")
    return _compile.report_or_skip(["numba_cuda"], lambda: _compile_rows(cc))


def _compile_rows(cc: int) -> list[dict]:
    ok, why = _gpu.nvvm_status()
    if not ok:
        raise _compile.ToolMissing(_gpu.NVVM_NEEDS, why)
    _compile.nvrtc_version()  # numba-cuda checks the target against NVRTC's list
    from importlib.metadata import version

    try:
        nc = f"numba-cuda {version('numba-cuda')}"
    except Exception:
        nc = f"numba {numba.__version__}"
    ptxas = _compile.find_ptxas()
    ptxas_name = f"ptxas {_compile.tool_release(ptxas)}" if ptxas else ""
    rows_r = "/".join(map(str, ROWS_CHOICES))
    dtypes = {kind: str(dtype).replace("torch.", "") for dtype, kind in KINDS.items()}
    todo = [
        (fwd.KERNEL, kind, fwd._kernel_function(kind), fwd._signature(kind), fwd.SHARED_BYTES, "2R", None)
        for kind in KINDS.values()
    ]
    rows = []
    for name, kind, fn, sig, shared, block, bounds in todo + train.report_kernels():
        ptx, _ = cuda.compile_ptx(fn, sig, cc=(cc // 10, cc % 10), launch_bounds=bounds)
        row = {
            "impl": "numba_cuda",
            "kernel": name,
            "config": f"dtype={dtypes[kind]} N={N} "
            + (f"R={rows_r} ({block} thr)" if block == "2R" else f"block={block} (H, B) grid"),
            "registers": None,
            "shared_bytes": shared,
            "local_bytes": sum(int(x) for x in re.findall(r"\.local \.align \d+ \.b8 \S+\[(\d+)\]", ptx)),
            "compiler": nc,
        }
        if ptxas is not None:
            log = _compile.run_ptxas(ptxas, ptx, cc)
            entries = [st for st in _compile.parse_ptxas(log).values() if st["registers"]]
            if len(entries) != 1:
                raise RuntimeError(f"ptxas -v: expected one kernel with a register count, found {len(entries)}")
            row.update(_compile.resource_row(entries[0]), compiler=f"{nc} + {ptxas_name}")
        rows.append(row)
    return rows
