"""Reliability of ``wkvbench run`` and its readers: one writer, refused resumes, the worker's own
package, compare's broken cells, damage reported, limits, Ctrl-C on a pool, verify's children."""

import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wkvbench import cli
from wkvbench.harness import rundir
from wkvbench.harness.pool import slots_for

REPO = Path(__file__).resolve().parents[2]
F = ["--device", "cpu", "--op", "bi_wkv7", "--impl", "torch_chunked,torch_loop", "--model", "A-RWKV-T"]
FAST = ["--budget-s", "0.01", "--warmup-s", "0", "--rounds", "1", "--min-samples", "2", "--no-progress"]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
ENV["GIT_OPTIONAL_LOCKS"] = "0"  # git under a file-size limit must not leave an index.lock behind


def rows_of(run):
    with open(Path(run) / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def wkv(*args, cwd=None, **kw):
    cmd = [sys.executable, "-P", "-m", "wkvbench.cli", *map(str, args)]
    return subprocess.Popen(
        cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_sigint, **kw
    )


def _sigint():  # Ctrl-C as a terminal delivers it, even when the tests run in the background
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("rel") / "base"
    assert cli.main(["run", *F, *FAST, "--tokens", "16,32", "--out", str(out)]) == 0
    return out


SLEEPER = textwrap.dedent(
    """
    import time
    from wkvbench import register_impl

    @register_impl("bi_wkv7", name="zz_sleep", backend="test", devices=("cpu",))
    def zz_sleep(r, w, k, v, a, b, g=None):
        time.sleep(300)
    """
)


def test_a_second_writer_is_refused_while_the_first_runs(tmp_path):
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    out = tmp_path / "c"
    flags = ["--impl", "zz_sleep", "--plugin", tmp_path / "sleeper.py", "--max-cell-s", "600"]
    first = wkv("run", *F, *FAST, *flags, "--tokens", "16,32", "--out", out)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and first.poll() is None and not rundir.in_progress(out):
            time.sleep(0.05)
        second = wkv("run", *F, *FAST, "--tokens", "16", "--out", out)
        _, err = second.communicate(timeout=300)
        assert first.poll() is None, "the first run ended early"
        assert second.returncode == 2, err
        assert f"pid {first.pid}" in err and "another wkvbench is writing" in err and "since" in err
        plan = (out / "plan.json").read_text()
        first.send_signal(signal.SIGINT)
        _, err1 = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 130, err1
    assert (out / "plan.json").read_text() == plan  # the refused writer changed nothing
    assert rundir.in_progress(out) is None  # the lock went with its process


@pytest.mark.parametrize("flags, named", [(["--tokens", "16"], "--tokens"), (["--mode", "bwd"], "--mode")])
def test_resume_refuses_flags_that_change_the_plan(base, flags, named, capsys):
    assert cli.main(["run", "--resume", "--out", str(base), *flags, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert named in err and "--resume" in err and "new --out" in err
    # the same flags as the run: allowed (nothing to do)
    assert cli.main(["run", *F, "--tokens", "16,32", "--resume", "--out", str(base), "--no-progress"]) == 0


def test_the_worker_runs_the_parents_package_not_one_in_the_working_directory(tmp_path):
    shadow = tmp_path / "sh"
    (shadow / "wkvbench").mkdir(parents=True)
    (shadow / "wkvbench" / "__init__.py").write_text('raise SystemExit("SHADOW")\n')
    proc = wkv("run", *F, *FAST, "--impl", "torch_chunked", "--tokens", "16", "--out", tmp_path / "s", cwd=shadow)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "SHADOW" not in err, err
    assert rows_of(tmp_path / "s")[0]["status"] == "ok"
    env = rundir.read_env(tmp_path / "s")
    assert Path(env["package_path"]) == REPO


def test_compare_lists_non_finite_and_missing_cells_as_regressions(base, tmp_path, capsys):
    b = tmp_path / "b"
    shutil.copytree(base, b)
    rows = rows_of(b)
    rows[0]["median_ms"] = "inf"
    del rows[1]
    with open(b / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert cli.main(["compare", str(base), str(b)]) == 1
    out = capsys.readouterr().out
    assert "ok -> ok (no finite timing)" in out and "only in A" in out and "REGRESSION" in out
    assert cli.main(["compare", str(b), str(base)]) == 0  # the reverse: improvements
    assert "improved: " in capsys.readouterr().out


def test_status_reports_damage_and_readers_drop_a_torn_row(base, tmp_path, capsys):
    d = tmp_path / "d"
    shutil.copytree(base, d)
    text = (d / "results.csv").read_text().splitlines(keepends=True)
    (d / "results.csv").write_text("".join(line.split(",", 1)[1] for line in text))  # a column lost
    assert cli.main(["status", str(d)]) == 1
    assert "damaged" in capsys.readouterr().err
    t = tmp_path / "t"
    shutil.copytree(base, t)
    full = (t / "results.csv").read_text()
    cut = full[: full.rindex("\n", 0, len(full) - 1) + 1] + full.splitlines()[-1][:-8]
    (t / "results.csv").write_text(cut)
    assert cli.main(["status", str(t)]) == 0
    assert "dropped 1 incomplete row" in capsys.readouterr().err
    assert cli.main(["compare", str(base), str(t)]) == 1  # the torn cell is missing, not a number
    assert "only in A" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--tokens", "99999999999"], "tokens"),
        (["--seconds", "1e12"], "seconds"),
        (["--tokens", "16,32", "--max-cells", "3"], "--max-cells"),
    ],
)
def test_absurd_sweeps_are_refused_before_planning(flags, named, capsys):
    assert cli.main(["run", *F, *flags, "--dry-run"]) == 2
    assert named in capsys.readouterr().err


def test_nothing_planned_and_never_more_workers_than_cells(tmp_path, capsys):
    assert cli.main(["run", *F, "--tokens", "16", "--shard", "2/2", "--out", str(tmp_path / "e")]) == 0
    assert "nothing planned: shard 2/2" in capsys.readouterr().err
    assert len(slots_for(None, 4, "cpu", cells=1)) == 1
    said = []
    assert len(slots_for(None, 64, "cpu", cells=100, log=said.append)) == 64 and "core" in said[0]


def test_ctrl_c_on_a_pool_exits_130_every_time(tmp_path):
    rng = random.Random(7)
    seen = set()
    for i in range(3):
        out = tmp_path / f"p{i}"
        proc = wkv("run", *F, *FAST, "--budget-s", "0.2", "--tokens", "16,32,48", "--workers", "2", "--out", out)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not rundir.in_progress(out):
            time.sleep(0.02)  # the command has started (a signal while Python imports torch is Python's)
        time.sleep(rng.uniform(0.0, 8.0))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode in (130, 0), err  # 0: it finished before the signal
        seen.add(proc.returncode)
        assert "Traceback" not in err, err
        if proc.returncode == 130 and (out / "results.csv").is_file():
            keys = [(r["impl"], r["tokens"]) for r in rows_of(out)]
            assert len(keys) == len(set(keys))
    assert 130 in seen  # the signal did land during a run


HANG = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from pathlib import Path
    from wkvbench import register_impl

    @register_impl("bi_wkv7", name="zz_hang_tree", backend="test", devices=("cpu",))
    def zz_hang_tree(r, w, k, v, a, b, g=None):
        grand = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        Path(os.environ["ZZ_PIDS"]).write_text(f"{os.getpid()} {grand.pid}")
        time.sleep(120)
    """
)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_verify_leaves_no_child_when_interrupted(tmp_path):
    plugin = tmp_path / "hang_plugin.py"
    plugin.write_text(HANG)
    pids = tmp_path / "pids"
    env = dict(ENV, ZZ_PIDS=str(pids))
    cmd = [sys.executable, "-P", "-m", "wkvbench.cli", "verify", "--op", "bi_wkv7", "--impl", "zz_hang_tree",
           "--dtype", "float32", "--device", "cpu", "--plugin", str(plugin)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_sigint)
    deadline = time.time() + 120
    while time.time() < deadline and not pids.is_file():
        time.sleep(0.1)
    time.sleep(0.3)
    child, grand = map(int, pids.read_text().split())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    deadline = time.time() + 10
    while time.time() < deadline and not (_gone(child) and _gone(grand)):
        time.sleep(0.1)
    assert _gone(child) and _gone(grand)


def test_memory_limits_skip_or_oom():
    from wkvbench.harness import predict
    from wkvbench.harness import suite as S
    from wkvbench.harness.plan import plan
    from wkvbench.harness.worker import classify

    assert classify(MemoryError()) == "oom"
    assert classify(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")) == "oom"
    suite = S.suite_from_flags("bi_wkv7", impls="torch_chunked", models="A-RWKV-T", tokens="4096")
    case = plan(suite, "cpu")[0][0]
    p = predict.SkipPredictor(suite.run)
    assert p.why_skip(case, "torch_chunked") is None
    p.set_device_bytes(1000)
    why = p.why_skip(case, "torch_chunked")
    assert "bytes; the device has 1,000" in why


def test_a_suite_naming_an_unknown_implementation_is_an_error(tmp_path, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text('name = "s"\n[[group]]\nop = "bi_wkv7"\nimpls = ["torch_chunked", "no_such"]\n'
                     'models = ["A-RWKV-T"]\ntokens = [16]\n')  # fmt: skip
    assert cli.main(["run", str(suite), "--device", "cpu", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "s.toml: group[0].impls: unknown implementation 'no_such'" in err
    suite.write_bytes(b"name = '\xff'\n")
    assert cli.main(["run", str(suite), "--dry-run"]) == 2
    assert "s.toml: cannot read it as UTF-8" in capsys.readouterr().err


def test_a_torn_samples_line_is_dropped_and_resume_measures_that_cell_again(base, tmp_path, capsys):
    from wkvbench.report.load import load_run
    from wkvbench.schema import key_of

    t = tmp_path / "ts"
    shutil.copytree(base, t)
    text = (t / "samples.jsonl").read_text()
    (t / "samples.jsonl").write_text(text[:-20])  # the last record torn
    lost = key_of(rundir.samples_records(base)[-1][1])
    run = load_run(t)  # the report reads the rest
    assert lost not in run.samples and len(run.samples) == len(rows_of(base)) - 1
    assert "dropped 1 incomplete samples record" in capsys.readouterr().err
    assert cli.main(["run", *F, *FAST, "--tokens", "16,32", "--resume", "--out", str(t)]) == 0
    assert "measuring 1 cell(s) again" in capsys.readouterr().err
    keys = [key_of(r) for r in rundir.read_results(t)]
    assert len(keys) == len(set(keys)) == 4
    assert lost in {key_of(r) for r in rundir.read_samples(t)}


def test_a_full_disk_is_one_line_and_resume_completes_after(tmp_path):
    import resource

    out = tmp_path / "full"

    def small_files():  # every file of the run may grow to 1500 bytes: env.json and results.csv do not fit
        resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))

    cmd = [sys.executable, "-P", "-m", "wkvbench.cli", "run", *F, *FAST, "--tokens", "16,32", "--out", str(out)]
    first = subprocess.run(cmd, env=ENV, capture_output=True, text=True, preexec_fn=small_files, timeout=300)
    assert first.returncode == 1 and "Traceback" not in first.stderr, first.stderr
    last = first.stderr.strip().splitlines()[-1]
    assert last.startswith("wkvbench run: ") and str(out) in last and "File too large" in last
    assert not list(out.glob("*.tmp"))
    again = subprocess.run([*cmd, "--resume"], env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    keys = [(r["impl"], r["tokens"]) for r in rows_of(out)]
    assert len(keys) == len(set(keys)) == 4


def test_a_child_that_imported_another_wkvbench_stops_naming_both(tmp_path):
    code = "from wkvbench.harness.client import check_same_package; check_same_package(); print('same')"
    env = dict(ENV, WKVBENCH_PARENT_ROOT=str(tmp_path))
    out = subprocess.run([sys.executable, "-P", "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 3 and "same" not in out.stdout
    assert str(tmp_path) in out.stderr and str(REPO) in out.stderr
