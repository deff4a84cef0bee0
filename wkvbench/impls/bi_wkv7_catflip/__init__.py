"""AudioRWKV's released Bi-WKV7 construction, forward and backward: ``audiorwkv_catflip``.

Written from its description (arXiv 2509.02167; github Jiayu-Xiong/AudioRWKV), not its code: the
six inputs are concatenated with their time-flipped copies along the batch (2B sequences), ONE
causal RWKV-7 kernel of the official training kind runs over all of them (``bi_wkv7_catflip.cu``
beside this file; :class:`CausalWKV7` saves ``sa`` and state checkpoints, its backward launches the
backward kernel), and the halves are merged in PyTorch (``torch.lerp``, so ``dg`` comes from
autograd). The training baseline the fused kernels are measured against. The launch is injectable
(``launcher``), so the tests run the whole construction on the CPU through the host emulation of
the same ``.cu``. Kernels, checkpoints, padding, saved bytes and the merge: the last section of
docs/notes/training_kernels.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wkvbench.impls import _cupy, _gpu

NAME = "audiorwkv_catflip"
HEAD_SIZES = (64,)
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
KERNEL_PATH = Path(__file__).with_name("bi_wkv7_catflip.cu")
PAD_TOKENS = 16  # the training path runs T rounded up to a multiple of this
KINDS = ("fwd", "fwd_save", "bwd")  # inference forward, training forward, backward
NVRTC_OPTIONS = _cupy.NVRTC_OPTIONS
W_PAD = -30.0  # exp(-exp(-30)) rounds to 1.0 in fp32: a padding token leaves the state unchanged
_IO_TYPE = {torch.float32: "float", torch.bfloat16: "wkv_bf16", torch.float16: "wkv_fp16"}  # wkv_io.cuh
_MANGLED_IO = {"f": torch.float32, "8wkv_bf16": torch.bfloat16, "8wkv_fp16": torch.float16}

#: ``launcher(name, grid, block, args, device)``: run kernel ``name`` (a :func:`kernel_name`)
#: with these arguments (numpy scalars, pointers as uint64) on the tensors' device.
Launcher = Callable[[str, tuple, tuple, tuple, torch.device], None]


def kernel_source() -> str:
    """The CUDA C source of the kernels (the package file ``bi_wkv7_catflip.cu``, its header ``wkv_io.cuh`` inlined)."""
    return _cupy.cuda_source(KERNEL_PATH)


def kernel_name(kind: str, dtype: torch.dtype, n: int = 64) -> str:
    """NVRTC name expression of one kernel, e.g. ``wkv7_catflip_fwd<wkv_bf16, 64, true>``."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    io_t = _IO_TYPE[dtype]
    if kind == "bwd":
        return f"wkv7_catflip_bwd<{io_t}, {n}>"
    return f"wkv7_catflip_fwd<{io_t}, {n}, {'true' if kind == 'fwd_save' else 'false'}>"


#: Tokens per state checkpoint (``cf_cp<IO>`` in the .cu): 16 for 16-bit I/O, 8 for float32.
checkpoint_tokens = _gpu.checkpoint_tokens


