"""scripts/gpu_concurrency.py on a CPU: the held-ticket path's output, the sanitizer's verdicts."""

import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _mod() -> SimpleNamespace:
    """The script's functions (it is run as a file, not imported as a module)."""
    return SimpleNamespace(**runpy.run_path(str(ROOT / "scripts" / "gpu_concurrency.py"), run_name="gpu_concurrency"))


def test_held_tickets_keep_the_output_right_in_the_interpreter():
    pytest.importorskip("triton")
    rows = _mod().ticket_wait_rows(torch.device("cpu"))
    assert [r["check"] for r in rows] == ["ticket_wait"] * 3
    for r in rows:  # programs run in turn: every tile merged, none waited, output within the bar
        assert r["status"] == "ok", r
        assert " 0 of " in r["note"] and "no tile can wait" in r["note"] and r["rel_err"] <= r["tol"]


def test_hold_and_tickets_are_validated():
    pytest.importorskip("triton")
    from wkvbench.impls import bi_wkv7_triton as tk
    from wkvbench.inputs import bi_wkv7_inputs

    x = bi_wkv7_inputs(1, 5, 1, 64, dtype=torch.float32, device="cpu", seed=0)
    with pytest.raises(ValueError, match="hold"):
        tk.bi_wkv7_chunked(**x, hold=-1)
    with pytest.raises(ValueError, match="tickets"):
        tk.bi_wkv7_chunked(**x, hold=1, tickets=torch.zeros(3, dtype=torch.int32))


def test_sanitizer_verdicts():
    m = _mod()
    ok = "========= RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)\nsanitized cupy_cuda ok\n"
    assert m.classify("cupy_cuda", 0, ok) == ("ok", "RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)")
    bad = "========= Error: Race reported between Write access\n========= ERROR SUMMARY: 1 error\n"
    assert m.classify("cupy_cuda", 3, bad)[0] == "wrong"
    refused = "========= Error: Device not supported\n"
    status, note = m.classify("cupy_cuda", 1, refused)
    assert status == "skipped" and "Device not supported" in note
    crashed = "Traceback\nRuntimeError: boom\n========= ERROR SUMMARY: 0 errors\n"
    assert m.classify("cupy_cuda", 1, crashed)[0] == "failed"
    rows = m.sanitizer_rows(torch.device("cpu"), 30)
    assert {(r["impl"], r["check"]) for r in rows} == {(n, k) for n in m.SANITIZED for k in ("racecheck", "memcheck")}
    assert {r["status"] for r in rows} == {"skipped"} and "CUDA device" in rows[0]["note"]
    tool, where = m.find_sanitizer()
    assert "PATH" in where and (tool is None or Path(tool).name == "compute-sanitizer")
