"""Training (forward + backward) of ``cupy_cuda``: the autograd Function, its launches and saved memory.

``cupy_cuda`` (:mod:`wkvbench.impls.bi_wkv7_cupy`) calls :func:`bi_wkv7_train` when an input
requires grad; under ``no_grad`` it keeps its inference launch, which saves nothing. The leading
underscore keeps this module out of the implementation discovery: it registers nothing.

Forward (one launch): ``bi_wkv7_train_kernel<IO, 64, SPLIT, CP>`` (``bi_wkv7_cupy.cu``) is the
fused inference kernel -- both directions in lock-step and the gate merge, same grid
``B * H * SPLIT``, block 128, same ``SPLIT`` choice -- with its SAVE flag on: per direction it also
writes ``sa`` (fp32 ``[2, B, T, H, N]``) and the state after every ``CP``-th scan step and after
the last one (fp32 ``[2, B, H, ceil(T/CP), N, N]``). The inference kernel shares the same inlined
body with the save code compiled out, so its instantiations and code are what they were.

Backward (one kernel launch, ``bi_wkv7_bwd_kernel<IO, 64, CP>``, ``bi_wkv7_cupy_bwd.cu``):
grid ``2 * B * H`` blocks, one per (direction, batch, head), block 128 threads in the column-group /
row-group layout of ``audiorwkv_catflip``'s backward (thread ``i`` of the column group owns column
``i`` of ``S`` and ``dS``; thread ``64 + i`` row ``i`` of ``dS``; 242-246 registers, no spills at
sm_90), three barriers per step, each step's scalar inputs loaded one step ahead so their latency
overlaps the previous step's arithmetic. Each direction walks its scan steps backwards, with its
output gradient scaled by its gate factor (``g`` forward, ``1 - g`` reverse), and adds
``dr, dw, dk, dv, da, db`` into zero-filled fp32 buffers with ``atomicAdd``: every element gets
exactly two adds onto 0, so the result does not depend on which direction is first
(deterministic). ``dg[t] = sum_i dy_i (y_fwd,i - y_rev,i) = r . q_fwd - r . q_rev`` with
``q = S^T dy``, the product ``dr`` already needs (``dr = gate * q``): one warp butterfly per step
and one more ``atomicAdd`` per (token, head) and direction. Launches per backward: a fill of the
zeroed fp32 buffer, the kernel and, for 16-bit I/O, one conversion of the buffer to the I/O dtype
(float32 I/O returns the buffer's views directly).

State reconstruction and checkpoints. Between checkpoints the backward recovers ``S_{s-1} =
(S_s - v k^T - sa b^T) diag(1/d)``; with ``d >= 0.545`` (RWKV-7 domain) a rounding error can grow
1.83-fold per step, so ``CP`` bounds the chain: ``CP = 8`` for float32 I/O (``audiorwkv_catflip``
measured da/dw at 1.7e-4 with 16, over the 1e-4 bar, and ~2e-6 with 8) and ``CP = 16`` for 16-bit
I/O, whose gradient error is dominated by I/O rounding. The choice keeps the saved memory equal to
catflip's per sequence and avoids a recompute pass. Any ``T >= 1``: the last checkpoint slot holds
the final state even when ``T % CP != 0`` (it then covers ``T % CP`` steps), so nothing is padded.

Saved for backward (:func:`saved_bytes`), per (token, head) and direction: ``sa`` 256 B + state
``64 * 64 * 4 / CP`` B, i.e. 1280 B for bfloat16/float16 and 2304 B for float32 (both directions:
2560 / 4608 B per (token, head), 40 / 72 B per element of ``y``), with ``T`` rounded up to a
multiple of ``CP`` for the checkpoints only. That is ``audiorwkv_catflip``'s figure per sequence
of its 2B without its padding of ``T`` to 16 and without its concatenated copies of the inputs:
autograd here keeps only the inputs themselves (and ``g``).

The launches go through an injectable ``launcher(name, grid, block, args, device)`` (like
``audiorwkv_catflip``), so the tests run the whole Function -- training forward, backward, the
fp32 accumulation and conversion -- on the CPU through the host emulation of the same ``.cu``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from wkvbench.impls import _cupy, _gpu
from wkvbench.impls import bi_wkv7_cupy as fused

BWD_PATH = Path(fused.KERNEL_PATH).with_name("bi_wkv7_cupy_bwd.cu")
FWD_KERNEL = "bi_wkv7_train_kernel"
BWD_KERNEL = "bi_wkv7_bwd_kernel"
GRADS = ("r", "w", "k", "v", "a", "b")

#: ``launcher(name, grid, block, args, device)``: run kernel ``name`` with these arguments (numpy
#: scalars, pointers as uint64) on the tensors' device.
Launcher = Callable[[str, tuple, tuple, tuple, torch.device], None]


#: Scan steps per state checkpoint: 8 for float32 I/O, 16 for bfloat16/float16 (module docstring).
checkpoint_tokens = _gpu.checkpoint_tokens


def train_source() -> str:
    """CUDA C of the training kernels: ``bi_wkv7_cupy.cu`` then ``bi_wkv7_cupy_bwd.cu`` (headers inlined)."""
    return fused.kernel_source() + "\n" + _cupy.cuda_source(BWD_PATH)


def fwd_name(dtype: torch.dtype, n: int, split: int) -> str:
    """Name expression of the training forward, e.g. ``bi_wkv7_train_kernel<wkv_bf16, 64, 8, 16>``."""
    return f"{FWD_KERNEL}<{fused._IO_TYPE[dtype]}, {n}, {split}, {checkpoint_tokens(dtype)}>"


def bwd_name(dtype: torch.dtype, n: int) -> str:
    """Name expression of the backward, e.g. ``bi_wkv7_bwd_kernel<wkv_bf16, 64, 16>``."""
    return f"{BWD_KERNEL}<{fused._IO_TYPE[dtype]}, {n}, {checkpoint_tokens(dtype)}>"


def kernel_names(dtype: torch.dtype, n: int = 64) -> list[str]:
    """Every training kernel of one dtype: the forward at each SPLIT, then the backward."""
    return [*(fwd_name(dtype, n, s) for s in fused.SPLITS), bwd_name(dtype, n)]


def num_checkpoints(T: int, dtype: torch.dtype) -> int:
    """Checkpoint slots per (direction, batch, head): ``ceil(T / CP)``."""
    return -(-T // checkpoint_tokens(dtype))


def saved_bytes(B: int, T: int, H: int, N: int = 64, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes the training forward saves for the backward: fp32 ``sa`` and checkpoints, both directions."""
    return _gpu.sa_checkpoint_bytes(B, T, H, N, dtype)


