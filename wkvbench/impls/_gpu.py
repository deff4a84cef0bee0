"""GPU tooling shared by the kernel modules of ``wkvbench/impls/``.

The kernel modules (``bi_wkv7_triton``, ``bi_wkv7_cupy``, ``bi_wkv7_numba``,
``bi_selective_scan_triton``) hold a kernel, its launch and its registration; what they have in
common lives here:

* availability: optional imports (:func:`try_import`), the "installed and importable" check of
  package-backed implementations (:func:`import_check`), whether the Triton interpreter is on
  (:func:`triton_interpreting`), the check every Triton implementation shares
  (:func:`triton_check`), whether numba-cuda runs its simulator (:func:`numba_simulating`, with
  a fix for a race in its shared arrays), finds libNVVM (:func:`nvvm_status`) and NVRTC
  (:func:`nvrtc_version`);
* launch glue: the ``out=`` argument check (:func:`validate_out`, :func:`check_out`) and the SM count of a device,
  with the H100's 132 as the fallback when no GPU can be asked (:func:`sm_count`);
* training glue of the recurrent Bi-WKV7 kernels: whether a call takes the training path
  (:func:`training_call`), the state checkpoint interval (:func:`checkpoint_tokens`) and the bytes
  a forward that saves ``sa`` and checkpoints keeps (:func:`sa_checkpoint_bytes`);
* compile checks for ``wkvbench kernels`` (``compile_report(cc)`` in each module): the
  compilers' tools (:func:`find_ptxas`, :func:`triton_tool`), their output
  (:func:`parse_ptxas`, :func:`cuobjdump_usage`), Triton's compile loop
  (:func:`triton_compile_rows`) and the rows themselves. A check whose tool is not installed
  raises :class:`ToolMissing`; :func:`skipped_rows` turns it into rows that say
  ``skipped: needs pip install 'wkvbench[<extra>]'`` instead of a compile error.

The leading underscore keeps this module out of the built-in implementation modules
(``wkvbench/impls/<op>_<backend>.py``): it registers nothing.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterable

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


def nvrtc_version() -> tuple[int, int]:
    """``(major, minor)`` of the NVRTC that ``cuda.bindings`` loads; :class:`ToolMissing` if none."""
    try:
        from cuda.bindings import nvrtc

        res, major, minor = nvrtc.nvrtcVersion()
        if int(res) != 0:
            raise RuntimeError(f"nvrtcVersion returned {res}")
    except Exception as exc:
        raise ToolMissing.extra("compile", f"NVRTC: {type(exc).__name__}: {exc}") from exc
    return int(major), int(minor)


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


# ----------------------------------------------------------------------------- compile checks
class ToolMissing(RuntimeError):
    """A compile check's tool is not installed here: the check is skipped, not failed.

    ``needs`` says what brings the tool, e.g. ``needs pip install 'wkvbench[compile]'``.
    """

    def __init__(self, needs: str, detail: str = ""):
        self.needs = needs
        self.detail = detail
        super().__init__(needs + (f" ({detail})" if detail else ""))

    @classmethod
    def extra(cls, extra: str, detail: str = "") -> ToolMissing:
        """The tool comes with the package's optional dependencies ``extra``."""
        return cls(f"needs pip install 'wkvbench[{extra}]'", detail)


def skipped_rows(impls: Iterable[str], exc: ToolMissing) -> list[dict]:
    """One row per implementation whose compile check cannot run here, with the reason."""
    return [{"impl": name, "kernel": "-", "config": "-", "skipped": str(exc)} for name in impls]


def report_or_skip(impls: Iterable[str], make_rows: Callable[[], list[dict]]) -> list[dict]:
    """``make_rows()``, or :func:`skipped_rows` if one of its tools is missing."""
    try:
        return make_rows()
    except ToolMissing as exc:
        return skipped_rows(impls, exc)


def find_ptxas() -> str | None:
    """A ptxas: ``$PTXAS``, the one on ``PATH``, next to nvcc, or the one bundled with Triton."""
    cands = [os.environ.get("PTXAS", ""), shutil.which("ptxas") or ""]
    nvcc = shutil.which("nvcc") or "/usr/local/bin/nvcc"
    cands.append(os.path.join(os.path.dirname(nvcc), "ptxas"))
    triton, _ = try_import("triton")
    if triton is not None:
        cands.append(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas"))
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def find_nvcc() -> str | None:
    """nvcc on ``PATH`` or at the usual toolkit locations."""
    for cand in (shutil.which("nvcc"), "/usr/local/bin/nvcc", "/usr/local/cuda/bin/nvcc"):
        if cand and os.path.isfile(cand):
            return cand
    return None


def tool_release(tool: str) -> str:
    """``"13.0"`` from ``tool --version`` (ptxas, nvcc), ``"?"`` if it does not say."""
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"release ([\d.]+)", out)
    return m.group(1) if m else "?"


