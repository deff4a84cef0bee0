"""scripts/gpu_check.sh rehearsed on the CPU (REHEARSE=1), its plan, and its suite helpers.

The GPU check is one command with one chance on the GPU machine: this runs the same script end
to end on the CPU (tiny sizes, the Triton interpreter and the Numba simulator on) and checks what
comes back -- at most 8 files in $OUT, every stage's exit code 0, ok rows of a Triton and a Numba
kernel in verify, in the suite and in the training table, the headline table as the last lines.
The rehearsal is the slow test here (marked ``slow``; it prints its wall time): about 2 minutes
of CPU, 10 minutes of wall time on the shared 2-core machine at a load of 20-370.
"""

import csv
import importlib.util
import os
import re
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
#: The whole check's plan, seconds (scripts/gpu_check.sh's budgets: the one command gets 10 minutes).
PLAN_LIMIT_S = 480


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
    assert suite.groups[0] is train  # training first: cases run in group order
    assert train.op == "bi_wkv7" and train.modes == ("fwd_bwd",) and train.batch == (8,)
    assert train.seconds == (327.68,) and train.dtype == ("bfloat16",) and train.models == ("A-RWKV-B",)
    assert {"audiorwkv_catflip", "fla_chunk", "triton_chunked", "cupy_cuda", "numba_cuda"} <= set(train.impls)


def test_the_plan_fits_480_s_and_leaves_the_kernels_stage_out():
    text = SCRIPT.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("B_SETUP="))
    budgets = dict(re.findall(r"B_([A-Z]+)=(\d+)", line))
    assert {"SETUP", "PREFLIGHT", "VERIFY", "GRAD", "CONC", "SUITE", "FLA", "SWEEP", "REPORT", "PACK"} <= set(budgets)
    assert sum(int(v) for v in budgets.values()) <= PLAN_LIMIT_S, budgets
    assert "cli kernels" not in text and "stage kernels" not in text


def test_split_moves_fla_to_a_stage_of_its_own():
    h = _helpers()
    data = tomllib.loads(SUITE.read_text())
    main, fla = h.split(data)
    assert not any(i in h.FLA_IMPLS for g in main["group"] for i in g["impls"])
    assert [g.get("modes", ["fwd"]) for g in fla["group"]] == [["fwd"], ["fwd_bwd"]]  # inference first
    assert all(set(g["impls"]) <= set(h.FLA_IMPLS) and g["seconds"] == [327.68] for g in fla["group"])
    assert fla["run"]["max_cell_s"] == h.FLA_MAX_CELL_S
    for suite in (main, fla):
        parse_suite(tomllib.loads(h.to_toml(suite)), "split")  # both are valid suites
    assert h.split({"group": [{"op": "attention", "impls": ["sdpa_math"]}]})[1] is None
    with pytest.raises(ValueError, match="group"):
        h.split({"name": "x"})


def test_rehearsal_scales_the_suite_down_and_keeps_interpreted_kernels_tiny():
    h = _helpers()
    data, _ = h.split(tomllib.loads(SUITE.read_text()))
    small = h.rehearse(data)
    suite = parse_suite(tomllib.loads(h.to_toml(small)), "rehearsal")  # the written TOML is a valid suite
    assert suite.run.device == "cpu"
    train, *inference = suite.groups
    assert train.modes == ("fwd_bwd",) and train.models == ("A-RWKV-T",) and train.tokens == (4,)
    assert {"triton_chunked", "numba_cuda", "audiorwkv_catflip"} <= set(train.impls)
    assert not {"triton_recurrent", "triton_chunked_tc"} & set(train.impls)  # interpreted: minutes in all
    orig = [g for g in data["group"] if g.get("modes", ["fwd"]) == ["fwd"]]
    assert [g.op for g in inference] == [g["op"] for g in orig]
    for g, o in zip(inference, orig, strict=True):
        assert sorted(g.seconds) == sorted(s / h.REHEARSE_SECONDS_DIVISOR for s in o["seconds"])
        assert max(g.batch) == h.REHEARSE_MAX_BATCH
        interpreted = h.INTERPRETED.get(g.op, ())
        assert not set(g.impls) & set(interpreted)
        assert "*" not in g.impls or set(interpreted) <= set(g.exclude)
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
    for k in ("TRITON_INTERPRET", "NUMBA_ENABLE_CUDASIM", "GPU_CHECK_STAGES", "WKVBENCH_REF_CACHE"):
        env.pop(k, None)
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=1500)
    took = time.perf_counter() - t0
    print(f"\nREHEARSE=1 scripts/gpu_check.sh took {took:.0f} s")
    return out, work, proc, took


