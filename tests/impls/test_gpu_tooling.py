"""The GPU tooling shared by the kernel modules (``wkvbench.impls._gpu``, ``_compile``) and the compile checks'
behaviour when a tool is missing (simulated by monkeypatching the lookup)."""

from __future__ import annotations

import importlib

import pytest
import torch

from wkvbench.impls import _compile, _cupy, _gpu

# ptxas -v output for two kernels (shape of NVRTC's / ptxas 13's log), the second one spilling
PTXAS_LOG = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z3fooPf' for 'sm_90'
ptxas info    : Function properties for _Z3fooPf
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 130 registers, used 1 barriers, 5136 bytes smem, 400 bytes cmem[0]
ptxas info    : Compiling entry function '_Z3barPf' for 'sm_90'
ptxas info    : Function properties for _Z3barPf
    24 bytes stack frame, 16 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 255 registers, 384 bytes cmem[0]
"""


def test_parse_ptxas_two_entries_and_resource_row():
    stats = _compile.parse_ptxas(PTXAS_LOG)
    assert set(stats) == {"_Z3fooPf", "_Z3barPf"}
    assert stats["_Z3fooPf"] == {
        "registers": 130, "shared_bytes": 5136, "stack_bytes": 0, "spill_stores": 0, "spill_loads": 0,
    }  # fmt: skip
    row = _compile.resource_row(stats["_Z3barPf"])
    assert row == {"registers": 255, "shared_bytes": 0, "local_bytes": 40, "spill_bytes": 28}


def test_out_check_names_the_argument():
    like = torch.zeros(2, 3)
    assert _gpu.check_out(None, like).shape == (2, 3)
    out = torch.empty(2, 3)
    assert _gpu.check_out(out, like) is out
    with pytest.raises(ValueError, match="^out: .*got a \\(3, 2\\)"):
        _gpu.check_out(torch.empty(3, 2), like)
    with pytest.raises(ValueError, match="^out: .*non-contiguous"):
        _gpu.validate_out(torch.empty(3, 2).t(), like)
    with pytest.raises(ValueError, match="^out: .*torch.float16"):
        _gpu.validate_out(torch.empty(2, 3, dtype=torch.float16), like)
    with pytest.raises(TypeError, match="^out: "):
        _gpu.validate_out([0.0], like)


def test_sm_count_falls_back_off_gpu_and_interpreter_switch(monkeypatch):
    assert _gpu.sm_count("cpu") == _gpu.DEFAULT_SMS == 132
    for val, on in (("1", True), ("0", False), ("", False)):
        monkeypatch.setenv("TRITON_INTERPRET", val)
        assert _gpu.triton_interpreting() is on
    assert _gpu.triton_check(False, torch.device("cuda")) == (False, "triton not installed")


def test_try_import_reports_the_error():
    mod, err = _gpu.try_import("wkvbench_no_such_package")
    assert mod is None and err.startswith("ModuleNotFoundError")
    assert _gpu.try_import("math")[0] is not None


def test_nvrtc_missing_is_a_tool_missing(monkeypatch):
    nvrtc = pytest.importorskip("cuda.bindings.nvrtc")

    def missing():
        raise RuntimeError("Failed to dlopen libnvrtc.so.13")

    monkeypatch.setattr(nvrtc, "nvrtcVersion", missing)
    with pytest.raises(_compile.ToolMissing, match=r"^needs pip install 'wkvbench\[compile\]' \(NVRTC: RuntimeError"):
        _compile.nvrtc_version()
    rows = _compile.report_or_skip(["x", "y"], _compile.nvrtc_version)
    assert [r["impl"] for r in rows] == ["x", "y"]
    assert all(r["skipped"].startswith("needs pip install 'wkvbench[compile]'") for r in rows)


def _missing_nvrtc():
    raise _compile.ToolMissing.extra("compile", "NVRTC: not found")


# ----------------------------------------------------------------------------- per module, tool missing
def test_triton_modules_skip_without_triton(monkeypatch):
    from wkvbench.impls import bi_selective_scan_triton as selective_scan_triton
    from wkvbench.impls import bi_wkv7_triton

    monkeypatch.setattr(bi_wkv7_triton, "HAS_TRITON", False)
    monkeypatch.setattr(selective_scan_triton, "triton", None)
    rows = bi_wkv7_triton.compile_report(90) + selective_scan_triton.compile_report(90)
    assert [r["impl"] for r in rows] == [*bi_wkv7_triton.IMPLS, "triton"]
    assert "triton_chunked_tc" in bi_wkv7_triton.IMPLS
    assert all(r["skipped"].startswith("needs pip install 'wkvbench[triton]'") and "error" not in r for r in rows)


@pytest.mark.parametrize("module", ["bi_wkv7_cupy", "bi_wkv7_catflip"])
def test_cupy_compile_check_skips_without_nvrtc_and_nvcc(monkeypatch, module):
    mod = importlib.import_module(f"wkvbench.impls.{module}")
    monkeypatch.setattr(_compile, "nvrtc_version", _missing_nvrtc)
    monkeypatch.setattr(_compile, "find_nvcc", lambda: None)
    rows = mod.compile_report(90)
    assert rows == [{"impl": mod.NAME, "kernel": "-", "config": "-",
                     "skipped": "needs pip install 'wkvbench[compile]' (NVRTC: not found)"}]  # fmt: skip
    with pytest.raises(_compile.ToolMissing):
        _cupy.compile_log(mod.kernel_source(), ["k<float>"], 90, "nvrtc", str)
    with pytest.raises(ValueError, match="^compiler:"):
        mod.compile_report(90, compiler="clang")


def test_cupy_compile_error_is_an_error_not_a_skip(monkeypatch):
    from wkvbench.impls import bi_wkv7_cupy

    pytest.importorskip("cuda.core")
    try:
        _compile.nvrtc_version()
    except _compile.ToolMissing:
        pytest.skip("no NVRTC here")
    monkeypatch.setattr(bi_wkv7_cupy, "kernel_source", lambda: "this is not C++")
    monkeypatch.setattr(_compile, "find_nvcc", lambda: None)
    with pytest.raises(RuntimeError, match="NVRTC compile failed"):
        bi_wkv7_cupy.compile_report(90, dtypes=(torch.float32,), splits=(1,))


@pytest.fixture
def nb(monkeypatch):
    mod = pytest.importorskip("wkvbench.impls.bi_wkv7_numba")
    if mod.cuda is None:
        pytest.skip("numba-cuda not installed")
    monkeypatch.setattr(mod, "SIMULATOR", False)  # as in the clean subprocess of `wkvbench kernels`
    return mod


def test_numba_compile_check_skips_without_nvrtc(nb, monkeypatch):
    monkeypatch.setattr(_gpu, "nvvm_status", lambda: (True, "ok"))
    monkeypatch.setattr(_compile, "nvrtc_version", _missing_nvrtc)
    rows = nb.compile_report(90)
    assert len(rows) == 1 and rows[0]["impl"] == "numba_cuda"
    assert rows[0]["skipped"] == "needs pip install 'wkvbench[compile]' (NVRTC: not found)"


def test_numba_without_libnvvm_skips_compile_and_is_unavailable_on_cuda(nb, monkeypatch):
    monkeypatch.setattr(_gpu, "nvvm_status", lambda: (False, "numba-cuda cannot load libNVVM"))
    rows = nb.compile_report(90)
    assert (
        rows[0]["skipped"]
        == "needs libNVVM: pip install 'numba-cuda[cu13]' or a CUDA toolkit (numba-cuda cannot load libNVVM)"
    )
    ok, why = nb._check(torch.device("cuda"))
    assert (
        not ok
        and why == "numba-cuda cannot load libNVVM; needs libNVVM: pip install 'numba-cuda[cu13]' or a CUDA toolkit"
    )


def test_numba_skips_without_numba_cuda(nb, monkeypatch):
    monkeypatch.setattr(nb, "cuda", None)
    rows = nb.compile_report(90)
    assert rows[0]["skipped"].startswith("needs pip install 'wkvbench[numba]'")


def test_nvvm_status_reads_numba_cuda(monkeypatch):
    nvvm = pytest.importorskip("numba.cuda.cudadrv.nvvm")
    monkeypatch.setattr(nvvm, "is_available", lambda: False)
    assert _gpu.nvvm_status() == (False, "numba-cuda cannot load libNVVM")
    monkeypatch.setattr(nvvm, "is_available", lambda: True)
    assert _gpu.nvvm_status() == (True, "ok")


def test_import_check_missing_broken_and_ok():
    def broken():
        raise ImportError("libfoo.so: cannot open shared object file")

    assert _gpu.import_check("wkvbench_no_such_package", "nope (pip install x)", broken) == (
        False,
        "nope (pip install x)",
    )
    ok, why = _gpu.import_check("math", "unused", broken, label="math ext")
    assert not ok and why == "math ext does not import: ImportError: libfoo.so: cannot open shared object file"
    assert _gpu.import_check("math", "unused", lambda: None) == (True, "ok")


def test_cupy_modules_share_the_inlined_io_header():
    """Both kernel sources come with wkv_io.cuh inlined (NVRTC gets one string; CuPy's cache sees header edits)."""
    from wkvbench.impls import bi_wkv7_catflip, bi_wkv7_cupy

    header = (_cupy.INCLUDE_DIR / "wkv_io.cuh").read_text()
    for mod in (bi_wkv7_cupy, bi_wkv7_catflip):
        assert '#include "wkv_io.cuh"' in mod.KERNEL_PATH.read_text()
        src = mod.kernel_source()
        assert "#include" not in src and src.count(header) == 1
    assert bi_wkv7_catflip._check is bi_wkv7_cupy._check is _cupy.check


@pytest.mark.parametrize("impl", ["cupy_cuda", "audiorwkv_catflip"])
def test_cupy_impls_validation_names_the_argument(impl):
    """The argument checks both CuPy Bi-WKV7 kernels share (_cupy.validate_bi_wkv7_call), through each."""
    from wkvbench.inputs import bi_wkv7_inputs
    from wkvbench.registry import get_impl

    fn = get_impl("bi_wkv7", impl).fn
    names = ("r", "w", "k", "v", "a", "b")
    x = bi_wkv7_inputs(1, 3, 1, 64, dtype=torch.float32)
    args = {n: x[n] for n in names}
    with pytest.raises(ValueError, match="^r: .*CUDA"):
        fn(**args)
    with pytest.raises(ValueError, match="^out:"):
        fn(**args, out=torch.empty(1, 3, 1, 32))
    with pytest.raises(ValueError, match="^g:"):
        fn(**args, g=torch.rand(1, 3, 2))
    small = bi_wkv7_inputs(1, 3, 1, 32, dtype=torch.float32)
    with pytest.raises(ValueError, match=f"^r: head size N=32 not supported by {impl}"):
        fn(**{n: small[n] for n in names})
    with pytest.raises(
        TypeError, match=rf"^r: dtype torch.float64 not supported by {impl} \(float32, bfloat16, float16\)"
    ):
        fn(**{n: x[n].double() for n in names})
