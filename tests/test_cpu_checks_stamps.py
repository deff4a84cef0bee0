"""reports/cpu-checks/*: every file stamped, and no kernel source changed since its stamp.

``make cpu-checks`` (scripts/cpu_checks.sh) regenerates the folder; scripts/cpu_checks.py writes
and reads the stamps. When a kernel source changes, the committed CPU evidence no longer shows
what the kernels do: the last test fails until the folder is regenerated.
"""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mod():
    spec = importlib.util.spec_from_file_location("cpu_checks", ROOT / "scripts" / "cpu_checks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tree(root: Path, files: dict) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_kernel_sources_are_found_by_glob_in_packages_too(tmp_path):
    m = _mod()
    _tree(tmp_path, {"wkvbench/impls/a.py": "a", "wkvbench/impls/pkg/k.cu": "k", "wkvbench/impls/pkg/io.cuh": "h",
                     "wkvbench/impls/pkg/notes.md": "n", "wkvbench/impls/__pycache__/a.py": "c"})  # fmt: skip
    names = [str(p) for p in m.kernel_sources(tmp_path)]
    assert names == ["wkvbench/impls/a.py", "wkvbench/impls/pkg/io.cuh", "wkvbench/impls/pkg/k.cu"]
    real = {str(p) for p in m.kernel_sources()}
    assert any(n.endswith(".cu") for n in real) and any(n.endswith(".cuh") for n in real)


def test_a_changed_source_makes_its_stamps_stale(tmp_path):
    m = _mod()
    _tree(tmp_path, {"wkvbench/impls/k.cu": "v1", "wkvbench/impls/t.py": "t", "out/a.txt": "x", "out/b.txt": "y"})
    hashes = m.source_hashes(tmp_path)
    stamp = {"commit": "abc", "sources": hashes}
    (tmp_path / "out" / "stamps.json").write_text(json.dumps({"a.txt": stamp}))
    assert m.stale(tmp_path / "out", tmp_path) == ["b.txt: no stamp"]
    (tmp_path / "out" / "stamps.json").write_text(json.dumps({"a.txt": stamp, "b.txt": stamp}))
    assert m.stale(tmp_path / "out", tmp_path) == []
    (tmp_path / "wkvbench/impls/k.cu").rename(tmp_path / "wkvbench/impls/k2.cu")  # moved, unchanged: still fine
    assert m.stale(tmp_path / "out", tmp_path) == []
    (tmp_path / "wkvbench/impls/k2.cu").write_text("v2")
    assert m.stale(tmp_path / "out", tmp_path) == [f"{n}: wkvbench/impls/k.cu is gone and its content is nowhere "
                                                   "in wkvbench/impls" for n in ("a.txt", "b.txt")]  # fmt: skip
    (tmp_path / "wkvbench/impls/t.py").write_text("t2")
    assert "a.txt: wkvbench/impls/t.py changed since abc" in m.stale(tmp_path / "out", tmp_path)


def test_the_committed_cpu_checks_match_todays_kernel_sources():
    problems = _mod().stale(ROOT / "reports" / "cpu-checks")
    assert not problems, "reports/cpu-checks is out of date; regenerate it with `make cpu-checks`:\n" + "\n".join(
        problems
    )
