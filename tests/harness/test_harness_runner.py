"""``wkvbench run`` end to end on the CPU, with implementations that abort, run out of memory,
hang, or return wrong numbers; then ``--resume`` and re-runs on the same directory.

One sweep (module fixture) serves most tests: worker processes import torch, so their number is
kept low (three starts: the first, after the abort, after the hang).
"""

import csv
import json
import math
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from wkvbench import cli, registry
from wkvbench.harness import plan as P
from wkvbench.harness import predict
from wkvbench.harness import runner as R
from wkvbench.harness import suite as S
from wkvbench.harness.summary import summary_table
from wkvbench.schema import KEY

# Group A runs two lengths; group B adds t_abort to the shorter case only (cases merge).
SUITE = textwrap.dedent(
    """
    name = "misbehaving"
    plugins = ["misbehaving_impls.py"]

    [run]
    device = "cpu"
    budget_s = 0.02
    warmup_s = 0.0
    rounds = 2
    min_samples = 2
    max_cell_s = 6
    energy_s = 0

    [[group]]
    op = "bi_wkv7"
    impls = ["t_good", "torch_chunked", "t_oom", "t_slow", "t_wrong", "t_off", "no_such_kernel"]
    models = ["A-RWKV-T"]
    tokens = [16, 32]

    [[group]]
    op = "bi_wkv7"
    impls = ["t_abort"]
    models = ["A-RWKV-T"]
    tokens = [16]
    """
)


def read_rows(run_dir):
    with open(run_dir / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def by_cell(rows):
    return {(r["impl"], int(r["tokens"])): r for r in rows}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, plugin_source):
    before = {(r.op, r.name) for r in registry.list_impls()}
    root = tmp_path_factory.mktemp("sweep")
    (root / "misbehaving_impls.py").write_text(plugin_source, encoding="utf-8")
    (root / "suite.toml").write_text(SUITE, encoding="utf-8")
    run_dir = root / "run"
    rc = cli.main(["run", str(root / "suite.toml"), "--out", str(run_dir), "--no-progress"])
    yield root, run_dir, rc
    for op, name in {(r.op, r.name) for r in registry.list_impls()} - before:
        registry.unregister_impl(op, name)


def test_every_cell_has_one_row_with_the_right_status(sweep):
    _, run_dir, rc = sweep
    assert rc == 0
    rows = read_rows(run_dir)
    keys = [tuple(r[k] for k in KEY) for r in rows]
    assert len(keys) == len(set(keys)) == 15
    status = {cell: r["status"] for cell, r in by_cell(rows).items()}
    assert status == {
        ("t_good", 16): "ok", ("t_good", 32): "ok",
        ("torch_chunked", 16): "ok", ("torch_chunked", 32): "ok",
        ("t_abort", 16): "failed",
        ("t_oom", 16): "oom", ("t_oom", 32): "skipped",
        ("t_slow", 16): "timeout", ("t_slow", 32): "timeout",
        ("t_wrong", 16): "wrong", ("t_wrong", 32): "wrong",
        ("t_off", 16): "skipped", ("t_off", 32): "skipped",
        ("no_such_kernel", 16): "skipped", ("no_such_kernel", 32): "skipped",
    }  # fmt: skip


def test_crash_is_isolated_and_explained(sweep):
    _, run_dir, _ = sweep
    rows = by_cell(read_rows(run_dir))
    note = rows[("t_abort", 16)]["note"]
    assert "SIGABRT" in note and "first call" in note
    assert rows[("t_good", 16)]["status"] == "ok"  # measured in the same case, before or after the crash
    env = json.loads((run_dir / "env.json").read_text())
    assert env["worker_starts"] == 4  # first, after the abort, after each of the two hangs


