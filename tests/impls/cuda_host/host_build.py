"""Build the host emulation of wkvbench's CUDA C kernels: a driver of this folder compiled with g++
together with the kernel sources, after ``cuda_shim.h`` (see its header for the model).

* :data:`SOURCES`: where each kernel source lives, by the name the drivers and kernels ``#include``
  (found under wkvbench/impls) -- the one place that names them;
* :func:`rewrite_shared`: ``__shared__`` declarations become per-block storage (the shim's model);
* :func:`build`: a shared library (loaded with ctypes) or, with ``sanitize=True``, a ThreadSanitizer
  executable; ``overrides`` replaces a source's text (mutants). Builds are cached between test runs
  under :func:`cache_root`, keyed by a hash of the compiler, flags, driver, shim and sources (the
  48 most recently used are kept);
* :func:`compiler`: g++, or a failure -- a skip only where ``WKVBENCH_ALLOW_NO_CXX=1`` allows it.
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

import pytest

HOST_DIR = Path(__file__).parent
IMPLS = HOST_DIR.parents[2] / "wkvbench" / "impls"
INCLUDE_NAMES = ("bi_wkv7_cupy.cu", "bi_wkv7_cupy_bwd.cu", "bi_wkv7_catflip.cu", "wkv_io.cuh")


def _find(name: str) -> Path:
    """The one file called ``name`` under wkvbench/impls (wherever its package keeps it)."""
    hits = sorted(IMPLS.rglob(name))
    assert len(hits) == 1, f"{name}: expected one file under {IMPLS}, found {[str(h) for h in hits]}"
    return hits[0]


SOURCES = {name: _find(name) for name in INCLUDE_NAMES}  # include name -> file
ALLOW_NO_CXX = "WKVBENCH_ALLOW_NO_CXX"
FLAGS = ("-std=c++20", "-O2", "-fno-strict-aliasing", "-Wall", "-Wno-unknown-pragmas", "-pthread")
TSAN_FLAGS = ("-std=c++20", "-fsanitize=thread", "-g", "-O1", "-fno-strict-aliasing", "-Wall", "-pthread")
TSAN_FLAGS += ("-Wno-unknown-pragmas",)

_SHARED = re.compile(r"__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([A-Za-z_][\w:]*)\s+([^;]+);")
_DECLARATOR = re.compile(r"\s*([A-Za-z_]\w*)\s*((?:\[[^\]]+\]\s*)*)$")


def missing(reason: str):
    """Fail (the CUDA C checks must run), or skip where ``WKVBENCH_ALLOW_NO_CXX=1`` allows it."""
    if os.environ.get(ALLOW_NO_CXX) == "1":
        pytest.skip(f"{reason} ({ALLOW_NO_CXX}=1 allows the skip)")
    pytest.fail(f"{reason}; the CUDA C checks need it (set {ALLOW_NO_CXX}=1 to skip them instead)", pytrace=False)


@cache
def _gxx() -> tuple[str, str] | None:
    gxx = shutil.which("g++")
    if gxx is None:
        return None
    version = subprocess.run([gxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    return gxx, version.splitlines()[0] if version else "?"


def compiler() -> tuple[str, str]:
    """(path, version line) of g++; fails the test (see :func:`missing`) without one."""
    found = _gxx()
    if found is None:
        missing("g++ not found: the host emulation of the CUDA kernels needs a C++20 compiler")
    return found


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
            assert d is not None, f"unsupported __shared__ declarator {decl!r} in {m.group(0)!r}"
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


def build(
    driver: str,
    *,
    source_dir: Path | None = None,
    overrides: dict[str, str] | None = None,
    sanitize: bool = False,
    executable: bool = False,
    defines: tuple[str, ...] = (),
) -> Path:
    """Compile ``cuda_host/<driver>`` (cached); returns the ``.so``, or an executable (``executable``, or
    ``sanitize``: built with ThreadSanitizer)."""
    gxx, version = compiler()
    sources = _sources(source_dir, overrides)
    executable = executable or sanitize
    flags = (*(TSAN_FLAGS if sanitize else FLAGS), *(() if executable else ("-shared", "-fPIC")))
    flags += tuple(f"-D{d}" for d in defines)
    h = hashlib.sha256("\0".join((gxx, version, *flags, driver)).encode())
    for name in ("cuda_shim.h", driver):
        h.update((HOST_DIR / name).read_bytes())
    for name, text in sources.items():
        h.update(f"\0{name}\0{text}".encode())
    out_dir = cache_root() / h.hexdigest()[:24]
    target = out_dir / (Path(driver).stem + ("" if executable else ".so"))
    if target.is_file():
        os.utime(out_dir)  # recently used: kept by _prune
        return target
    _prune(cache_root())
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in sources.items():
        (out_dir / name).write_text(text)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".build-")
    os.close(fd)
    cmd = [gxx, *flags, "-I", str(HOST_DIR), "-I", str(out_dir), str(HOST_DIR / driver), "-o", tmp]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        os.unlink(tmp)
        if "barrier: No such file" in proc.stderr or "_Float16" in proc.stderr:
            missing("this g++ lacks C++20 <barrier> or _Float16 (GCC >= 12 has both): no host emulation")
        if sanitize and "tsan" in proc.stderr:
            missing(f"this g++ cannot build with -fsanitize=thread:\n{proc.stderr[-2000:]}")
        pytest.fail(f"host build of {driver} failed:\n{' '.join(cmd)}\n{proc.stderr[-4000:]}", pytrace=False)
    os.replace(tmp, target)  # atomic: a concurrent build of the same key writes the same file
    return target


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
