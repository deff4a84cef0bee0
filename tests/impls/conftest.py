"""What the tests of the kernel implementations share (the CUDA C ones, ``bi_wkv7_cupy`` and
``bi_wkv7_catflip``, most).

* ``cuda_host``: builds a host driver of ``cuda_host/`` (the kernel ``.cu`` compiled with g++ after
  ``cuda_host/cuda_shim.h``) into a shared library and loads it; skips when this g++ cannot;
* ``report``: the compile report of the test module's ``mod``, skipping when no CUDA compiler is here;
* ``nvcc_agrees``: the check that nvcc's report has the same kernels as NVRTC's and spills none;
* ``cuda_impls_match``: every implementation of an op available on the GPU meets the accuracy bar.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from wkvbench.impls import _compile, _cupy

HOST_DIR = Path(__file__).parent / "cuda_host"


def build_host(driver: str, out_dir: Path, source_dir: Path) -> ctypes.CDLL:
    """Compile ``cuda_host/<driver>`` with the kernel source found in ``source_dir``; load it."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found: the host emulation of the CUDA kernels needs a C++20 compiler")
    so = out_dir / Path(driver).with_suffix(".so").name
    cmd = [
        gxx, "-std=c++20", "-O2", "-fno-strict-aliasing", "-Wall", "-Wno-unknown-pragmas", "-shared", "-fPIC",
        "-pthread", "-I", str(HOST_DIR), "-I", str(source_dir), "-I", str(_cupy.INCLUDE_DIR), str(HOST_DIR / driver),
        "-o", str(so),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and ("barrier: No such file" in proc.stderr or "_Float16" in proc.stderr):
        pytest.skip("this g++ lacks C++20 <barrier> or _Float16 (GCC >= 12 has both): no host emulation")
    assert proc.returncode == 0, f"host build of {driver} ({source_dir}) failed:\n{proc.stderr[-4000:]}"
    return ctypes.CDLL(str(so))


@pytest.fixture(scope="session")
def cuda_host():
    """:func:`build_host`: ``cuda_host(driver, out_dir, source_dir) -> ctypes.CDLL``."""
    return build_host


@pytest.fixture(scope="module")
def report(request) -> list[dict]:
    """The test module's ``mod.compile_report(90)``; skips its tests when no CUDA compiler is installed here."""
    rows = request.module.mod.compile_report(90)
    if rows and "skipped" in rows[0]:
        pytest.skip(f"no CUDA compiler: {rows[0]['skipped']}")
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