_PTXAS_ENTRY = re.compile(r"(?:Compiling entry function|Function properties for) '?(\w+)'?")
_PTXAS_FIELDS = (
    ("stack_bytes", re.compile(r"(\d+) bytes stack frame")),
    ("spill_stores", re.compile(r"(\d+) bytes spill stores")),
    ("spill_loads", re.compile(r"(\d+) bytes spill loads")),
    ("registers", re.compile(r"Used (\d+) registers")),
    ("shared_bytes", re.compile(r"(\d+) bytes smem")),
)


def parse_ptxas(log: str) -> dict[str, dict]:
    """``ptxas -v`` output -> {entry name: registers, shared_bytes, stack_bytes, spill_stores, spill_loads}."""
    stats: dict[str, dict] = {}
    cur = None
    for line in log.splitlines():
        m = _PTXAS_ENTRY.search(line)
        if m:
            cur = stats.setdefault(
                m.group(1),
                {"registers": None, "shared_bytes": 0, "stack_bytes": 0, "spill_stores": 0, "spill_loads": 0},
            )
            continue
        if cur is None:
            continue
        for key, pat in _PTXAS_FIELDS:
            mm = pat.search(line)
            if mm:
                cur[key] = int(mm.group(1))
    return stats


def run_ptxas(ptxas: str, ptx: str, cc: int) -> str:
    """``ptxas -arch=sm_<cc> -v`` on PTX text; its log (RuntimeError with the log if it fails)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        proc = subprocess.run(
            [ptxas, f"-arch=sm_{cc}", "-v", "-o", os.path.join(tmp, "k.cubin"), src],
            capture_output=True,
            text=True,
            timeout=120,
        )
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"ptxas failed: {text.strip()[-2000:]}")
    return text


def resource_row(stats: dict) -> dict:
    """The row fields of one kernel's ``parse_ptxas`` entry (local = stack frame + spill stores)."""
    return {
        "registers": stats["registers"],
        "shared_bytes": stats["shared_bytes"],
        "local_bytes": stats["stack_bytes"] + stats["spill_stores"],
        "spill_bytes": stats["spill_stores"] + stats["spill_loads"],
    }


def triton_tool(name: str) -> str:
    """Path of a binary bundled with Triton's NVIDIA backend (``ptxas``, ``cuobjdump``)."""
    triton, err = try_import("triton")
    if triton is None:
        raise ToolMissing.extra("triton", err)
    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
    if not os.path.isfile(path):
        raise ToolMissing.extra("triton", f"{name} is not bundled with this triton")
    return path


def cuobjdump_usage(cubin: bytes) -> dict:
    """``{"REG": .., "STACK": .., "SHARED": .., "LOCAL": ..}`` of a cubin, from Triton's cuobjdump."""
    tool = triton_tool("cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        proc = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"cuobjdump failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return {key: int(val) for key, val in re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", proc.stdout)}


def triton_compile_rows(variants: list[dict], cc: int) -> list[dict]:
    """Compile Triton kernel variants for ``sm_<cc>`` without a GPU; one row per variant.

    A variant: ``impl``, ``fn`` (a ``@triton.jit`` function), ``signature``, ``constexprs``,
    ``options`` (num_warps, ...), ``config`` (the row's label) and optionally ``align`` (give
    pointer arguments the 16-byte divisibility hint a real launch gives them). Call it without
    ``TRITON_INTERPRET`` (``wkvbench kernels`` runs it in a clean subprocess). ``local_bytes`` is
    the cubin's local memory plus stack (register spills show up there); ``shared_bytes`` the
    shared memory Triton allocates (cuobjdump's SHARED adds a fixed 1 KB reservation at sm_90). A variant that
    does not compile gets an ``error`` and the others still run.
    """
    triton, err = try_import("triton")
    if triton is None:
        raise ToolMissing.extra("triton", err)
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    triton_tool("cuobjdump")  # a missing tool skips the whole check instead of failing every row
    target = GPUTarget("cuda", cc, 32)
    rows = []
    for var in variants:
        sig = var["signature"]
        attrs = None
        if var.get("align"):
            attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(sig) if sig[n].startswith("*")}
        row = {"impl": var["impl"], "kernel": var["fn"].__name__, "config": var["config"],
               "compiler": f"triton {triton.__version__} ptxas"}  # fmt: skip
        try:
            src = ASTSource(var["fn"], sig, constexprs=var["constexprs"], attrs=attrs)
            ck = triton.compile(src, target=target, options=var["options"])
            use = cuobjdump_usage(ck.asm["cubin"])
            row.update(registers=use.get("REG", -1), shared_bytes=int(ck.metadata.shared),
                       local_bytes=use.get("LOCAL", 0) + use.get("STACK", 0))  # fmt: skip
        except Exception as exc:  # report, don't stop: one broken variant must not hide the others
            row.update(registers=-1, shared_bytes=-1, local_bytes=-1, error=f"{type(exc).__name__}: {exc}")
        rows.append(row)
    return rows
