"""Bi-WKV7 as one CUDA C kernel compiled by NVRTC and launched through CuPy: ``cupy_cuda``.

The fused recurrent form of the official RWKV-7 CUDA kernel (a thread group per value row of the
state), both scan directions in lock-step and the gate merge in ONE launch (``fwd.py``,
``bi_wkv7_cupy.cu``); ``SPLIT`` blocks per head from a cost model. With grad on it trains through
``train.py`` (training forward ``fwd.py``, fused backward ``bwd.py`` and ``bi_wkv7_cupy_bwd.cu``).
Without a GPU :func:`compile_report` compiles every instantiation for ``sm_<cc>``, and
``wkvbench/hostemu/`` runs the same ``.cu`` on the CPU. Algorithm, launch geometry, merge,
bytes moved and the cost model: docs/notes/cupy_bi_wkv7.md.
"""

from __future__ import annotations

import torch

from wkvbench.impls import _cupy, _gpu
from wkvbench.impls.bi_wkv7_cupy import fwd, train
from wkvbench.impls.bi_wkv7_cupy.common import (
    DTYPES,
    HEAD_SIZES,
    KERNEL_PATH,
    NAME,
    NVRTC_OPTIONS,
    SPLITS,
    kernel_source,
)
from wkvbench.impls.bi_wkv7_cupy.fwd import (
    KERNEL,
    LaunchPlan,
    chunk_tokens,
    kernel_name,
    launch_plan,
    pick_split,
    predicted_step_cycles,
    shared_bytes,
)
from wkvbench.impls.bi_wkv7_cupy.train import saved_bytes

__all__ = [
    "DTYPES", "HEAD_SIZES", "KERNEL", "KERNEL_PATH", "NAME", "NVRTC_OPTIONS", "SPLITS", "LaunchPlan", "chunk_tokens",
    "compile_report", "cupy_cuda", "kernel_name", "kernel_source", "launch_plan", "pick_split",
    "predicted_step_cycles", "saved_bytes", "shared_bytes",
]  # fmt: skip

_check = _cupy.check


def _validate(r, w, k, v, a, b, g, out, split) -> None:
    if split is not None and split not in SPLITS:
        raise ValueError(f"split: must be one of {SPLITS} or None, got {split!r}")
    _cupy.validate_bi_wkv7_call(NAME, DTYPES, HEAD_SIZES, r, w, k, v, a, b, g, out)


@_cupy.register_bi_wkv7(
    NAME,
    DTYPES,
    HEAD_SIZES,
    priority=25,
    backward=True,
    description="CUDA C via NVRTC/CuPy: both directions + gate merge in one launch, fp32 state in registers; "
    "differentiable (fused backward, one launch)",
)
def cupy_cuda(r, w, k, v, a, b, g=None, *, out=None, split: int | None = None):
    """CUDA C via NVRTC/CuPy: both directions and the gate merge in one launch, fp32 state in registers.

    Differentiable: when grad mode is on and an input requires grad, the training forward (which
    saves ``sa`` and state checkpoints) and the fused backward run (``train.py``);
    ``out=`` is refused then. Otherwise the inference launch, which saves nothing.
    """
    _validate(r, w, k, v, a, b, g, out, split)
    idx = fwd._KERNELS.device_index(r.device)
    sms = _gpu.sm_count(torch.device("cuda", idx))
    if _gpu.training_call(out, r, w, k, v, a, b, g):
        return train.bi_wkv7_train(r, w, k, v, a, b, g, launcher=train.cupy_launcher, split=split, num_sms=sms)
    plan = launch_plan(r, w, k, v, a, b, g, out=out, split=split, num_sms=sms)
    fn = fwd._kernel(r.dtype, r.shape[-1], plan.split, idx)
    _cupy.launch(fn, plan.grid, plan.block, plan.args, r.device, idx)
    return plan.y


# ----------------------------------------------------------------------------- compile report
def compile_report(
    cc: int = 90, compiler: str = "auto", dtypes=DTYPES, splits=SPLITS, training: bool = True
) -> list[dict]:
    """Compile every (dtype, SPLIT) instantiation for ``sm_<cc>`` without a GPU; one dict per kernel.

    With ``training`` the training kernels follow (forward with saving at every SPLIT, backward;
    ``train.compile_report``), their config saying ``kind=fwd_save`` / ``kind=bwd``.

    ``compiler``: ``"nvrtc"`` (cuda.core + nvidia-cuda-nvrtc: what CuPy uses at run time),
    ``"nvcc"``, or ``"auto"`` (NVRTC, else nvcc). Keys: impl, kernel, config, registers,
    shared_bytes, local_bytes (stack frame + spill stores), spill_bytes, compiler, name. With neither
    compiler installed the row says ``skipped`` and which extra brings NVRTC; a source that does
    not compile raises.
    """
    names = [kernel_name(dt, n, s) for dt in dtypes for n in HEAD_SIZES for s in splits]
    rows = _cupy.compile_rows(
        NAME, kernel_source(), names, cc, compiler, fwd._instantiation, fwd._MANGLED, fwd._describe
    )
    if not training or (rows and "skipped" in rows[0]):
        return rows
    return rows + train.compile_report(cc, compiler, dtypes)
