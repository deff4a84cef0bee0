"""scripts/launch_sweep.py: every launch configuration, the default included, against float64."""

import importlib.util
from pathlib import Path

import torch

from wkvbench import ops

ROOT = Path(__file__).resolve().parents[1]


def _sweep_module():
    spec = importlib.util.spec_from_file_location("launch_sweep", ROOT / "scripts" / "launch_sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_configuration_is_checked_against_the_float64_reference(monkeypatch):
    mod = _sweep_module()

    def call(x, val):  # value 1 (the default) is off by 5%, 2 is exact in bfloat16, 3 raises
        if val == 3:
            raise RuntimeError("bad launch")
        y = ops.reference_output("bi_wkv7", x)
        return (y * (1.05 if val == 1 else 1.0)).to(torch.bfloat16)

    table = [("fake", "p", [3, 2, 1], 1, call), ("absent", "q", [1], 1, "no such kernel here")]
    monkeypatch.setattr(mod, "configs", lambda device, B, H: table)
    rows = []
    n = mod.sweep(torch.device("cpu"), [1], 5, 1, torch.bfloat16, 0.001, rows.append, log=lambda s: None,
                  min_samples=1)  # fmt: skip
    assert n == 4
    by = {(r["impl"], r["value"]): r for r in rows}
    assert rows[0]["value"] == 1  # the default first
    assert by["fake", 1]["status"] == "wrong" and "over the" in by["fake", 1]["note"]
    assert by["fake", 1]["rel_err"] > by["fake", 1]["tol"]
    assert by["fake", 2]["status"] == "ok" and by["fake", 2]["rel_err"] <= by["fake", 2]["tol"]
    assert by["fake", 3]["status"] == "failed" and "bad launch" in by["fake", 3]["note"]
    assert by["absent", 1]["status"] == "skipped"
