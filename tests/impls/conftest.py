"""What the tests of the kernel implementations share (the CUDA C ones, ``bi_wkv7_cupy`` and
``bi_wkv7_catflip``, most).

* ``cuda_host``: builds a host driver of ``wkvbench/hostemu/`` (the kernel ``.cu`` compiled with g++
  after ``hostemu/cuda_shim.h``, cached between runs) into a shared library and loads it;
  ``host_builder``: the test-side build module (``cuda_host/host_build.py``: the package's builder
  with pytest outcomes, this folder's self-test and ThreadSanitizer programs);
* ``report``: the compile report of the test module's ``mod``;
  without g++ (or NVRTC for ``report``) these FAIL, unless ``WKVBENCH_ALLOW_NO_CXX=1`` allows a skip;
* ``nvcc_agrees``: the check that nvcc's report has the same kernels as NVRTC's and spills none;
* ``cuda_impls_match``: every implementation of an op available on the GPU meets the accuracy bar;
* ``program_order``: the Triton interpreter's programs run reversed or shuffled instead of in grid order.
"""

from __future__ import annotations

import ctypes
import importlib.util
import random
from pathlib import Path

import pytest
import torch

from wkvbench.impls import _compile

HOST_DIR = Path(__file__).parent / "cuda_host"


def _load_host_build():
    spec = importlib.util.spec_from_file_location("wkvbench_tests_host_build", HOST_DIR / "host_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


host_build = _load_host_build()


def build_host(driver: str, out_dir: Path | None = None, source_dir: Path | None = None) -> ctypes.CDLL:
    """Build the driver ``<driver>`` (cached, see ``cuda_host/host_build.py``) with the kernel sources,
    each taken from ``source_dir`` where that holds a file of its name; load it. ``out_dir`` is unused
    (kept for the callers' signature). Fails without g++ unless ``WKVBENCH_ALLOW_NO_CXX=1``."""
    return ctypes.CDLL(str(host_build.build(driver, source_dir=source_dir)))


@pytest.fixture(scope="session")
def host_builder():
    """The module ``cuda_host/host_build.py`` (sources, cached builds, ThreadSanitizer runs)."""
    return host_build


@pytest.fixture(scope="session")
def cuda_host():
    """:func:`build_host`: ``cuda_host(driver, out_dir, source_dir) -> ctypes.CDLL``."""
    return build_host


@pytest.fixture(scope="module")
def report(request) -> list[dict]:
    """The test module's ``mod.compile_report(90)``; skips its tests when no CUDA compiler is installed here."""
    rows = request.module.mod.compile_report(90)
    if rows and "skipped" in rows[0]:
        host_build.missing(f"no CUDA compiler (NVRTC, from the 'compile' extra): {rows[0]['skipped']}")
    return rows


def check_nvcc_agrees(mod, report: list[dict]) -> None:
    """nvcc (the toolkit's ptxas, as old as the GPU image's CUDA) reports the same kernels, none spilling."""
    if _compile.find_nvcc() is None:
        pytest.skip("nvcc not found")
    rows = mod.compile_report(90, compiler="nvcc")
    assert [r["config"] for r in rows] == [r["config"] for r in report]
    for row in rows:
        assert row["compiler"].startswith("nvcc") and row["local_bytes"] == 0 and row["spill_bytes"] == 0, row
        assert 0 < row["registers"] <= 255


@pytest.fixture(scope="session")
def nvcc_agrees():
    """:func:`check_nvcc_agrees`: ``nvcc_agrees(module, nvrtc_rows)``."""
    return check_nvcc_agrees


def check_cuda_impls(op: str, x: dict, ref, dtype) -> int:
    """Every implementation of ``op`` available on CUDA for ``dtype`` meets the accuracy bar on ``x``
    against ``ref``; returns how many ran."""
    from wkvbench.accuracy import compare
    from wkvbench.registry import list_impls

    dev = torch.device("cuda")
    ran = 0
    for rec in list_impls(op):
        if rec.available(dev)[0] and rec.supports(dtype)[0]:
            acc = compare(rec.fn(**x), ref, dtype, tf32=rec.tf32)
            assert acc.passed, (rec.name, acc)
            ran += 1
    return ran


@pytest.fixture(scope="session")
def cuda_impls_match():
    """:func:`check_cuda_impls`: ``cuda_impls_match(op, inputs, ref, dtype) -> number checked``."""
    return check_cuda_impls


# ----------------------------------------------------------------------------- Triton program order
class ProgramOrder:
    """Runs the Triton interpreter's programs in another order than its grid loop's: the interpreter
    walks the grid in order and sets each program's index through ``interpreter_builder.set_grid_idx``,
    so the k-th index it sets is replaced by the k-th of a permutation of the grid (each program still
    runs once, with all of the launch's arguments). ``order``: ``"grid"`` (unchanged), ``"reversed"``,
    or ``"shuffled"`` (seeded). ``launches`` counts the launches that ran under it, ``ran`` lists the
    last launch's programs in the order they ran."""

    def __init__(self, monkeypatch):
        from triton.runtime import interpreter

        self.order, self.seed, self.launches, self.ran = "grid", 0, 0, []
        builder = interpreter.interpreter_builder
        set_dim, set_idx = builder.set_grid_dim, builder.set_grid_idx
        state = {"perm": [], "next": 0}

        def grid_dim(nx, ny, nz):
            programs = [(x, y, z) for x in range(nx) for y in range(ny) for z in range(nz)]
            if self.order == "reversed":
                programs.reverse()
            elif self.order == "shuffled":
                random.Random(self.seed + self.launches).shuffle(programs)
            elif self.order != "grid":
                raise ValueError(f"order: expected 'grid', 'reversed' or 'shuffled', got {self.order!r}")
            state["perm"], state["next"] = programs, 0
            self.launches, self.ran = self.launches + 1, []
            return set_dim(nx, ny, nz)

        def grid_idx(x, y, z):
            program = state["perm"][state["next"]]
            state["next"] += 1
            self.ran.append(program)
            return set_idx(*program)

        monkeypatch.setattr(builder, "set_grid_dim", grid_dim)
        monkeypatch.setattr(builder, "set_grid_idx", grid_idx)


@pytest.fixture
def program_order(monkeypatch):
    """:class:`ProgramOrder` installed on the Triton interpreter (skips where Triton is not interpreted)."""
    import os

    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton runs compiled here (a GPU): the program-order check is for the interpreter")
    pytest.importorskip("triton")
    return ProgramOrder(monkeypatch)
