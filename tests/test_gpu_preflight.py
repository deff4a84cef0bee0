"""scripts/gpu_preflight.py on a CPU: versions, tools, every implementation and why one is absent."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_preflight_lists_versions_tools_and_implementations(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_preflight", ROOT / "scripts" / "gpu_preflight.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "preflight.md"
    assert mod.main(["--out", str(out), "--device", "cpu"]) == 0
    text = out.read_text()
    assert text.startswith("## Preflight") and "torch " in text and "device: cpu" in text
    assert "libNVVM (numba-cuda): " in text and "compute-sanitizer: " in text
    for op in ("bi_wkv7", "attention", "bi_selective_scan"):
        assert f"- {op}: available " in text
    assert "cupy_cuda (runs on cuda, not cpu)" in text  # an absent implementation with its reason
    fla = (tmp_path / "fla.available").read_text().strip()
    assert fla.startswith("fla_chunk unavailable: ")  # no GPU here: the check would skip its fla stage
