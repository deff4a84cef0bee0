"""CuPy glue shared by the CUDA C kernel packages (``bi_wkv7_cupy``, ``bi_wkv7_catflip``).

Both packages keep their ``.cu`` files next to their Python, compile them with NVRTC through ``cupy.RawModule``
and launch torch tensors' raw device pointers on torch's current stream. What they share:

* availability: CuPy imported once (:data:`cp`, :data:`CUPY_ERROR`) and the check that it sees
  the CUDA device and can load NVRTC (:func:`check`);
* source: :func:`cuda_source` reads a ``.cu`` file and inlines the package headers it includes
  (``wkv_io.cuh``, in :data:`INCLUDE_DIR`), so NVRTC and nvcc get one self-contained string and
  CuPy's kernel cache, which keys on the source text, sees a change to a header;
* registration of a Bi-WKV7 kernel launched through this glue (:func:`register_bi_wkv7`) and its
  argument checks (:func:`validate_bi_wkv7_call`);
* launch:
  :class:`KernelCache` (one ``RawModule`` per group of name expressions and device, the kernel
  handles per name and device, the once-per-device check) and :func:`launch` on torch's current
  stream;
* compile report: :func:`compile_log` compiles name expressions for ``sm_<cc>`` without a GPU
  through NVRTC (``cuda.core``) or nvcc and returns the ``ptxas -v`` log; :func:`compile_rows`
  turns it into the rows of ``wkvbench kernels``, or into a ``skipped`` row when no compiler is
  installed (:class:`_compile.ToolMissing`).

The leading underscore keeps this module out of the built-in implementation modules: it
registers nothing itself.
"""

from __future__ import annotations

import io
import re
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from wkvbench.impls import _compile, _gpu
from wkvbench.ops import validate_bi_wkv7
from wkvbench.registry import register_impl

cp, CUPY_ERROR = _gpu.try_import("cupy")  # None also when a CUDA library underneath is broken

NVRTC_OPTIONS = ("--std=c++17",)
#: The headers the CUDA C kernels share (``wkv_io.cuh``); also the include path of the host emulation.
INCLUDE_DIR = Path(__file__).with_name("include")
_INCLUDE = re.compile(r'^#include "(\w+\.cuh)".*$', re.MULTILINE)


# ----------------------------------------------------------------------------- availability
def check(device: torch.device) -> tuple[bool, str]:
    """Whether CuPy can launch on ``device``: installed, sees the device, loads NVRTC; ``(ok, reason)``."""
    if cp is None:
        return False, f"cupy not installed ({CUPY_ERROR})"
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"cupy has no CUDA device ({type(exc).__name__}: {exc})"
    if count < 1:
        return False, "cupy has no CUDA device"
    if device.index is not None and device.index >= count:
        return False, f"cupy sees {count} CUDA device(s), not {device}"
    try:
        cp.cuda.nvrtc.getVersion()
    except Exception as exc:
        return False, f"cupy cannot load NVRTC ({type(exc).__name__}: {exc})"
    return True, "ok"


# ----------------------------------------------------------------------------- source
def cuda_source(path: Path) -> str:
    """The text of the ``.cu`` file ``path`` with each ``#include "<name>.cuh"`` replaced by that header
    (found next to ``path``, else in :data:`INCLUDE_DIR`, as a compiler searches). Other includes are left alone."""

    def header(m: re.Match) -> str:
        local = path.parent / m.group(1)
        return (local if local.is_file() else INCLUDE_DIR / m.group(1)).read_text()

    return _INCLUDE.sub(header, path.read_text())


# ----------------------------------------------------------------------------- registration and checks
def register_bi_wkv7(impl: str, dtypes, head_sizes, *, priority: int, description: str, backward: bool = False):
    """``register_impl`` for a Bi-WKV7 kernel launched through this module: backend ``cupy``, CUDA
    only, available when :func:`check` passes."""
    return register_impl(
        "bi_wkv7",
        name=impl,
        backend="cupy",
        devices=("cuda",),
        dtypes=dtypes,
        head_sizes=head_sizes,
        priority=priority,
        check=check,
        description=description,
        backward=backward,
    )


