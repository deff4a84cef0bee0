"""What the Numba CUDA Bi-WKV7 kernels share: the numba-cuda import, the kernel-template expansion, launching.

The kernels are Python-source templates (``fwd.py``, ``bwd.py``) whose I/O-dtype loads and stores
(``$LD``, ``$ST``) are spliced in per dtype here (:func:`expand_template`), built into functions
(:func:`kernel_function`) and compiled (:func:`jit`); :func:`launch` runs one on torch's current
stream, or in the CUDA simulator on CPU tensors. Design: docs/notes/numba_bi_wkv7.md.
"""

from __future__ import annotations

import inspect
import linecache
import math
import warnings

import numpy as np
import torch

from wkvbench.impls import _gpu

cuda, _IMPORT_ERROR = _gpu.try_import("numba.cuda")  # numba-cuda; None also for a broken CUDA-bindings install
numba, _ = _gpu.try_import("numba") if cuda is not None else (None, "")
nt, _ = _gpu.try_import("numba.types") if cuda is not None else (None, "")
SIMULATOR = cuda is not None and _gpu.numba_simulating()


if SIMULATOR:
    _gpu.numba_simulator_shared_arrays_threadsafe()

N = 64  # head size (the only one compiled)
NVEC = 5  # key-side vectors staged per step and direction: r, d, k, a, b
ROWS_CHOICES = (64, 32, 16)  # value rows per block (per direction), a launch parameter
MAXPER = N // min(ROWS_CHOICES)
KINDS = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
_DTYPES = tuple(KINDS)
_IO_TYPES = {"f32": "float32", "f16": "float16", "bf16": "int16"}  # numba element type per I/O kind


# ----------------------------------------------------------------------------- kernel templates
# Load (fp32 value) expressions and store statements per I/O kind. bf16 arrays are int16 views:
# widening is exact (bits << 16); narrowing rounds to nearest even on the bit pattern.
_LOADS = {
    "f32": "{x}[{i}]",
    "f16": "nt.float32({x}[{i}])",
    "bf16": "libdevice.int_as_float(nt.int32(nt.int32({x}[{i}]) << nt.int32(16)))",
    "bf16_sim": "_sim_ld_bf16({x}, {i})",
}
_STORES = {
    "f32": ["{x}[{i}] = {f}"],
    "f16": ["{x}[{i}] = nt.float16({f})"],
    "bf16": [
        "_f = {f}",
        "_u = nt.int64(libdevice.float_as_int(_f)) & 0xFFFFFFFF",
        "_hi = (_u + 0x7FFF + ((_u >> 16) & 1)) >> 16",
        "if _f != _f:",
        "    _hi = nt.int64(0x7FC0)",
        "{x}[{i}] = nt.int16(_hi)",
    ],
    "bf16_sim": ["_sim_st_bf16({x}, {i}, {f})"],
}


def _sim_ld_bf16(x, idx):
    return np.uint32((int(x[idx]) & 0xFFFF) << 16).view(np.float32)


def _sim_st_bf16(x, idx, f):
    f = np.float32(f)
    if f != f:
        hi = 0x7FC0
    else:
        u = int(f.view(np.uint32))
        hi = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    x[idx] = np.uint16(hi).view(np.int16)


def _split_args(text: str) -> list[str]:
    """Split a macro's argument list on top-level commas."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        cur += ch
    parts.append(cur.strip())
    return parts


def _macro_call(line: str, name: str) -> tuple[int, int, list[str]] | None:
    """Locate ``$name(...)`` in ``line``: (start, end, args) or None."""
    start = line.find("$" + name + "(")
    if start < 0:
        return None
    pos, depth = start + len(name) + 2, 1
    while depth:
        depth += {"(": 1, ")": -1}.get(line[pos], 0)
        pos += 1
    return start, pos, _split_args(line[start + len(name) + 2 : pos - 1])


def _smem_alignment_supported() -> bool:
    """Whether this numba-cuda's ``cuda.shared.array`` takes ``alignment=`` (16 lets NVVM emit ld.shared.v4)."""
    if SIMULATOR:  # no cuda.shared outside a simulated kernel, and alignment means nothing there
        return False
    try:
        return "alignment" in inspect.signature(cuda.shared.array).parameters
    except (TypeError, ValueError):
        return False