# ----------------------------------------------------------------------------- launches
def _ptr(x: torch.Tensor | None) -> np.uint64:
    return np.uint64(0 if x is None else x.data_ptr())


def forward_save(r, w, k, v, a, b, g, launcher: Launcher, *, split: int | None = None, num_sms: int = 132):
    """The training forward: ``(y, xs, sa, ckpt)`` (``xs``: the aligned inputs the kernel read)."""
    plan = fused.launch_plan(r, w, k, v, a, b, g, split=split, num_sms=num_sms)
    B, T, H, N = r.shape
    sa = torch.empty((2, B, T, H, N), dtype=torch.float32, device=r.device)
    ck = torch.empty((2, B, H, num_checkpoints(T, r.dtype), N, N), dtype=torch.float32, device=r.device)
    args = (*plan.args[:9], _ptr(sa), _ptr(ck), *plan.args[9:])
    launcher(fwd_name(r.dtype, N, plan.split), plan.grid, plan.block, args, r.device)
    return plan.y, plan.keep[:6], sa, ck


def backward(xs, g, dy: torch.Tensor, sa: torch.Tensor, ck: torch.Tensor, launcher: Launcher):
    """The backward launch: ``(dr, dw, dk, dv, da, db, dg)`` in the I/O dtype (``dg`` None without ``g``)."""
    r = xs[0]
    B, T, H, N = r.shape
    numel = r.numel()
    acc = torch.zeros(6 * numel + (0 if g is None else B * T * H), dtype=torch.float32, device=r.device)
    parts = [acc[i * numel : (i + 1) * numel].view(r.shape) for i in range(6)]
    dg = None if g is None else acc[6 * numel :].view(B, T, H)
    dy = fused._aligned(dy.to(r.dtype))
    args = (
        *(_ptr(x) for x in xs),
        _ptr(g),
        _ptr(dy),
        _ptr(sa),
        _ptr(ck),
        *(_ptr(x) for x in parts),
        _ptr(dg),
        np.int32(B),
        np.int32(T),
        np.int32(H),
    )
    launcher(bwd_name(r.dtype, N), (2 * B * H,), (2 * N,), args, r.device)
    if r.dtype != torch.float32:  # one conversion of the whole buffer to the I/O dtype
        acc = acc.to(r.dtype)
        parts = [acc[i * numel : (i + 1) * numel].view(r.shape) for i in range(6)]
        dg = None if g is None else acc[6 * numel :].view(B, T, H)
    return (*parts, dg)