def padded_tokens(T: int) -> int:
    """T rounded up to a multiple of 16 (the training path's length)."""
    return -(-T // PAD_TOKENS) * PAD_TOKENS


def saved_bytes(B: int, T: int, H: int, N: int = 64, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes the training forward saves for the backward: fp32 ``sa`` + state checkpoints (2B sequences)."""
    tp = padded_tokens(T)
    return 4 * 2 * B * H * (tp * N + (tp // checkpoint_tokens(dtype)) * N * N)


# ----------------------------------------------------------------------------- the causal kernel
def _ptr(x: torch.Tensor | None) -> np.uint64:
    return np.uint64(0 if x is None else x.data_ptr())


def _pad(x: torch.Tensor, tp: int, value: float) -> torch.Tensor:
    T = x.shape[1]
    return x if tp == T else F.pad(x, (0, 0, 0, 0, 0, tp - T), value=value)


def causal_forward(xs, launcher: Launcher, save: bool):
    """Run the causal forward kernel on contiguous ``[B2, T, H, N]`` tensors ``xs = (r, w, k, v, a, b)``.

    ``save``: the training forward; ``T`` must then be a multiple of 16 and it returns
    ``(y, sa, ckpt)``; else ``(y, None, None)``.
    """
    r = xs[0]
    B2, T, H, N = r.shape
    if save and T % PAD_TOKENS:
        raise ValueError(f"r: the training forward needs T % {PAD_TOKENS} == 0, got T={T}")
    y = torch.empty_like(r)
    sa = ck = None
    if save:
        sa = torch.empty(r.shape, dtype=torch.float32, device=r.device)
        ck = torch.empty(B2, H, T // checkpoint_tokens(r.dtype), N, N, dtype=torch.float32, device=r.device)
    args = (*(_ptr(x) for x in xs), _ptr(y), _ptr(sa), _ptr(ck), np.int32(B2), np.int32(T), np.int32(H))
    launcher(kernel_name("fwd_save" if save else "fwd", r.dtype, N), (B2 * H,), (N,), args, r.device)
    return y, sa, ck


def causal_backward(xs, dy: torch.Tensor, sa: torch.Tensor, ck: torch.Tensor, launcher: Launcher):
    """Run the backward kernel; returns ``(dr, dw, dk, dv, da, db)`` in the I/O dtype."""
    r = xs[0]
    B2, T, H, N = r.shape
    grads = tuple(torch.empty_like(r) for _ in range(6))
    args = (
        *(_ptr(x) for x in xs),
        _ptr(dy),
        _ptr(sa),
        _ptr(ck),
        *(_ptr(x) for x in grads),
        np.int32(B2),
        np.int32(T),
        np.int32(H),
    )
    launcher(kernel_name("bwd", r.dtype, N), (B2 * H,), (2 * N,), args, r.device)
    return grads


class CausalWKV7(torch.autograd.Function):
    """Causal WKV7 of any T through the kernels: forward saves checkpoints + ``sa``, backward launches ``bwd``."""

    @staticmethod
    def forward(ctx, r, w, k, v, a, b, launcher):
        T = r.shape[1]
        tp = padded_tokens(T)
        xs = tuple(_pad(x.contiguous(), tp, W_PAD if i == 1 else 0.0) for i, x in enumerate((r, w, k, v, a, b)))
        y, sa, ck = causal_forward(xs, launcher, save=True)
        ctx.save_for_backward(*xs, sa, ck)
        ctx.launcher = launcher
        ctx.tokens = T
        return y[:, :T] if tp != T else y

    @staticmethod
    def backward(ctx, dy):
        *xs, sa, ck = ctx.saved_tensors
        T = ctx.tokens
        dy = _pad(dy.to(xs[0].dtype).contiguous(), xs[0].shape[1], 0.0)
        grads = causal_backward(xs, dy, sa, ck, ctx.launcher)
        if xs[0].shape[1] != T:
            grads = tuple(gr[:, :T] for gr in grads)
        return (*grads, None)


def catflip(r, w, k, v, a, b, g=None, *, launcher: Launcher, out: torch.Tensor | None = None) -> torch.Tensor:
    """The released construction: cat with the time-flipped copies, one causal kernel, merge in PyTorch.

    Builds an autograd graph (training forward, checkpoints saved) when grad mode is on and any
    input requires grad; otherwise runs the inference forward and saves nothing. ``out=`` is
    only accepted without a graph (PyTorch's ``out=`` is not differentiable). No validation here:
    :func:`audiorwkv_catflip` validates.
    """
    xs = (r, w, k, v, a, b, g)
    B = r.shape[0]
    train = _gpu.training_call(out, *xs)
    cat = [torch.cat([x, x.flip(1)], dim=0) for x in xs[:6]]
    if train:
        y2 = CausalWKV7.apply(*cat, launcher)
    else:
        y2, _, _ = causal_forward([x.contiguous() for x in cat], launcher, save=False)
    y_f, y_b = y2[:B], y2[B:].flip(1)
    if g is None:
        if out is None:
            return 0.5 * (y_f + y_b)
        return torch.add(y_f, y_b, out=out).mul_(0.5)
    # g * y_f + (1 - g) * y_b as one lerp: computed in fp32 and rounded once (docs/notes/training_kernels.md)
    if out is None:
        return torch.lerp(y_b, y_f, g[..., None])
    return torch.lerp(y_b, y_f, g[..., None], out=out)


# ----------------------------------------------------------------------------- CuPy launch
_check = _cupy.check
_KERNELS = _cupy.KernelCache(
    NAME, lambda: kernel_source(), [[kernel_name(kind, dt) for kind in KINDS] for dt in DTYPES]
)


def cupy_launcher(name: str, grid: tuple, block: tuple, args: tuple, device: torch.device) -> None:
    """Launch kernel ``name`` through CuPy on torch's current stream of ``device``."""
    idx = _KERNELS.device_index(device)
    _cupy.launch(_KERNELS.kernel(name, idx), grid, block, args, device, idx)


@_cupy.register_bi_wkv7(
    NAME,
    DTYPES,
    HEAD_SIZES,
    priority=5,
    backward=True,
    description="AudioRWKV's released construction: inputs + flipped copies as 2B, one causal CUDA kernel, "
    "merge in PyTorch; differentiable",
)
def audiorwkv_catflip(r, w, k, v, a, b, g=None, *, out=None):
    """AudioRWKV's released construction: cat/flip to 2B, one causal CUDA kernel, PyTorch merge; differentiable."""
    _cupy.validate_bi_wkv7_call(NAME, DTYPES, HEAD_SIZES, r, w, k, v, a, b, g, out)
    return catflip(r, w, k, v, a, b, g, launcher=cupy_launcher, out=out)


# ----------------------------------------------------------------------------- compile report
_MANGLED = re.compile(r"(wkv7_catflip_fwd|wkv7_catflip_bwd)I(f|8wkv_bf16|8wkv_fp16)Li(\d+)E(?:Lb([01])E)?")


def _instantiation(name: str) -> str:
    """The explicit instantiation nvcc needs for the name expression ``name``."""
    io_t = name[name.index("<") + 1 : name.index(",")]
    p = f"const {io_t}*"
    if name.startswith("wkv7_catflip_bwd"):
        params = [p] * 7 + ["const float*"] * 2 + [f"{io_t}*"] * 6
    else:
        params = [p] * 6 + [f"{io_t}*", "float*", "float*"]
    return f"template __global__ void {name}({', '.join(params)}, int, int, int);"


def compile_report(cc: int = 90, compiler: str = "auto", dtypes=DTYPES) -> list[dict]:
    """Compile the three kernels per dtype for ``sm_<cc>`` without a GPU; one dict per kernel.

    ``compiler``: ``"nvrtc"`` (cuda.core + nvidia-cuda-nvrtc: what CuPy uses at run time),
    ``"nvcc"``, or ``"auto"`` (NVRTC, else nvcc). Keys as ``cupy_cuda``'s report: impl, kernel,
    config, registers, shared_bytes, local_bytes (stack frame + spill stores), spill_bytes,
    compiler, plus ``name`` (the name expression). With neither compiler installed the row says
    ``skipped`` and which extra brings NVRTC; a source that does not compile raises.
    """
    names = [kernel_name(kind, dt, n) for dt in dtypes for n in HEAD_SIZES for kind in KINDS]
    return _cupy.compile_rows(NAME, kernel_source(), names, cc, compiler, _instantiation, _MANGLED, _describe)


def _describe(m: re.Match) -> tuple[str, str, str]:
    """(kernel, config, name expression) of a compiled entry whose mangled name ``_MANGLED`` matched."""
    dt, n = _MANGLED_IO[m.group(2)], int(m.group(3))
    kind = "bwd" if m.group(1).endswith("bwd") else ("fwd_save" if m.group(4) == "1" else "fwd")
    block = 2 * n if kind == "bwd" else n
    return (
        m.group(1),
        f"dtype={str(dt).replace('torch.', '')} N={n} kind={kind} block={block}",
        kernel_name(kind, dt, n),
    )