def expand_template(template: str, kind: str) -> str:
    """A kernel template with ``$LD``/``$ST``/``$SMEM_ALIGN`` expanded for I/O ``kind`` (also the training kernels')."""
    key = kind + "_sim" if (SIMULATOR and kind == "bf16") else kind
    lines = []
    template = template.replace("$SMEM_ALIGN", ", alignment=16" if _smem_alignment_supported() else "")
    for line in template.splitlines():
        while (m := _macro_call(line, "LD")) is not None:
            x, i = m[2]
            line = line[: m[0]] + _LOADS[key].format(x=x, i=i) + line[m[1] :]
        m = _macro_call(line, "ST")
        if m is not None:
            indent = line[: m[0]]
            x, i, f = m[2]
            lines.extend(indent + st.format(x=x, i=i, f=f) for st in _STORES[key])
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def kernel_namespace() -> dict:
    """The globals a generated kernel's source runs in."""
    namespace = {
        "cuda": cuda,
        "nt": nt,
        "math": math,
        "np": np,
        "N": N,
        "NVEC": NVEC,
        "MAXPER": MAXPER,
        "_sim_ld_bf16": _sim_ld_bf16,
        "_sim_st_bf16": _sim_st_bf16,
    }
    if not SIMULATOR:
        from numba.cuda import libdevice

        namespace["libdevice"] = libdevice
    return namespace


def kernel_function(template: str, name: str, kind: str, **extra):
    """The (uncompiled) Python function ``name`` of ``template`` expanded for I/O ``kind``; ``extra``
    globals join :func:`kernel_namespace`."""
    src = expand_template(template, kind)
    filename = f"<wkvbench numba {name} {kind}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)  # readable tracebacks
    namespace = kernel_namespace()
    namespace.update(extra)
    exec(compile(src, filename, "exec"), namespace)
    return namespace[name]


def io_array(kind: str):
    """The numba array type of an I/O ``kind`` tensor, flattened (bfloat16 as int16)."""
    return getattr(nt, _IO_TYPES[kind])[::1]


def jit(fn, signature, launch_bounds=None):
    """``fn`` compiled for its ``signature`` (in the simulator: jitted lazily, no signature)."""
    if SIMULATOR:
        return cuda.jit(fn)
    if launch_bounds is None:
        return cuda.jit(signature)(fn)
    return cuda.jit(signature, launch_bounds=launch_bounds)(fn)


# ----------------------------------------------------------------------------- launching
def choose_rows_per_block(batch_heads: int, sms: int = _gpu.DEFAULT_SMS) -> int:
    """Value rows per block: the largest of 64/32/16 that gives at least one block per SM, else 16.

    Fewer rows per block multiply the blocks (batch 1 at H = 12: 48 blocks at 16 rows instead
    of 12 at 64) at the price of each block loading the token's key-side vectors itself
    (64/R times the L2 reads of r, w, k, a, b).
    """
    for R in ROWS_CHOICES:
        if batch_heads * (N // R) >= sms:
            return R
    return ROWS_CHOICES[-1]


def _flat(x: torch.Tensor, kind: str) -> torch.Tensor:
    return (x.view(torch.int16) if kind == "bf16" else x).reshape(-1)


def _flat_detached(x: torch.Tensor, kind: str) -> torch.Tensor:
    return _flat(x.detach().contiguous(), kind)


def launch(kern, grid: tuple, block: int, device: torch.device, args: list) -> None:
    """Launch ``kern`` on torch's current stream (or in the simulator on CPU tensors); tensors zero copy."""
    if device.type == "cpu":  # simulator: numpy views share memory with the tensors
        kern[grid, block](*[x.numpy() if isinstance(x, torch.Tensor) else x for x in args])
        return
    with cuda.gpus[device.index or 0]:
        stream = cuda.external_stream(torch.cuda.current_stream(device).cuda_stream)
        arrs = [cuda.as_cuda_array(x, sync=False) if isinstance(x, torch.Tensor) else x for x in args]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Gg]rid size.*")  # batch-1 grids are small by design
            kern[grid, block, stream](*arrs)
