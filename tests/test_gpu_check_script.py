"""scripts/gpu_check.sh rehearsed on the CPU (REHEARSE=1), and its helpers.

The GPU check is one command with one chance on the GPU machine: this runs the same script end
to end on the CPU (sizes scaled down) and checks what comes back -- at most 8 files in $OUT, the
summary, verify table and run archive present, the summary's headline table filled from the run.
"""

import csv
import importlib.util
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from wkvbench.harness.suite import load_suite, parse_suite

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
SUITE = ROOT / "suites" / "gpu-check.toml"


def _helpers():
    spec = importlib.util.spec_from_file_location("gpu_check_helpers", ROOT / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_suite_is_the_trimmed_headline():
    suite = load_suite(SUITE)
    assert suite.run.device == "cuda" and suite.run.max_cell_s == 60
    ops = [(g.op, g.dtype) for g in suite.groups]
    assert ("attention", ("float16",)) in ops and ("bi_selective_scan", ("bfloat16",)) in ops
    inference = [g for g in suite.groups if g.modes == ("fwd",)]
    for g in inference:
        assert sorted(g.seconds) == [10.24, 81.92, 327.68] and g.batch == (1, 8)
    wkv = next(g for g in inference if g.op == "bi_wkv7")
    assert "torch_loop" in wkv.exclude and "fla_chunk" in wkv.impls
    # the training target: A-RWKV-B, batch 8, 16,384 tokens, bf16, fused kernels vs their baselines
    (train,) = [g for g in suite.groups if g.modes != ("fwd",)]
    assert train.op == "bi_wkv7" and train.modes == ("fwd_bwd",) and train.batch == (8,)
    assert train.seconds == (327.68,) and train.dtype == ("bfloat16",) and train.models == ("A-RWKV-B",)
    assert {"audiorwkv_catflip", "fla_chunk", "triton_chunked", "cupy_cuda", "numba_cuda"} <= set(train.impls)


def test_rehearsal_scales_the_same_suite_down():
    h = _helpers()
    data = tomllib.loads(SUITE.read_text())
    small = h.rehearse(data)
    suite = parse_suite(tomllib.loads(h.to_toml(small)), "rehearsal")  # the written TOML is a valid suite
    assert suite.run.device == "cpu"
    assert [g.op for g in suite.groups] == [g["op"] for g in data["group"]]
    assert [g.impls for g in suite.groups] == [tuple(g["impls"]) for g in data["group"]]
    for g, orig in zip(suite.groups, data["group"], strict=True):
        assert sorted(g.seconds) == sorted(s / h.REHEARSE_SECONDS_DIVISOR for s in orig["seconds"])
        assert max(g.batch) == h.REHEARSE_MAX_BATCH
    with pytest.raises(ValueError, match="group"):
        h.rehearse({"name": "x"})


def test_summary_of_an_empty_work_dir_says_what_is_missing(tmp_path):
    text = _helpers().summary(tmp_path)
    assert "No results" in text and "verify.csv: not written" in text and "not run" in text


def test_merge_csv_keeps_one_header(tmp_path):
    h = _helpers()
    for name, rows in (("a.csv", [["1", "x"]]), ("b.csv", [["2", "y"]])):
        with open(tmp_path / name, "w", newline="") as fh:
            csv.writer(fh).writerows([["n", "s"], *rows])
    assert h.cmd_merge_csv(str(tmp_path / "m.csv"), str(tmp_path / "a.csv"), str(tmp_path / "missing.csv"),
                           str(tmp_path / "b.csv")) == 0  # fmt: skip
    assert (tmp_path / "m.csv").read_text().split() == ["n,s", "1,x", "2,y"]
    assert h.cmd_merge_csv(str(tmp_path / "none.csv"), str(tmp_path / "missing.csv")) == 1


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    work = tmp_path_factory.mktemp("work")
    env = {**os.environ, "REHEARSE": "1", "OUT": str(out), "WORK": str(work), "PYTHON": sys.executable}
    env.pop("TRITON_INTERPRET", None)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=900)
    return out, work, proc, time.perf_counter() - t0


def test_rehearsal_returns_the_promised_files(rehearsal):
    out, work, proc, took = rehearsal
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8, files
    assert {"summary.md", "verify.csv", "run.tar.gz"} <= set(files), (files, proc.stderr[-3000:])
    assert all(p.stat().st_size < 16 * 2**20 for p in out.iterdir())
    with tarfile.open(out / "run.tar.gz") as tar:
        names = tar.getnames()
    for want in ("./run/results.csv", "./run/env.json", "./stages.tsv", "./env.json", "./sweep.csv"):
        assert want in names, (want, names)
    stages = [line.split("\t")[0] for line in (work / "stages.tsv").read_text().splitlines()]
    assert stages[:6] == ["env", "kernels", "verify-bfloat16", "verify-float32", "verify-grad", "suite"], stages
    print(f"rehearsal took {took:.0f} s")


def test_rehearsal_summary_has_the_headline_table(rehearsal):
    out, _, _, _ = rehearsal
    text = (out / "summary.md").read_text()
    assert "| batch | audio s | A-RWKV tokens | best Bi-WKV7 |" in text
    rows = [line for line in text.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) >= 2, text  # batch 1 and the rehearsal's batch 2 (8 on a GPU)
    assert "torch_chunked" in text  # the only Bi-WKV7 implementation a plain CPU runs
    assert "## Verify" in text and "verify.csv:" in text
    # the training table lists the target cells (skipped on a CPU: no GPU kernels, each with its reason)
    train = text.split("## Training", 1)[1].split("## Verify", 1)[0]
    assert "audiorwkv_catflip" in train and "skipped" in train, train
    with open(out / "verify.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # bfloat16 first; float32 too unless a loaded machine ran its stage past the budget
    assert rows and rows[0]["dtype"] == "bfloat16" and {r["dtype"] for r in rows} <= {"bfloat16", "float32"}
