"""Launchers that run the CUDA C kernels on the host emulation: the drivers' ctypes entry points and
``Launcher`` objects the kernel modules accept (``launcher(name, grid, block, args, device)``).

* :func:`declare`: argument types of a loaded driver's entry points;
* :class:`CupyLauncher`: ``cupy_cuda``'s kernels -- the inference forward
  (``bi_wkv7_host.cpp``), the training forward and the backward (``bi_wkv7_train_host.cpp``);
* :class:`CatflipLauncher`: ``audiorwkv_catflip``'s three kernels (``catflip_host.cpp``).

Each records ``(name, grid, block)`` of every launch in ``calls`` and refuses a geometry or an
argument count its driver does not launch (RuntimeError).
"""

from __future__ import annotations

import ctypes

import torch

DTYPE_CODE = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}
IO_CODE = {"float": 0, "wkv_bf16": 1, "wkv_fp16": 2}

_PTR, _I32, _U32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint
_PTRS = ctypes.POINTER(ctypes.c_void_p)
#: entry point -> (argument types) of each driver (return type: int, 0 on success)
ENTRY_POINTS = {
    "bi_wkv7_host.cpp": {
        "wkv_host_bi_wkv7": [_I32, _I32, *[_PTR] * 7, _PTR, _PTR, _I32, _I32, _I32],
        "wkv_host_launch": [_I32, _I32, _U32, _U32, *[_PTR] * 7, _PTR, _PTR, _I32, _I32, _I32],
    },
    "bi_wkv7_train_host.cpp": {
        "cupy_train_host_fwd": [_I32, _I32, _U32, _U32, _PTRS, _I32, _I32, _I32],
        "cupy_train_host_bwd": [_I32, _U32, _U32, _PTRS, _I32, _I32, _I32],
    },
    "catflip_host.cpp": {
        "cf_host_fwd": [_I32, _I32, _U32, _U32, _PTRS, _I32, _I32, _I32],
        "cf_host_bwd": [_I32, _U32, _U32, _PTRS, _I32, _I32, _I32],
    },
}


def declare(lib: ctypes.CDLL, driver: str) -> ctypes.CDLL:
    """Set the argument and return types of ``driver``'s entry points on ``lib``; returns ``lib``."""
    if driver not in ENTRY_POINTS:
        raise ValueError(f"driver: expected one of {', '.join(ENTRY_POINTS)}, got {driver!r}")
    for name, argtypes in ENTRY_POINTS[driver].items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, ctypes.c_int
    if driver == "bi_wkv7_host.cpp":
        lib.wkv_host_float_to_bf16.argtypes = [_PTR, _PTR, ctypes.c_long]
        lib.wkv_host_bf16_to_float.argtypes = [_PTR, _PTR, ctypes.c_long]
    return lib


def _split(args) -> tuple[list[int], int, int, int]:
    """Pointers and (B, T, H) of a launch's arguments (the last three are the sizes)."""
    return [int(x) for x in args[:-3]], *(int(x) for x in args[-3:])


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise RuntimeError(f"host launch: {what}")


class CupyLauncher:
    """``cupy_cuda``'s launcher on the host emulation. ``fwd``: the loaded ``bi_wkv7_host.cpp`` (the
    inference kernel), ``train``: ``bi_wkv7_train_host.cpp`` (training forward and backward); either
    may be None when its kernels are not launched."""

    def __init__(self, train: ctypes.CDLL | None = None, fwd: ctypes.CDLL | None = None):
        from wkvbench.impls.bi_wkv7_cupy import bwd
        from wkvbench.impls.bi_wkv7_cupy import fwd as fwd_mod

        self.lib, self.fwd_lib = train, fwd
        self.names = (fwd_mod.KERNEL, fwd_mod.FWD_KERNEL, bwd.BWD_KERNEL)
        self.calls: list[tuple[str, tuple, tuple]] = []

    def __call__(self, name, grid, block, args, device):
        _check(device.type == "cpu", "the host emulation works on CPU tensors")
        kernel, params = name.split("<")[0], [p.strip() for p in name[name.index("<") + 1 : -1].split(",")]
        _check(kernel in self.names and block == (128,), f"unknown kernel {name!r} or block {block}")
        ptrs, B, T, H = _split(args)
        self.calls.append((name, grid, block))
        arr = (ctypes.c_void_p * len(ptrs))(*ptrs)
        if kernel == self.names[2]:
            _check(grid == (2 * B * H,) and len(ptrs) == 17, f"backward grid {grid}, {len(ptrs)} pointers")
            rc = self.lib.cupy_train_host_bwd(IO_CODE[params[0]], grid[0], block[0], arr, B, T, H)
        else:
            split = int(params[2])
            _check(grid == (B * H * split,), f"forward grid {grid} at SPLIT {split}")
            if kernel == self.names[1]:
                _check(len(ptrs) == 11, f"training forward with {len(ptrs)} pointers")
                rc = self.lib.cupy_train_host_fwd(IO_CODE[params[0]], split, grid[0], block[0], arr, B, T, H)
            else:
                _check(len(ptrs) == 9, f"inference forward with {len(ptrs)} pointers")
                rc = self.fwd_lib.wkv_host_launch(IO_CODE[params[0]], split, grid[0], block[0], *ptrs, B, T, H)
        _check(rc == 0, f"{name} returned {rc}")


class CatflipLauncher:
    """``audiorwkv_catflip``'s launcher on the host emulation (``lib``: the loaded ``catflip_host.cpp``)."""

    def __init__(self, lib: ctypes.CDLL):
        from wkvbench.impls import bi_wkv7_catflip as mod

        self.lib = lib
        self.kernels = {
            mod.kernel_name(kind, dt): (kind, code) for dt, code in DTYPE_CODE.items() for kind in mod.KINDS
        }
        self.calls: list[tuple[str, tuple, tuple]] = []

    def __call__(self, name, grid, block, args, device):
        _check(device.type == "cpu", "the host emulation works on CPU tensors")
        _check(name in self.kernels, f"unknown kernel {name!r}")
        kind, code = self.kernels[name]
        self.calls.append((kind, grid, block))
        ptrs, B2, T, H = _split(args)
        _check(
            grid == (B2 * H,) and block == ((2 if kind == "bwd" else 1) * 64,), f"{kind}: grid {grid}, block {block}"
        )
        arr = (ctypes.c_void_p * len(ptrs))(*ptrs)
        if kind == "bwd":
            rc = self.lib.cf_host_bwd(code, grid[0], block[0], arr, B2, T, H)
        else:
            rc = self.lib.cf_host_fwd(code, int(kind == "fwd_save"), grid[0], block[0], arr, B2, T, H)
        _check(rc == 0, f"{name} returned {rc}")