@pytest.mark.slow
def test_rehearsal_returns_the_promised_files_and_every_stage_exits_0(rehearsal):
    out, work, proc, took = rehearsal
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8, files
    assert {"summary.md", "verify.csv", "run.tar.gz", "report.tar.gz"} <= set(files), (files, proc.stderr[-3000:])
    assert all(p.stat().st_size < 16 * 2**20 for p in out.iterdir())
    with tarfile.open(out / "run.tar.gz") as tar:
        names = tar.getnames()
    for want in ("./run/results.csv", "./run/env.json", "./stages.tsv", "./env.json", "./sweep.csv", "./preflight.md"):
        assert want in names, (want, names)
    stages = [line.split("\t") for line in (work / "stages.tsv").read_text().splitlines()]
    assert [s[0] for s in stages] == ["preflight", "verify", "verify-grad", "concurrency", "suite", "fla", "sweep",
                                      "report"], stages  # fmt: skip
    for name, _, _, rc in stages:
        assert rc == "0" or (name == "fla" and rc.startswith("skipped: fla_chunk unavailable")), stages
    print(f"rehearsal took {took:.0f} s; stages: {stages}")


@pytest.mark.slow
def test_rehearsal_verifies_interpreted_kernels_ok(rehearsal):
    out, _, _, _ = rehearsal
    with open(out / "verify.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ok = {(r["impl"], r["check"]) for r in rows if r["status"] == "ok"}
    # interpreted kernels: outputs here, gradients in the suite's training cells (next test)
    assert {("numba_cuda", "fwd"), ("triton_chunked", "fwd"), ("torch_chunked", "grad")} <= ok, rows
    assert ("triton_chunked", "ticket_wait") in ok
    assert {r["status"] for r in rows if r["check"] in ("fwd", "grad")} == {"ok"}


@pytest.mark.slow
def test_rehearsal_summary_has_ok_kernel_rows_and_ends_with_the_headline(rehearsal):
    out, work, proc, _ = rehearsal
    text = (out / "summary.md").read_text()
    assert text.index("## Preflight") < text.index("## Headline") < text.index("## Training")
    head = _helpers().headline_section(text)
    rows = [line for line in head.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(rows) == 4, text  # batch 1 and the rehearsal's batch 2 (8 on a GPU), two durations each
    assert "torch_chunked" in rows[0] and " at 1.28 s)" in rows[0] and " at 5.12 s)" in rows[1]
    train = text.split("## Training", 1)[1].split("## ", 1)[0]
    for impl in ("triton_chunked", "numba_cuda"):  # interpreted training: gradients and saved bytes
        (line,) = [ln for ln in train.splitlines() if f"| {impl} |" in ln]
        cells = [c.strip() for c in line.split("|")[1:-1]]
        assert cells[4] == "ok" and cells[7] != "-" and cells[8] != "-", line
    assert "audiorwkv_catflip" in train and "skipped" in train
    from wkvbench.report.load import load_run

    df = load_run(work / "run").results
    ok = df[(df["mode"] == "fwd_bwd") & (df["status"] == "ok")]
    assert {"triton_chunked", "numba_cuda"} <= set(ok["impl"])  # interpreted training cells in the suite
    assert ok["saved_bytes"].gt(0).all() and ok["grad_rel_err"].le(ok["grad_tol"]).all()
    assert "## Verify" in text and "ticket_wait: " in text
    assert proc.stdout.strip().endswith(head.splitlines()[-1].strip())  # the headline is printed last
    assert head.splitlines()[0] in proc.stdout