def validate_bi_wkv7_call(impl: str, dtypes, head_sizes, r, w, k, v, a, b, g, out) -> None:
    """TypeError/ValueError naming the argument unless ``impl`` can run on these inputs: the op's own
    shape/dtype/device checks (no value checks), an I/O dtype in ``dtypes``, a head size in
    ``head_sizes``, a usable ``out`` and CUDA tensors."""
    validate_bi_wkv7(r, w, k, v, a, b, g, check_values=False)
    if r.dtype not in dtypes:
        names = ", ".join(str(dt).replace("torch.", "") for dt in dtypes)
        raise TypeError(f"r: dtype {r.dtype} not supported by {impl} ({names})")
    if r.shape[-1] not in head_sizes:
        raise ValueError(f"r: head size N={r.shape[-1]} not supported by {impl} (supports {head_sizes})")
    _gpu.validate_out(out, r)
    if r.device.type != "cuda":
        raise ValueError(f"r: {impl} runs on CUDA tensors, got a {r.device.type} tensor")


# ----------------------------------------------------------------------------- launch
_STREAMS: dict[tuple[int, int], object] = {}


def _stream(ptr: int, device_index: int):
    key = (ptr, device_index)
    st = _STREAMS.get(key)
    if st is None:
        with warnings.catch_warnings():  # CuPy 14 deprecates ExternalStream for Stream.from_external
            warnings.simplefilter("ignore", DeprecationWarning)
            st = cp.cuda.ExternalStream(ptr, device_index)
        _STREAMS[key] = st
    return st


def launch(fn, grid: tuple, block: tuple, args: tuple, device: torch.device, device_index: int) -> None:
    """Launch the CuPy kernel ``fn`` on torch's current stream of ``device`` (index ``device_index``)."""
    with cp.cuda.Device(device_index), _stream(torch.cuda.current_stream(device).cuda_stream, device_index):
        fn(grid, block, args)


class KernelCache:
    """CuPy kernels by name expression and device, compiled by NVRTC on first use.

    ``modules`` groups the name expressions: each group is one ``RawModule`` (compiled once per
    device, all its kernels together). ``impl`` names the implementation in the RuntimeError of
    :meth:`device_index`; ``source()`` returns the CUDA C source.
    """

    def __init__(self, impl: str, source: Callable[[], str], modules: Sequence[Sequence[str]], options=NVRTC_OPTIONS):
        self.impl = impl
        self.source = source
        self.options = tuple(options)
        self._group = {name: tuple(group) for group in modules for name in group}
        self._lock = threading.Lock()
        self._modules: dict[tuple, object] = {}
        self._kernels: dict[tuple[str, int], object] = {}
        self._ready: set[int] = set()

    def device_index(self, device: torch.device) -> int:
        """The CUDA index of ``device``, after :func:`check` passed once for it (RuntimeError if not)."""
        idx = device.index if device.index is not None else torch.cuda.current_device()
        if idx not in self._ready:  # check once per device: the launch path stays a few microseconds
            ok, why = check(torch.device("cuda", idx))
            if not ok:
                raise RuntimeError(f"{self.impl}: {why}")
            self._ready.add(idx)
        return idx

    def kernel(self, name: str, device_index: int):
        """The kernel of name expression ``name`` on device ``device_index``."""
        key = (name, device_index)
        fn = self._kernels.get(key)
        if fn is not None:
            return fn
        with self._lock:
            group = self._group[name]
            mod = self._modules.get((group, device_index))
            if mod is None:
                mod = cp.RawModule(code=self.source(), options=self.options, name_expressions=list(group))
                self._modules[(group, device_index)] = mod
            with cp.cuda.Device(device_index):
                fn = mod.get_function(name)  # NVRTC compile on first use
            self._kernels[key] = fn
        return fn


