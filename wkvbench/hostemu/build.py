"""Build the host emulation of wkvbench's CUDA C kernels: a driver compiled with g++ together with
the kernel sources, after ``cuda_shim.h`` (see its header for the model).

* :data:`SOURCES`: where each kernel source lives, by the name the drivers and kernels ``#include``
  (found under wkvbench/impls) -- the one place that names them;
* :func:`rewrite_shared`: ``__shared__`` declarations become per-block storage (the shim's model);
* :func:`build`: a shared library (loaded with ctypes) or, with ``sanitize=True``, a ThreadSanitizer
  executable, or with ``count=True`` a library whose global-memory accesses are counted
  (``mem_counter.cpp``, :mod:`wkvbench.hostemu.count`); ``overrides`` replaces a source's text
  (mutants). Builds are cached under :func:`cache_root`, keyed by a hash of the compiler, flags,
  driver, shim and sources (the 48 most recently used are kept);
* :func:`find_gxx`: g++ and its version line, or None. Without one, or with one lacking C++20
  ``<barrier>``/``_Float16`` or the sanitizer, :func:`build` raises :class:`NoCompiler`; a failed
  compile raises :class:`BuildError`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

HOST_DIR = Path(__file__).parent
IMPLS = HOST_DIR.parent / "impls"
INCLUDE_NAMES = ("bi_wkv7_cupy.cu", "bi_wkv7_cupy_bwd.cu", "bi_wkv7_catflip.cu", "wkv_io.cuh")
DRIVERS = ("bi_wkv7_host.cpp", "bi_wkv7_train_host.cpp", "catflip_host.cpp")
COUNTER = "mem_counter.cpp"


def _find(name: str) -> Path:
    """The one file called ``name`` under wkvbench/impls (wherever its package keeps it)."""
    hits = sorted(IMPLS.rglob(name))
    if len(hits) != 1:
        raise RuntimeError(f"{name}: expected one file under {IMPLS}, found {[str(h) for h in hits]}")
    return hits[0]


SOURCES = {name: _find(name) for name in INCLUDE_NAMES}  # include name -> file
FLAGS = ("-std=c++20", "-O2", "-fno-strict-aliasing", "-Wall", "-Wno-unknown-pragmas", "-pthread")
TSAN_FLAGS = ("-std=c++20", "-fsanitize=thread", "-g", "-O1", "-fno-strict-aliasing", "-Wall", "-pthread")
TSAN_FLAGS += ("-Wno-unknown-pragmas",)
#: Every memory access of the kernel's translation unit becomes a call of ``__asan_{load,store}N_noabort``
#: (no sanitizer runtime is linked: ``mem_counter.cpp`` defines the callbacks).
COUNT_FLAGS = ("-fsanitize=kernel-address", "--param", "asan-instrumentation-with-call-threshold=0")
COUNT_FLAGS += ("--param", "asan-stack=0", "--param", "asan-globals=0", "-DWKV_HOST_COUNT=1")

_SHARED = re.compile(r"__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([A-Za-z_][\w:]*)\s+([^;]+);")
_DECLARATOR = re.compile(r"\s*([A-Za-z_]\w*)\s*((?:\[[^\]]+\]\s*)*)$")


class NoCompiler(RuntimeError):
    """No g++ here, or one that cannot build the emulation (C++20 ``<barrier>``, ``_Float16``, a sanitizer)."""


class BuildError(RuntimeError):
    """The emulation did not compile (the command and the compiler's output are in the message)."""


@cache
def find_gxx() -> tuple[str, str] | None:
    """(path, version line) of g++, or None."""
    gxx = shutil.which("g++")
    if gxx is None:
        return None
    version = subprocess.run([gxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    return gxx, version.splitlines()[0] if version else "?"


NO_GXX = "g++ not found: the host emulation of the CUDA kernels needs a C++20 compiler"


def cache_root() -> Path:
    """``$WKVBENCH_CACHE_DIR/cuda_host``, else ``$XDG_CACHE_HOME`` (or ``~/.cache``) ``/wkvbench/cuda_host``."""
    if os.environ.get("WKVBENCH_CACHE_DIR"):
        return Path(os.environ["WKVBENCH_CACHE_DIR"]) / "cuda_host"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wkvbench" / "cuda_host"


def rewrite_shared(text: str, first_id: int = 0) -> tuple[str, int]:
    """``__shared__ [__align__(n)] T a[..], b[..];`` -> ``auto& a = ::cuda_host::block_shared<T[..], ID>(); ...``
    on the same line; returns the text and the next free id."""
    next_id = first_id

    def sub(m: re.Match) -> str:
        nonlocal next_id
        line_start = text.rfind("\n", 0, m.start()) + 1
        if "//" in text[line_start : m.start()]:
            return m.group(0)  # in a comment
        out = []
        for decl in m.group(2).split(","):
            d = _DECLARATOR.match(decl)
            if d is None:
                raise ValueError(f"text: unsupported __shared__ declarator {decl!r} in {m.group(0)!r}")
            dims = re.sub(r"\s+", "", d.group(2))
            out.append(f"auto& {d.group(1)} = ::cuda_host::block_shared<{m.group(1)}{dims}, {next_id}>();")
            next_id += 1
        return " ".join(out)

    return _SHARED.sub(sub, text), next_id


def _sources(source_dir: Path | None, overrides: dict[str, str] | None) -> dict[str, str]:
    """The rewritten text of every source: ``overrides``, else ``source_dir/<name>`` if there, else SOURCES."""
    out, next_id = {}, 0
    for name, path in SOURCES.items():
        if overrides and name in overrides:
            text = overrides[name]
        elif source_dir is not None and (Path(source_dir) / name).is_file():
            text = (Path(source_dir) / name).read_text()
        else:
            text = path.read_text()
        out[name], next_id = rewrite_shared(text, next_id)
    return out


def _driver_path(driver: str | Path) -> Path:
    """A bare name is one of this package's drivers; a path is used as given (a test's own program)."""
    path = Path(driver)
    if len(path.parts) == 1:
        path = HOST_DIR / path
    if not path.is_file():
        raise ValueError(f"driver: no such file {path} (this package's drivers: {', '.join(DRIVERS)})")
    return path


def build(
    driver: str | Path,
    *,
    source_dir: Path | None = None,
    overrides: dict[str, str] | None = None,
    sanitize: bool = False,
    executable: bool = False,
    count: bool = False,
    defines: tuple[str, ...] = (),
    compiler: tuple[str, str] | None = None,
) -> Path:
    """Compile ``driver`` (cached); returns the ``.so``, or an executable (``executable``, or ``sanitize``:
    built with ThreadSanitizer). ``count``: a ``.so`` with every memory access of the driver's
    translation unit counted (see :mod:`wkvbench.hostemu.count`). ``compiler``: (path, version) of
    g++, default :func:`find_gxx`."""
    if count and (sanitize or executable):
        raise ValueError("count: a counting build is a shared library without ThreadSanitizer")
    found = compiler or find_gxx()
    if found is None:
        raise NoCompiler(NO_GXX)
    gxx, version = found
    path = _driver_path(driver)
    sources = _sources(source_dir, overrides)
    executable = executable or sanitize
    flags = (*(TSAN_FLAGS if sanitize else FLAGS), *(() if executable else ("-shared", "-fPIC")))
    flags += tuple(f"-D{d}" for d in defines)
    h = hashlib.sha256("\0".join((gxx, version, *flags, *(COUNT_FLAGS if count else ()), path.name)).encode())
    for p in (HOST_DIR / "cuda_shim.h", path, *((HOST_DIR / COUNTER,) if count else ())):
        h.update(p.read_bytes())
    for name, text in sources.items():
        h.update(f"\0{name}\0{text}".encode())
    out_dir = cache_root() / h.hexdigest()[:24]
    target = out_dir / (path.stem + ("" if executable else ".so"))
    if target.is_file():
        os.utime(out_dir)  # recently used: kept by _prune
        return target
    _prune(cache_root())
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in sources.items():
        (out_dir / name).write_text(text)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".build-")
    os.close(fd)
    includes = ["-I", str(HOST_DIR), "-I", str(path.parent), "-I", str(out_dir)]
    if count:  # the callbacks' unit is compiled without the sanitizer (else they would call themselves)
        obj = f"{tmp}.o"
        steps = [
            [gxx, *flags, *COUNT_FLAGS, *includes, "-c", str(path), "-o", obj],
            [gxx, *flags, "-Wl,-Bsymbolic", "-o", tmp, obj, str(HOST_DIR / COUNTER)],
        ]
    else:
        steps = [[gxx, *flags, *includes, str(path), "-o", tmp]]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            for leftover in (tmp, f"{tmp}.o"):
                if os.path.exists(leftover):
                    os.unlink(leftover)
            _raise(proc.stderr, cmd, path.name, sanitize, count)
    if count:
        os.unlink(f"{tmp}.o")
    os.replace(tmp, target)  # atomic: a concurrent build of the same key writes the same file
    return target


def _raise(stderr: str, cmd: list[str], driver: str, sanitize: bool, count: bool):
    if "barrier: No such file" in stderr or "_Float16" in stderr:
        raise NoCompiler("this g++ lacks C++20 <barrier> or _Float16 (GCC >= 12 has both): no host emulation")
    if sanitize and "tsan" in stderr:
        raise NoCompiler(f"this g++ cannot build with -fsanitize=thread:\n{stderr[-2000:]}")
    if count and "sanitize" in stderr:
        raise NoCompiler(f"this g++ cannot build with -fsanitize=kernel-address:\n{stderr[-2000:]}")
    raise BuildError(f"host build of {driver} failed:\n{' '.join(cmd)}\n{stderr[-4000:]}")


def _prune(root: Path, keep: int = 48) -> None:
    """Remove all but the ``keep`` most recently used builds (best effort: another run may be at it)."""
    try:
        dirs = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime, reverse=True)
        for d in dirs[keep:]:
            shutil.rmtree(d, ignore_errors=True)
    except OSError:
        pass


TSAN_REPORT = "WARNING: ThreadSanitizer"


def run_sanitized(exe: Path, *args: str, halt: bool = False, env: dict | None = None, timeout: float = 300):
    """Run a ThreadSanitizer executable: (return code, output). A report makes it exit 66; ``halt``
    stops it at the first."""
    options = f"exitcode=66 halt_on_error={int(halt)} report_signal_unsafe=0"
    env = {**os.environ, **(env or {}), "TSAN_OPTIONS": options}
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=env)
    return proc.returncode, proc.stdout + proc.stderr
