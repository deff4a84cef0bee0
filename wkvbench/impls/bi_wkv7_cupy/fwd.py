"""The fused forward of ``cupy_cuda``: one CUDA C launch runs both scan directions and the gate merge.

``bi_wkv7_cupy.cu``'s ``bi_wkv7_kernel<IO, N, SPLIT>`` (inference) and
``bi_wkv7_train_kernel<IO, N, SPLIT, CP>`` (the same body that also saves ``sa`` and state
checkpoints): the names, the SPLIT cost model, the launch plan and the inference kernel cache.
Algorithm, staging, merge and cost model: docs/notes/cupy_bi_wkv7.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from wkvbench.impls import _cupy, _gpu
from wkvbench.impls.bi_wkv7_cupy.common import (
    _IO_TYPE,
    _MANGLED_IO,
    DTYPES,
    HEAD_SIZES,
    NAME,
    SPLITS,
    Launcher,
    _aligned,
    _ptr,
    checkpoint_tokens,
    kernel_source,
    num_checkpoints,
)

KERNEL = "bi_wkv7_kernel"
FWD_KERNEL = "bi_wkv7_train_kernel"


def kernel_name(dtype: torch.dtype, n: int, split: int) -> str:
    """NVRTC name expression of one instantiation, e.g. ``bi_wkv7_kernel<wkv_bf16, 64, 8>``."""
    return f"{KERNEL}<{_IO_TYPE[dtype]}, {n}, {split}>"


def chunk_tokens(dtype: torch.dtype, split: int) -> int:
    """Tokens staged per chunk (mirrors ``wkv_chunk<IO, SPLIT>::TC`` in the .cu)."""
    return 4 if split == 1 or (dtype == torch.float32 and split == 2) else 8


def shared_bytes(dtype: torch.dtype, n: int, split: int) -> int:
    """Static shared memory of one block: ``2*TC*(5N + R) + 2*TC`` floats."""
    tc = chunk_tokens(dtype, split)
    return 4 * (2 * tc * 5 * n + 2 * tc * (n // split) + 2 * tc)


# Per-step cost model behind pick_split (N = 64; predictions, not measurements): cycles of one SM
# per time step for instruction issue, shared-memory return bandwidth and one warp's latency.
# Derivation: docs/notes/cupy_bi_wkv7.md.
_ISSUE_CYCLES = {1: 490, 2: 310, 4: 200, 8: 165}
_SHARED_CYCLES = {1: 640, 2: 320, 4: 320, 8: 160}
_LATENCY_CYCLES = {1: 475, 2: 265, 4: 215, 8: 200}


def predicted_step_cycles(bh: int, num_sms: int, split: int) -> float:
    """Predicted cycles per time step for ``B*H = bh`` heads at this SPLIT (blocks per SM share it)."""
    per_sm = math.ceil(bh * split / max(1, num_sms))
    return max(_LATENCY_CYCLES[split], per_sm * max(_ISSUE_CYCLES[split], _SHARED_CYCLES[split]))


def pick_split(bh: int, num_sms: int) -> int:
    """SPLIT (blocks per head) for ``B*H = bh`` heads on ``num_sms`` SMs, from the cost model.

    A larger SPLIT must win by 10% to be chosen: it multiplies the L2 reads of the key-side
    vectors, which the model does not charge.
    """
    if bh < 1 or num_sms < 1:
        raise ValueError(f"bh/num_sms: must be >= 1, got {bh}, {num_sms}")
    best = 1
    for split in SPLITS[1:]:
        if predicted_step_cycles(bh, num_sms, split) < 0.9 * predicted_step_cycles(bh, num_sms, best):
            best = split
    return best


def fwd_name(dtype: torch.dtype, n: int, split: int) -> str:
    """Name expression of the training forward, e.g. ``bi_wkv7_train_kernel<wkv_bf16, 64, 8, 16>``."""
    return f"{FWD_KERNEL}<{_IO_TYPE[dtype]}, {n}, {split}, {checkpoint_tokens(dtype)}>"


# ----------------------------------------------------------------------------- launch
_KERNELS = _cupy.KernelCache(
    NAME, lambda: kernel_source(), [[kernel_name(dt, n, s) for s in SPLITS] for dt in DTYPES for n in HEAD_SIZES]
)


def _kernel(dtype: torch.dtype, n: int, split: int, device_index: int):
    return _KERNELS.kernel(kernel_name(dtype, n, split), device_index)


@dataclass(frozen=True)
class LaunchPlan:
    """What one launch gets: SPLIT, grid, block, the kernel arguments, and the tensors behind them."""

    split: int
    grid: tuple[int]
    block: tuple[int]
    args: tuple  # numpy scalars in the kernel's parameter order (pointers as uint64)
    y: torch.Tensor
    keep: tuple  # tensors the pointers refer to (aligned copies, the fp32 scratch)


def launch_plan(
    r, w, k, v, a, b, g=None, *, out=None, split: int | None = None, num_sms: int = _gpu.DEFAULT_SMS
) -> LaunchPlan:
    """Allocate the output (and the fp32 partial buffer for 16-bit I/O) and build the launch.

    Device-agnostic (the tests launch the same plan on the host emulation of the kernel).
    """
    B, T, H, N = r.shape
    xs = [_aligned(x) for x in (r, w, k, v, a, b)]
    gg = None if g is None else g.contiguous()
    y = torch.empty_like(xs[0]) if out is None else out
    # float32: the partial lives in y itself (same element, same lane reads and rewrites it)
    part = y if r.dtype == torch.float32 else torch.empty(r.shape, dtype=torch.float32, device=r.device)
    sp = split if split is not None else pick_split(B * H, num_sms)
    args = (
        *(np.uint64(x.data_ptr()) for x in xs),
        np.uint64(0 if gg is None else gg.data_ptr()),
        np.uint64(y.data_ptr()),
        np.uint64(part.data_ptr()),
        np.int32(B),
        np.int32(T),
        np.int32(H),
    )
    return LaunchPlan(sp, (B * H * sp,), (2 * N,), args, y, (*xs, gg, part))


def forward_save(r, w, k, v, a, b, g, launcher: Launcher, *, split: int | None = None, num_sms: int = _gpu.DEFAULT_SMS):
    """The training forward: ``(y, xs, sa, ckpt)`` (``xs``: the aligned inputs the kernel read)."""
    plan = launch_plan(r, w, k, v, a, b, g, split=split, num_sms=num_sms)
    B, T, H, N = r.shape
    sa = torch.empty((2, B, T, H, N), dtype=torch.float32, device=r.device)
    ck = torch.empty((2, B, H, num_checkpoints(T, r.dtype), N, N), dtype=torch.float32, device=r.device)
    args = (*plan.args[:9], _ptr(sa), _ptr(ck), *plan.args[9:])
    launcher(fwd_name(r.dtype, N, plan.split), plan.grid, plan.block, args, r.device)
    return plan.y, plan.keep[:6], sa, ck


# ----------------------------------------------------------------------------- compile report
_MANGLED = re.compile(rf"{KERNEL}I(f|8wkv_bf16|8wkv_fp16)Li(\d+)ELi(\d+)E")


def _instantiation(name: str) -> str:
    """The explicit instantiation nvcc needs for the name expression ``name``."""
    io_t = name[name.index("<") + 1 : name.index(",")]
    return (
        f"template __global__ void {name}(const {io_t}*, const {io_t}*, const {io_t}*, const {io_t}*, "
        f"const {io_t}*, const {io_t}*, const {io_t}*, {io_t}*, float*, int, int, int);"
    )


def _describe(m: re.Match) -> tuple[str, str, str]:
    """(kernel, config, name expression) of a compiled entry whose mangled name ``_MANGLED`` matched."""
    dt, n, split = _MANGLED_IO[m.group(1)], int(m.group(2)), int(m.group(3))
    config = f"dtype={str(dt).replace('torch.', '')} N={n} SPLIT={split} TC={chunk_tokens(dt, split)} block={2 * n}"
    return KERNEL, config, kernel_name(dt, n, split)