class BiWKV7Train(torch.autograd.Function):
    """Fused Bi-WKV7 with a backward: forward saves ``sa`` + checkpoints, backward is one kernel launch."""

    @staticmethod
    def forward(ctx, r, w, k, v, a, b, g, launcher, split, num_sms):
        gc = None if g is None else g.contiguous()
        y, xs, sa, ck = forward_save(r, w, k, v, a, b, gc, launcher, split=split, num_sms=num_sms)
        ctx.save_for_backward(*xs, gc, sa, ck)
        ctx.launcher = launcher
        return y

    @staticmethod
    def backward(ctx, dy):
        *xs, g, sa, ck = ctx.saved_tensors
        grads = backward(xs, g, dy, sa, ck, ctx.launcher)
        return (*grads, None, None, None)


def bi_wkv7_train(r, w, k, v, a, b, g=None, *, launcher: Launcher, out=None, split=None, num_sms: int = 132):
    """The differentiable fused Bi-WKV7 (no validation here: ``cupy_cuda`` validates); ``out=`` is refused."""
    if out is not None:
        raise ValueError("out: not supported when an input requires grad (out= is not differentiable)")
    return BiWKV7Train.apply(r, w, k, v, a, b, g, launcher, split, num_sms)


# ----------------------------------------------------------------------------- CuPy launch
_KERNELS = _cupy.KernelCache(
    fused.NAME, train_source, [kernel_names(dt, n) for dt in fused.DTYPES for n in fused.HEAD_SIZES]
)


def cupy_launcher(name: str, grid: tuple, block: tuple, args: tuple, device: torch.device) -> None:
    """Launch training kernel ``name`` through CuPy on torch's current stream of ``device``."""
    idx = _KERNELS.device_index(device)
    _cupy.launch(_KERNELS.kernel(name, idx), grid, block, args, device, idx)


# ----------------------------------------------------------------------------- compile report
_MANGLED = re.compile(rf"({FWD_KERNEL}|{BWD_KERNEL})I(f|8wkv_bf16|8wkv_fp16)Li(\d+)ELi(\d+)E(?:Li(\d+)E)?")


def _instantiation(name: str) -> str:
    """The explicit instantiation nvcc needs for the name expression ``name``."""
    io_t = name[name.index("<") + 1 : name.index(",")]
    p = f"const {io_t}*"
    if name.startswith(BWD_KERNEL):
        params = [p] * 8 + ["const float*"] * 2 + ["float*"] * 7
    else:
        params = [p] * 7 + [f"{io_t}*"] + ["float*"] * 3
    return f"template __global__ void {name}({', '.join(params)}, int, int, int);"


def _describe(m: re.Match) -> tuple[str, str, str]:
    """(kernel, config, name expression) of a compiled entry whose mangled name ``_MANGLED`` matched."""
    dt, n = fused._MANGLED_IO[m.group(2)], int(m.group(3))
    dts = str(dt).replace("torch.", "")
    if m.group(1) == BWD_KERNEL:
        return BWD_KERNEL, f"dtype={dts} N={n} kind=bwd CP={m.group(4)} block={2 * n}", bwd_name(dt, n)
    split = int(m.group(4))
    tc = fused.chunk_tokens(dt, split)
    config = f"dtype={dts} N={n} kind=fwd_save SPLIT={split} TC={tc} CP={m.group(5)} block={2 * n}"
    return FWD_KERNEL, config, fwd_name(dt, n, split)


def compile_report(cc: int = 90, compiler: str = "auto", dtypes=fused.DTYPES) -> list[dict]:
    """The training kernels' rows of ``cupy_cuda``'s compile report (see ``bi_wkv7_cupy.compile_report``)."""
    names = [name for dt in dtypes for n in fused.HEAD_SIZES for name in kernel_names(dt, n)]
    return _cupy.compile_rows(fused.NAME, train_source(), names, cc, compiler, _instantiation, _MANGLED, _describe)
