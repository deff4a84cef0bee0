"""``wkvbench kernels``: skipped checks (tool not installed) versus failed ones, and the exit code.

The table logic runs on rows handed in by a fake ``report_module``; two end-to-end runs start
the real command in a subprocess whose ``sitecustomize`` takes a tool away (triton not
importable; libnvrtc not loadable), as on a plain install without the extra that brings it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wkvbench import kernels

ROOT = Path(__file__).resolve().parents[1]
OK = {"impl": "a", "kernel": "k", "config": "c", "registers": 40, "shared_bytes": 0, "local_bytes": 0, "compiler": "x"}
SKIP = {"impl": "b", "kernel": "-", "config": "-", "skipped": "needs pip install 'wkvbench[compile]' (NVRTC: gone)"}


def _main(monkeypatch, capsys, rows_by_module: dict) -> tuple[int, str, str]:
    monkeypatch.setattr(kernels, "report_module", lambda mod, cc=90: rows_by_module[mod])
    args = argparse.Namespace(cc=90, module=list(rows_by_module), json=False)
    rc = kernels.main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_skipped_check_is_printed_and_does_not_fail(monkeypatch, capsys):
    rc, out, err = _main(monkeypatch, capsys, {"m1": [OK], "m2": [SKIP]})
    assert rc == 0
    assert "b                        skipped: needs pip install 'wkvbench[compile]' (NVRTC: gone)" in out
    assert "COMPILE ERROR" not in out and "1 check(s) skipped" in err


@pytest.mark.parametrize(
    "bad", [{**OK, "error": "RuntimeError: boom"}, {**OK, "local_bytes": 8}], ids=["error", "spill"]
)
def test_error_or_spill_fails_even_next_to_a_skip(monkeypatch, capsys, bad):
    rc, out, err = _main(monkeypatch, capsys, {"m1": [SKIP], "m2": [bad]})
    assert rc == 1 and "1 kernel(s) failed" in err


def test_tensor_core_column(monkeypatch, capsys):
    rc, out, _ = _main(monkeypatch, capsys, {"m1": [{**OK, "tensor_core_pct": 97.5}], "m2": [OK]})
    assert rc == 0 and "tensor-core %" in out.splitlines()[0]
    assert " 97.5  x" in out.splitlines()[1] and " -  x" in out.splitlines()[2]


def test_columns_fit_the_longest_name(monkeypatch, capsys):
    """An entry longer than its column's least width ("triton_chunked_tc (backward)") widens it for every row."""
    long = {**OK, "impl": "triton_chunked_tc (backward)", "kernel": "k" * 35, "config": "c" * 50}
    rc, out, _ = _main(monkeypatch, capsys, {"m1": [long], "m2": [OK]})
    head, first, second = out.splitlines()[:3]
    assert rc == 0 and first.startswith("triton_chunked_tc (backward) " + "k" * 35 + " " + "c" * 50 + " ")
    assert head.index("kernel") == first.index("k" * 35) == second.index(" k ") + 1
    assert head.index("config") == first.index("c" * 50) == second.index(" c ") + 1
    assert head.index("regs") + 4 == first.index("40") + 2 == second.index("40") + 2


def test_dot_mix_weights():
    """HMMA.1688 TF32 = 16*8*8*2 FLOPs, HMMA.16816 = 4096, HGMMA.64x64x8 = 64*64*8*2/4 per warp, FFMA = 64."""
    from wkvbench.impls import _compile

    sass = "\n".join([
        "        /*0100*/                   HMMA.1688.F32.TF32 R4, R8, R12, R4 ;",
        "        /*0110*/                   HMMA.16816.F32.BF16 R4, R8, R12, R4 ;",
        "        /*0120*/                   HGMMA.64x64x8.F32.TF32 R24, gdesc[UR4], R24 ;",
        "        /*0130*/                   FFMA R1, R2, R3, R1 ;",
        "        /*0140*/                   FFMA.FTZ R1, R2, R3, R1 ;",
        "        /*0150*/                   FMUL R1, R2, R3 ;",
    ])  # fmt: skip
    mix = _compile.dot_mix(sass)
    tc = 2048 + 4096 + 64 * 64 * 8 * 2 // 4
    assert mix["mma"] == 3 and mix["ffma"] == 2
    assert mix["tensor_core_pct"] == round(100 * tc / (tc + 2 * 64), 1)
    assert _compile.dot_mix("FFMA R1, R2, R3, R1 ;")["tensor_core_pct"] == 0.0


def _run_without(tmp_path: Path, site: str, *modules: str) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(site)
    env = {k: v for k, v in os.environ.items() if k not in kernels.SIM_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "wkvbench.cli", "kernels"] + [a for m in modules for a in ("--module", m)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_end_to_end_without_triton(tmp_path):
    proc = _run_without(
        tmp_path, "import sys\nsys.modules['triton'] = None\n", "wkvbench.impls.bi_selective_scan_triton",
        "wkvbench.impls.bi_wkv7_triton",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if "skipped: needs pip install 'wkvbench[triton]'" in ln]
    assert len(lines) == 5, proc.stdout  # triton (scan) and the four Triton Bi-WKV7 implementations
    assert "COMPILE ERROR" not in proc.stdout


def test_end_to_end_numba_without_nvrtc(tmp_path):
    pytest.importorskip("numba.cuda")
    site = (
        "import cuda.bindings.nvrtc as n\n"
        "def _missing(*a, **k):\n    raise RuntimeError('Failed to dlopen libnvrtc.so')\n"
        "n.nvrtcVersion = _missing\n"
    )
    proc = _run_without(tmp_path, site, "wkvbench.impls.bi_wkv7_numba")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "numba_cuda               skipped: needs pip install 'wkvbench[compile]'" in proc.stdout, proc.stdout
