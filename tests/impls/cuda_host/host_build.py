"""Test-side glue of the host emulation (:mod:`wkvbench.hostemu.build`): the pytest outcome of a
missing or unfit g++, and this folder's own programs (``shim_selftest.cpp``, ``tsan_main.cpp``).

* :func:`build`: the package's builder; a driver named here that lives in this folder is built from
  it, any other from the package. Without g++ (or with one that cannot build the emulation) the
  test FAILS -- a skip only where ``WKVBENCH_ALLOW_NO_CXX=1`` allows it (:func:`missing`); a
  compile error fails the test with the compiler's output;
* ``SOURCES``, ``TSAN_REPORT``, ``run_sanitized``, ``cache_root``, ``rewrite_shared``: the package's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wkvbench.hostemu import build as _build
from wkvbench.hostemu.build import SOURCES, TSAN_REPORT, cache_root, rewrite_shared, run_sanitized

__all__ = ["ALLOW_NO_CXX", "SOURCES", "TSAN_REPORT", "build", "cache_root", "compiler", "missing", "rewrite_shared",
           "run_sanitized"]  # fmt: skip

TEST_DIR = Path(__file__).parent
ALLOW_NO_CXX = "WKVBENCH_ALLOW_NO_CXX"


def missing(reason: str):
    """Fail (the CUDA C checks must run), or skip where ``WKVBENCH_ALLOW_NO_CXX=1`` allows it."""
    if os.environ.get(ALLOW_NO_CXX) == "1":
        pytest.skip(f"{reason} ({ALLOW_NO_CXX}=1 allows the skip)")
    pytest.fail(f"{reason}; the CUDA C checks need it (set {ALLOW_NO_CXX}=1 to skip them instead)", pytrace=False)


def _gxx() -> tuple[str, str] | None:
    return _build.find_gxx()


def compiler() -> tuple[str, str]:
    """(path, version line) of g++; fails the test (see :func:`missing`) without one."""
    found = _gxx()
    if found is None:
        missing(_build.NO_GXX)
    return found


def build(driver: str, **kwargs) -> Path:
    """:func:`wkvbench.hostemu.build.build` with pytest outcomes; ``driver`` of this folder or the package."""
    local = TEST_DIR / driver
    try:
        return _build.build(local if local.is_file() else driver, compiler=compiler(), **kwargs)
    except _build.NoCompiler as exc:
        missing(str(exc))
    except _build.BuildError as exc:
        pytest.fail(str(exc), pytrace=False)