def test_oom_and_timeout_skip_larger_sizes(sweep):
    _, run_dir, _ = sweep
    rows = by_cell(read_rows(run_dir))
    assert "1.00 TiB" in rows[("t_oom", 16)]["note"]
    assert rows[("t_oom", 32)]["note"].startswith("out of memory at a smaller or equal size [B=1, H=3, N=64, T=16]")
    assert "max_cell_s=6" in rows[("t_slow", 16)]["note"]
    # a time-out in the first call (compile, autotune, check) predicts nothing about larger cells:
    # they run and say so themselves (a time-out in timed calls does skip them: test_predict_first_call)
    assert rows[("t_slow", 32)]["note"].startswith("first call + check + warm-up exceeded")
    assert rows[("t_off", 16)]["note"] == "test backend switched off"
    assert rows[("no_such_kernel", 32)]["note"] == "not registered for bi_wkv7"


def test_ok_rows_statistics_and_derived_metrics(sweep):
    _, run_dir, _ = sweep
    rows = by_cell(read_rows(run_dir))
    samples = {(s["impl"], s["tokens"]): s for s in map(json.loads, open(run_dir / "samples.jsonl"))}
    for t in (16, 32):
        good, base = rows[("t_good", t)], rows[("torch_chunked", t)]
        xs = sorted(samples[("t_good", t)]["samples_ms"])
        assert int(good["n_samples"]) == len(xs) >= 2 and len(samples[("t_good", t)]["round_sizes"]) == 2
        assert float(good["min_ms"]) == pytest.approx(xs[0], rel=1e-6)
        med = float(good["median_ms"])
        assert float(good["p20_ms"]) <= med <= float(good["p80_ms"])
        assert float(good["tokens_per_s"]) == pytest.approx(t / (med / 1e3), rel=1e-5)
        assert float(base["median_ms"]) > 0 and "speedup" not in good and "baseline_impl" not in good
        assert float(good["rel_err"]) <= float(good["tol"]) == 2e-5
        assert float(good["first_call_ms"]) > 0
        assert int(good["bytes_moved"]) == 4 * (7 * t * 3 * 64 + t * 3)
        assert float(good["pct_copy_bw"]) > 0 and float(good["tflops"]) > 0
    wrong = rows[("t_wrong", 16)]
    assert wrong["median_ms"] == wrong["tokens_per_s"] == "" and math.isclose(float(wrong["rel_err"]), 1.0)


def test_env_json_records_the_run(sweep):
    root, run_dir, _ = sweep
    env = json.loads((run_dir / "env.json").read_text())
    assert env["gpu"] is None and env["device"] == "cpu"
    assert env["copy_bandwidth_gbs"] > 0
    assert env["suite"]["name"] == "misbehaving" and env["argv"]
    assert env["plugins"] == [str((root / "misbehaving_impls.py").resolve())]
    assert env["packages"]["torch"] and "commit" in env["git"]


