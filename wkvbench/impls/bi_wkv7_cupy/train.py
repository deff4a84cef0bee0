"""Training (forward + backward) of ``cupy_cuda``: the autograd Function, its CuPy launches and saved memory.

``cupy_cuda`` calls :func:`bi_wkv7_train` when an input requires grad: the training forward of
``fwd.py`` saves fp32 ``sa`` and a state checkpoint every 8 (float32) / 16 (16-bit I/O) scan steps
(:func:`saved_bytes`), the backward is the one launch of ``bwd.py``. The launches go through an
injectable ``launcher`` so the tests run the whole Function on the host emulation of the same
``.cu``. Design and the numbers: docs/notes/cupy_bi_wkv7.md ("Training").
"""

from __future__ import annotations

import re

import torch

from wkvbench.impls import _cupy, _gpu
from wkvbench.impls.bi_wkv7_cupy import bwd, fwd
from wkvbench.impls.bi_wkv7_cupy.bwd import BWD_KERNEL, backward
from wkvbench.impls.bi_wkv7_cupy.common import (
    _MANGLED_IO,
    BWD_PATH,
    DTYPES,
    HEAD_SIZES,
    NAME,
    SPLITS,
    Launcher,
    checkpoint_tokens,
    num_checkpoints,
    train_source,
)
from wkvbench.impls.bi_wkv7_cupy.fwd import FWD_KERNEL, forward_save

__all__ = [
    "BWD_KERNEL", "BWD_PATH", "FWD_KERNEL", "Launcher", "backward", "bi_wkv7_train", "checkpoint_tokens",
    "compile_report", "cupy_launcher", "forward_save", "kernel_names", "num_checkpoints", "saved_bytes",
]  # fmt: skip


def kernel_names(dtype: torch.dtype, n: int = 64) -> list[str]:
    """Every training kernel of one dtype: the forward at each SPLIT, then the backward."""
    return [*(fwd.fwd_name(dtype, n, s) for s in SPLITS), bwd.bwd_name(dtype, n)]


def saved_bytes(B: int, T: int, H: int, N: int = 64, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes the training forward saves for the backward: fp32 ``sa`` and checkpoints, both directions."""
    return _gpu.sa_checkpoint_bytes(B, T, H, N, dtype)


class BiWKV7Train(torch.autograd.Function):
    """Fused Bi-WKV7 with a backward: forward saves ``sa`` + checkpoints, backward is one kernel launch."""

    @staticmethod
    def forward(ctx, r, w, k, v, a, b, g, launcher, split, num_sms):
        gc = None if g is None else g.contiguous()
        y, xs, sa, ck = fwd.forward_save(r, w, k, v, a, b, gc, launcher, split=split, num_sms=num_sms)
        ctx.save_for_backward(*xs, gc, sa, ck)
        ctx.launcher = launcher
        return y

    @staticmethod
    def backward(ctx, dy):
        *xs, g, sa, ck = ctx.saved_tensors
        grads = bwd.backward(xs, g, dy, sa, ck, ctx.launcher)
        return (*grads, None, None, None)


def bi_wkv7_train(
    r, w, k, v, a, b, g=None, *, launcher: Launcher, out=None, split=None, num_sms: int = _gpu.DEFAULT_SMS
):
    """The differentiable fused Bi-WKV7 (no validation here: ``cupy_cuda`` validates); ``out=`` is refused."""
    if out is not None:
        raise ValueError("out: not supported when an input requires grad (out= is not differentiable)")
    return BiWKV7Train.apply(r, w, k, v, a, b, g, launcher, split, num_sms)


# ----------------------------------------------------------------------------- CuPy launch
_KERNELS = _cupy.KernelCache(NAME, train_source, [kernel_names(dt, n) for dt in DTYPES for n in HEAD_SIZES])


def cupy_launcher(name: str, grid: tuple, block: tuple, args: tuple, device: torch.device) -> None:
    """Launch training kernel ``name`` through CuPy on torch's current stream of ``device``."""
    idx = _KERNELS.device_index(device)
    _cupy.launch(_KERNELS.kernel(name, idx), grid, block, args, device, idx)


# ----------------------------------------------------------------------------- compile report
_MANGLED = re.compile(rf"({fwd.FWD_KERNEL}|{bwd.BWD_KERNEL})I(f|8wkv_bf16|8wkv_fp16)Li(\d+)ELi(\d+)E(?:Li(\d+)E)?")


def _instantiation(name: str) -> str:
    """The explicit instantiation nvcc needs for the name expression ``name``."""
    io_t = name[name.index("<") + 1 : name.index(",")]
    p = f"const {io_t}*"
    if name.startswith(bwd.BWD_KERNEL):
        params = [p] * 8 + ["const float*"] * 2 + ["float*"] * 7
    else:
        params = [p] * 7 + [f"{io_t}*"] + ["float*"] * 3
    return f"template __global__ void {name}({', '.join(params)}, int, int, int);"


def _describe(m: re.Match) -> tuple[str, str, str]:
    """(kernel, config, name expression) of a compiled entry whose mangled name ``_MANGLED`` matched."""
    dt, n = _MANGLED_IO[m.group(2)], int(m.group(3))
    dts = str(dt).replace("torch.", "")
    if m.group(1) == bwd.BWD_KERNEL:
        return bwd.BWD_KERNEL, f"dtype={dts} N={n} kind=bwd CP={m.group(4)} block={2 * n}", bwd.bwd_name(dt, n)
    split = int(m.group(4))
    tc = fwd.chunk_tokens(dt, split)
    config = f"dtype={dts} N={n} kind=fwd_save SPLIT={split} TC={tc} CP={m.group(5)} block={2 * n}"
    return fwd.FWD_KERNEL, config, fwd.fwd_name(dt, n, split)


def compile_report(cc: int = 90, compiler: str = "auto", dtypes=DTYPES) -> list[dict]:
    """The training kernels' rows of ``cupy_cuda``'s compile report (see the package's ``compile_report``)."""
    names = [name for dt in dtypes for n in HEAD_SIZES for name in kernel_names(dt, n)]
    return _cupy.compile_rows(NAME, train_source(), names, cc, compiler, _instantiation, _MANGLED, _describe)
