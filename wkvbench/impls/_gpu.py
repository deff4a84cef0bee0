"""What the kernel modules of ``wkvbench/impls/`` need at run time: availability probes and launch glue.

* availability: optional imports (:func:`try_import`), the "installed and importable" check of
  package-backed implementations (:func:`import_check`), the Triton interpreter switch and check
  (:func:`triton_interpreting`, :func:`triton_check`), the Numba CUDA simulator
  (:func:`numba_simulating`, with a fix for a race in its shared arrays), libNVVM
  (:func:`nvvm_status`), and the deferral of device probes while a sweep plans;
* launch glue: the ``out=`` check (:func:`validate_out`, :func:`check_out`), the SM count of a
  device (:func:`sm_count`; :data:`DEFAULT_SMS`, the H100's 132, when no GPU can be asked: the one
  place that number is written), and the training glue of the recurrent Bi-WKV7 kernels
  (:func:`training_call`, :func:`checkpoint_tokens`, :func:`sa_checkpoint_bytes`).

The compile checks of ``wkvbench kernels`` are ``_compile.py``. The leading underscore keeps this
module out of the implementation modules: it registers nothing.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import warnings
from collections.abc import Callable

import torch

DEFAULT_SMS = 132  # H100 SXM: the launch configurations' assumption when no GPU can be asked


# ----------------------------------------------------------------------------- availability
def try_import(name: str) -> tuple[object | None, str]:
    """``(module, "")`` if ``name`` imports, else ``(None, "<Type>: <message>")``.

    Any exception counts as missing: a package whose CUDA libraries are broken must show up as
    an unavailable implementation with its reason, not take the registry down.
    """
    try:
        return importlib.import_module(name), ""
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def import_check(spec: str, missing: str, load: Callable[[], object], label: str | None = None) -> tuple[bool, str]:
    """The availability check of a package-backed implementation: ``(ok, reason)``.

    ``missing`` is the reason when no module ``spec`` is installed; ``load()`` imports what the
    implementation calls (compiled extensions included), and its exception becomes the reason
    ``"<label> does not import: <Type>: <message>"`` (label defaults to ``spec``).
    """
    if importlib.util.find_spec(spec) is None:
        return False, missing
    try:
        load()
    except Exception as exc:  # ImportError, or an extension built for another torch/CUDA
        return False, f"{label or spec} does not import: {type(exc).__name__}: {exc}"
    return True, "ok"


_DEFERRED_PROBES = 0


@contextlib.contextmanager
def deferred_device_probes():
    """Within this block, checks that would run a kernel to probe a CUDA device answer ok without it.

    The sweep's parent plans inside it, so it never creates a CUDA context (a probe's tiny call
    would hold ~500 MB of the GPU for the whole run); the worker runs the real probe before the
    implementation's first call and records ``skipped`` with the reason if it fails.
    """
    global _DEFERRED_PROBES
    _DEFERRED_PROBES += 1
    try:
        yield
    finally:
        _DEFERRED_PROBES -= 1


def device_probes_deferred() -> bool:
    """Whether a :func:`deferred_device_probes` block is active."""
    return _DEFERRED_PROBES > 0


def triton_interpreting() -> bool:
    """Whether ``TRITON_INTERPRET`` asks for the Triton interpreter (CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_check(has_triton: bool, device: torch.device) -> tuple[bool, str]:
    """The availability check of every Triton implementation (CUDA, or CPU under the interpreter)."""
    if not has_triton:
        return False, "triton not installed"
    if device.type == "cpu" and not triton_interpreting():
        return False, "CPU needs TRITON_INTERPRET=1 (wkvbench --interpret)"
    return True, "ok"


NVVM_NEEDS = "needs libNVVM: pip install 'numba-cuda[cu13]' or a CUDA toolkit"


def nvvm_status() -> tuple[bool, str]:
    """Whether numba-cuda can load libNVVM (needed to compile any Numba CUDA kernel): ``(ok, reason)``."""
    try:
        from numba.cuda.cudadrv import nvvm

        if nvvm.is_available():
            return True, "ok"
        return False, "numba-cuda cannot load libNVVM"
    except Exception as exc:
        return False, f"numba-cuda cannot load libNVVM ({type(exc).__name__}: {exc})"


def numba_simulating() -> bool:
    """Whether numba-cuda runs its CPU simulator (``NUMBA_ENABLE_CUDASIM=1`` when it was imported)."""
    try:
        from numba.cuda.core import config
    except ImportError:  # older numba-cuda: the flag lives on numba.config
        from numba import config
    return bool(getattr(config, "ENABLE_CUDASIM", False))


def numba_simulator_shared_arrays_threadsafe() -> None:
    """Make the simulator's ``cuda.shared.array`` one array per block and call site (see below); warns if it cannot."""
    try:
        _patch_simulator_shared_arrays()
    except Exception as exc:  # a changed simulator layout: keep the original (racy) behaviour
        warnings.warn(f"numba_cuda: could not patch the simulator's shared arrays: {exc}", stacklevel=2)


def _patch_simulator_shared_arrays() -> None:
    """Work around a race in the CUDA simulator's ``cuda.shared.array`` (numba-cuda <= 0.30).

    The simulator runs one Python thread per CUDA thread and gives every thread of a block the
    same numpy array for a ``cuda.shared.array`` call site by a check-then-set on a dict
    (``FakeCUDAShared.array``) without a lock. When the GIL switches between the check and the
    set, two threads of one block get different arrays: staged values written by one thread are
    never seen by another, which reads whatever ``np.empty`` returned (seen here once as a
    float32 result off by 1.6e-3: stale memory from an earlier bf16 launch). This replaces the
    method by the same logic under a lock, keyed exactly as the original (caller's file, line).
    Real GPUs are unaffected; this runs only when the simulator is on.
    """
    import sys
    import threading

    import numba
    import numpy as np
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    cls = kernelapi.FakeCUDAShared
    if getattr(cls, "_wkvbench_threadsafe", False):
        return
    original = cls.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # dynamic shared memory / unsupported: as before
            return original(self, shape, dtype, alignment)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                if isinstance(dtype, numba.types.Type):
                    dtype = numpy_support.as_dtype(dtype)
                res = np.empty(shape, dtype)
                self._allocations[caller] = res
        return res

    cls.array = array
    cls._wkvbench_threadsafe = True


# ----------------------------------------------------------------------------- launch glue
def validate_out(out: torch.Tensor | None, like: torch.Tensor) -> None:
    """TypeError/ValueError naming ``out`` unless it is None or can take the result (contiguous, ``like``'s
    shape, dtype and device)."""
    if out is None:
        return
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out: expected a torch.Tensor or None, got {type(out).__name__}")
    if out.shape != like.shape or out.dtype != like.dtype or out.device != like.device or not out.is_contiguous():
        layout = "" if out.is_contiguous() else "non-contiguous "
        raise ValueError(
            f"out: expected a contiguous {tuple(like.shape)} {like.dtype} tensor on {like.device}, "
            f"got a {layout}{tuple(out.shape)} {out.dtype} tensor on {out.device}"
        )


def check_out(out: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """``out`` after :func:`validate_out`, or a new contiguous tensor like ``like`` if it is None."""
    validate_out(out, like)
    return torch.empty_like(like, memory_format=torch.contiguous_format) if out is None else out


def training_call(out: torch.Tensor | None, *xs: torch.Tensor | None) -> bool:
    """Whether autograd records this call (grad mode on and a tensor of ``xs`` requires grad).

    The training path refuses ``out=`` (a ValueError naming it): PyTorch's ``out=`` is not differentiable.
    """
    train = torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in xs)
    if train and out is not None:
        raise ValueError("out: not supported when an input requires grad (out= is not differentiable)")
    return train


def checkpoint_tokens(dtype: torch.dtype) -> int:
    """Scan steps between fp32 state checkpoints of a backward that rebuilds states by division.

    Dividing by ``d >= 0.545`` amplifies a rounding error up to 1.83x a step; with 16 steps float32
    gradients at strong decay missed the 1e-4 bar (docs/notes/training_kernels.md), with 8 they do
    not. 16-bit I/O keeps the official kernel's 16 (its errors are the I/O rounding).
    """
    return 8 if dtype == torch.float32 else 16


def sa_checkpoint_bytes(B: int, T: int, H: int, N: int, dtype: torch.dtype) -> int:
    """fp32 ``sa`` (every token) plus ``ceil(T / CP)`` state checkpoints, both directions of ``B * H`` heads."""
    return 4 * 2 * B * H * (T * N + -(-T // checkpoint_tokens(dtype)) * N * N)


@functools.cache
def _cuda_sm_count(index: int) -> int:
    return int(torch.cuda.get_device_properties(index).multi_processor_count)


def sm_count(device: torch.device | str) -> int:
    """SMs of a CUDA device (asked once per device); :data:`DEFAULT_SMS` for any other device."""
    device = torch.device(device)
    if device.type != "cuda":
        return DEFAULT_SMS
    return _cuda_sm_count(device.index if device.index is not None else torch.cuda.current_device())