def test_resume_completes_only_what_is_missing(sweep, tmp_path):
    root, run_dir, _ = sweep
    run2 = tmp_path / "run"
    shutil.copytree(run_dir, run2)
    args = ["run", str(root / "suite.toml"), "--out", str(run2), "--resume", "--no-progress"]
    before = (run2 / "results.csv").read_bytes()
    assert cli.main(["run", "--out", str(run2), "--resume", "--no-progress"]) == 0  # suite from env.json
    assert (run2 / "results.csv").read_bytes() == before  # nothing missing: nothing run

    # simulate a kill: the last finished cell never got written, and a row was torn mid-write
    rows = read_rows(run2)
    victim = next(r for r in rows if r["impl"] == "t_good" and r["tokens"] == "32")
    with open(run2 / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(r for r in rows if r is not victim)
        fh.write("1,2026,bi_wkv7,t_go")
    assert cli.main(args) == 0
    again = read_rows(run2)
    keys = [tuple(r[k] for k in KEY) for r in again]
    assert len(keys) == len(set(keys)) == 15
    redone = by_cell(again)[("t_good", 32)]
    assert redone["status"] == "ok" and float(redone["median_ms"]) > 0

    # a plain re-run of some cells replaces their rows instead of duplicating them
    assert cli.main(["run", str(root / "suite.toml"), "--out", str(run2), "--impl", "torch_chunked",
                     "--no-progress"]) == 0  # fmt: skip
    final = read_rows(run2)
    assert len(final) == 15 and len({tuple(r[k] for k in KEY) for r in final}) == 15
    env = json.loads((run2 / "env.json").read_text())
    assert len(env["previous_sessions"]) == 2  # the first session and the resume


def test_predictions_from_history():
    suite = S.suite_from_flags(
        "attention", models="AST-B", tokens="1000,4000", run={"max_cell_s": 10, "min_samples": 3}
    )
    small, big = P.expand_cases(suite, "cpu")
    pred = predict.SkipPredictor(suite.run)
    pred.learn(small, "x", "ok", 100.0)  # 100 ms at T=1000 -> 1.6 s at T=4000 (quadratic) x 5 calls < 10 s
    assert pred.why_skip(big, "x") is None
    pred.learn(small, "y", "ok", 400.0)  # -> 6.4 s per call x 5 > 10 s
    assert "quadratic in T" in pred.why_skip(big, "y")
    pred.learn(small, "z", "oom", None)
    assert pred.why_skip(big, "z").startswith("out of memory at a smaller or equal size")
    pred.learn_rows([{**dict(zip(KEY, small.key("w"), strict=True)), "status": "timeout"}], [small, big])
    assert pred.why_skip(big, "w").startswith("timed out at a smaller or equal size")
    assert predict.predict_ms("bi_wkv7", 4000, [(1000, 100.0), (2000, 150.0)])[0] == pytest.approx(300.0)  # linear
    assert predict.predict_ms("bi_wkv7", 500, [(1000, 100.0)]) is None


def test_dominance():
    assert predict.dominates({"B": 8, "T": 64}, {"B": 1, "T": 64})
    assert not predict.dominates({"B": 8, "T": 32}, {"B": 1, "T": 64})
    assert not predict.dominates({"B": 8, "T": 64}, {"B": 1, "D": 64})


def test_cli_errors_are_reported_not_raised(tmp_path, capsys):
    assert cli.main(["run", "--op", "bi_wkv7", "--tokens", "12,zz", "--dry-run"]) == 2
    assert "--tokens" in capsys.readouterr().err
    assert cli.main(["run"]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[[group]]\nop = 'bi_wkv7'\ntokens = [8]\nbatch = ['x']\n")
    assert cli.main(["run", str(bad), "--dry-run"]) == 2
    assert "group[0].batch[0]" in capsys.readouterr().err


def test_dry_run_lists_cells(capsys):
    assert cli.main(["run", "--op", "bi_wkv7", "--model", "A-RWKV-T", "--tokens", "64", "--impl",
                     "torch_loop,torch_chunked", "--device", "cpu", "--dry-run"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "torch_loop" in out and "torch_chunked" in out and "1 cases, 2 cells" in out


ADHOC = ["--op", "bi_wkv7", "--model", "A-RWKV-T", "--tokens", "16"]


@pytest.mark.parametrize(
    ("argv", "unknown", "known"),
    [
        ([*ADHOC, "--impl", "torch_loop,nope"], "'nope'", "torch_chunked"),
        ([*ADHOC, "--exclude", "nope"], "'nope'", "torch_loop"),
        (["--op", "nope", "--tokens", "16"], "'nope'", "bi_selective_scan"),
        (["--op", "bi_wkv7", "--model", "A-RWKV-X", "--tokens", "16"], "'A-RWKV-X'", "A-RWKV-T"),
        ([*ADHOC, "--dtype", "float8"], "'float8'", "bfloat16"),
        (["SUITE", "--impl", "nope"], "'nope'", "torch_chunked"),
        (["SUITE", "--op", "nope"], "'nope'", "bi_wkv7"),
    ],
)
def test_command_line_typos_fail_at_once(argv, unknown, known, tmp_path, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text("[[group]]\nop = 'bi_wkv7'\nmodels = ['A-RWKV-T']\ntokens = [16]\n", encoding="utf-8")
    argv = [str(suite) if a == "SUITE" else a for a in argv]
    out = tmp_path / "run"
    assert cli.main(["run", *argv, "--device", "cpu", "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert unknown in err and known in err
    assert not out.exists()  # nothing was run or written


def test_suite_file_plugin_paths_resolve_against_the_suite(tmp_path, plugin_source, clean_registry, capsys):
    sub = tmp_path / "suites"
    sub.mkdir()
    (sub / "misbehaving_impls.py").write_text(plugin_source, encoding="utf-8")
    text = "plugins = ['misbehaving_impls.py']\n[[group]]\nop = 'bi_wkv7'\nimpls = ['t_good', 'gone']\n"
    (sub / "s.toml").write_text(text + "models = ['A-RWKV-T']\ntokens = [16]\n", encoding="utf-8")
    suite = S.load_suite(sub / "s.toml")
    assert suite.plugins == (str((sub / "misbehaving_impls.py").resolve()),)
    assert cli.main(["run", str(sub / "s.toml"), "--device", "cpu", "--dry-run"]) == 0
    out = capsys.readouterr().out  # a suite naming an implementation that is not loaded: skipped, not an error
    assert "t_good" in out and "gone  (skipped: not registered for bi_wkv7)" in out


def test_sigint_keeps_finished_rows_and_stops_at_once(tmp_path, plugin_source):
    """A real interrupt: the finished case's row stays, the hanging cell is abandoned quickly."""
    (tmp_path / "misbehaving_impls.py").write_text(plugin_source, encoding="utf-8")
    suite = SUITE.split("[[group]]")[0].replace("max_cell_s = 6", "max_cell_s = 300")
    suite += textwrap.dedent(
        """
        [[group]]
        op = "bi_wkv7"
        impls = ["t_good"]
        models = ["A-RWKV-T"]
        tokens = [16]

        [[group]]
        op = "bi_wkv7"
        impls = ["t_slow"]
        models = ["A-RWKV-T"]
        tokens = [32]
        """
    )
    (tmp_path / "suite.toml").write_text(suite, encoding="utf-8")
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "wkvbench.cli", "run", str(tmp_path / "suite.toml"), "--out", str(run_dir),
           "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (run_dir / "results.csv").exists() and len(read_rows(run_dir)) >= 1:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.5)  # let it enter the hanging cell
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - t0 < 8  # did not wait out the 120 s call
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "--resume" in err
    rows = read_rows(run_dir)
    assert [(r["impl"], r["status"]) for r in rows] == [("t_good", "ok")]


def test_throttle_tally_ignores_idle(tmp_path):
    run = R.Runner(S.suite_from_flags("bi_wkv7"), "cpu", tmp_path, progress=False)
    run._count_throttle({"throttle_reasons": ["gpu_idle"]}, {"throttle_reasons": ["sw_power_cap", "gpu_idle"]})
    run._count_throttle({"throttle_reasons": []}, {"throttle_reasons": ["gpu_idle"]})
    run._count_throttle(None, None)  # no NVML: not counted
    assert run.throttle == {"cells": 2, "cells_throttled": 1, "reasons": {"sw_power_cap": 1}}


def test_summary_speedup_is_against_the_ops_naive_impl():
    def row(impl, tokens, status, ms):
        return {"op": "bi_wkv7", "impl": impl, "model": "A-RWKV-T", "batch": 1, "tokens": tokens,
                "dtype": "float32", "device": "cpu", "variant": "realistic", "status": status,
                "median_ms": ms, "tokens_per_s": None}  # fmt: skip

    rows = [
        row("torch_loop", 64, "ok", 10.0),
        row("fast", 64, "ok", 2.0),  # 5x
        row("torch_loop", 128, "ok", 40.0),
        row("fast", 128, "ok", 2.0),  # 20x: geomean of 5 and 20 is 10
        row("torch_loop", 256, "oom", None),
        row("fast", 256, "ok", 1.0),  # no naive timing: not counted
    ]
    lines = {line.split()[1]: line for line in summary_table(rows).splitlines()[2:]}
    assert "10x" in lines["fast"] and "1x" in lines["torch_loop"]
