"""What the ``cupy_cuda`` modules share: the kernel sources, names, dtypes, checkpoint interval and pointers.

The CUDA C lives next to this package's Python: ``bi_wkv7_cupy.cu`` (the fused forward, inference
and training) and ``bi_wkv7_cupy_bwd.cu`` (the backward); both include ``wkv_io.cuh`` from
``wkvbench/impls/include/``, inlined here (``_cupy.cuda_source``) so NVRTC gets one string.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from wkvbench.impls import _cupy, _gpu

NAME = "cupy_cuda"
HEAD_SIZES = (64,)
SPLITS = (1, 2, 4, 8)
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
KERNEL_PATH = Path(__file__).with_name("bi_wkv7_cupy.cu")
BWD_PATH = Path(__file__).with_name("bi_wkv7_cupy_bwd.cu")
NVRTC_OPTIONS = _cupy.NVRTC_OPTIONS
_IO_TYPE = {torch.float32: "float", torch.bfloat16: "wkv_bf16", torch.float16: "wkv_fp16"}
_MANGLED_IO = {"f": torch.float32, "8wkv_bf16": torch.bfloat16, "8wkv_fp16": torch.float16}

#: ``launcher(name, grid, block, args, device)``: run kernel ``name`` with these arguments (numpy
#: scalars, pointers as uint64) on the tensors' device.
Launcher = Callable[[str, tuple, tuple, tuple, torch.device], None]

#: Scan steps per state checkpoint of the training forward: 8 for float32 I/O, 16 for bfloat16/float16.
checkpoint_tokens = _gpu.checkpoint_tokens


@functools.lru_cache(maxsize=1)
def kernel_source() -> str:
    """The CUDA C source of the forward kernels (``bi_wkv7_cupy.cu``, its header ``wkv_io.cuh`` inlined)."""
    return _cupy.cuda_source(KERNEL_PATH)


def train_source() -> str:
    """CUDA C of the training kernels: ``bi_wkv7_cupy.cu`` then ``bi_wkv7_cupy_bwd.cu`` (headers inlined)."""
    return kernel_source() + "\n" + _cupy.cuda_source(BWD_PATH)


def num_checkpoints(T: int, dtype: torch.dtype) -> int:
    """Checkpoint slots per (direction, batch, head): ``ceil(T / CP)``."""
    return -(-T // checkpoint_tokens(dtype))


def _aligned(x: torch.Tensor) -> torch.Tensor:
    x = x.contiguous()
    return x if x.data_ptr() % 16 == 0 else x.clone()


def _ptr(x: torch.Tensor | None) -> np.uint64:
    return np.uint64(0 if x is None else x.data_ptr())