# ----------------------------------------------------------------------------- compile report
def compile_rows(
    impl: str,
    source: str,
    names: list[str],
    cc: int,
    compiler: str,
    instantiate: Callable[[str], str],
    mangled: re.Pattern,
    describe: Callable[[re.Match], tuple[str, str, str]],
) -> list[dict]:
    """The compile report of the name expressions ``names``: one row per kernel, in the order of ``names``.

    A compiled entry is one of the module's kernels when ``mangled`` matches (searches) its mangled
    name; ``describe(match)`` gives its ``(kernel, config, name)`` (``name``: its name expression). Rows: impl,
    kernel, config, registers, shared_bytes, local_bytes (stack frame + spill stores),
    spill_bytes, compiler, name. With no compiler installed: one ``skipped`` row saying which
    extra brings NVRTC. See :func:`compile_log` for ``compiler`` and ``instantiate``.
    """
    try:
        log, used = compile_log(source, names, cc, compiler, instantiate)
    except _compile.ToolMissing as exc:
        return _compile.skipped_rows([impl], exc)
    rows = []
    for entry, stats in _compile.parse_ptxas(log).items():
        m = mangled.search(entry)
        if m is not None:
            kernel, config, name = describe(m)
            row = {"impl": impl, "kernel": kernel, "config": config, **_compile.resource_row(stats)}
            rows.append({**row, "compiler": f"{used} sm_{cc}", "name": name})
    order = {name: i for i, name in enumerate(names)}
    rows.sort(key=lambda row: order.get(row["name"], 0))
    return rows


def compile_log(
    source: str, names: list[str], cc: int, compiler: str, instantiate: Callable[[str], str]
) -> tuple[str, str]:
    """(``ptxas -v`` log, compiler label) of the name expressions ``names`` compiled for ``sm_<cc>``.

    ``compiler``: ``"nvrtc"`` (cuda.core + nvidia-cuda-nvrtc: what CuPy uses at run time),
    ``"nvcc"``, or ``"auto"`` (NVRTC, else nvcc: nvcc also gives a second opinion when NVRTC
    fails to compile). ``instantiate(name)`` is the explicit instantiation nvcc needs for a name
    (``template __global__ void name(params);``). A missing compiler raises
    :class:`_compile.ToolMissing`; a source that does not compile, RuntimeError.
    """
    if compiler not in ("auto", "nvrtc", "nvcc"):
        raise ValueError(f"compiler: expected 'auto', 'nvrtc' or 'nvcc', got {compiler!r}")
    if compiler == "nvcc":
        return _compile_nvcc(source, names, cc, instantiate)
    try:
        return _compile_nvrtc(source, names, cc)
    except _compile.ToolMissing:
        if compiler == "nvrtc" or _compile.find_nvcc() is None:
            raise
    except Exception as exc:  # a compile error: nvcc, if there is one, gives a second opinion
        if compiler == "nvrtc" or _compile.find_nvcc() is None:
            raise RuntimeError(f"NVRTC compile failed: {type(exc).__name__}: {exc}") from exc
    return _compile_nvcc(source, names, cc, instantiate)


def _compile_nvrtc(source: str, names: list[str], cc: int) -> tuple[str, str]:
    """NVRTC through cuda.core (the ``compile`` extra); :class:`_compile.ToolMissing` if either is absent."""
    cuda_core, err = _gpu.try_import("cuda.core")
    if cuda_core is None:
        raise _compile.ToolMissing.extra("compile", f"cuda.core: {err}")
    major, minor = _compile.nvrtc_version()
    opts = cuda_core.ProgramOptions(arch=f"sm_{cc}", std="c++17", ftz=True, ptxas_options="-v")  # CuPy adds -ftz=true
    log = io.StringIO()
    cuda_core.Program(source, code_type="c++", options=opts).compile("cubin", name_expressions=names, logs=log)
    return log.getvalue().replace("\x00", ""), f"nvrtc {major}.{minor} (cuda.core)"


def _compile_nvcc(source: str, names: list[str], cc: int, instantiate: Callable[[str], str]) -> tuple[str, str]:
    nvcc = _compile.find_nvcc()
    if nvcc is None:
        raise _compile.ToolMissing("needs nvcc (a CUDA toolkit)")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernels_inst.cu"
        src.write_text(source + "\n" + "\n".join(instantiate(name) for name in names) + "\n")
        cubin = str(Path(tmp) / "k.cubin")
        cmd = [nvcc, f"-arch=sm_{cc}", "-cubin", "-std=c++17", "-Xptxas", "-v", "-o", cubin, str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"nvcc failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stderr + proc.stdout, f"nvcc {_compile.tool_release(nvcc)}"
