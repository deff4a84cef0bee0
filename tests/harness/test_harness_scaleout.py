"""Scale-out: shards partition a suite exactly, a worker pool writes one clean store, shards merge
back into the unsharded run, a local submitit array runs and reports, and bad specs fail first."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from wkvbench import cli, registry
from wkvbench.harness import shard
from wkvbench.harness.merge import merge_runs
from wkvbench.harness.plan import plan
from wkvbench.harness.pool import slots_for
from wkvbench.harness.suite import SuiteError, load_suite
from wkvbench.schema import KEY

REPO = Path(__file__).resolve().parents[2]

TINY = textwrap.dedent(
    """
    name = "tiny"
    plugins = ["misbehaving_impls.py"]
    [run]
    device = "cpu"
    budget_s = 0.01
    warmup_s = 0.0
    rounds = 1
    min_samples = 2
    max_samples = 4
    max_cell_s = 60
    energy_s = 0

    [[group]]
    op = "bi_wkv7"
    impls = ["torch_chunked", "t_good"]
    models = ["A-RWKV-T"]
    batch = [1, 2]
    tokens = [16, 32]

    [[group]]
    op = "bi_wkv7"
    impls = ["t_abort", "torch_chunked"]
    models = ["A-RWKV-S"]
    tokens = [16]

    [[group]]
    op = "attention"
    impls = ["torch_eager"]
    models = ["AST-B"]
    tokens = [16]
    """
)


def rows_of(run_dir):
    with open(Path(run_dir) / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def write_rows(run_dir, rows, fields=None):
    """Write ``rows`` as ``run_dir``/results.csv, with the columns ``fields`` (default: the first row's keys)."""
    with open(Path(run_dir) / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(fields or rows[0]))
        w.writeheader()
        w.writerows(rows)


def cell_key(row):
    return tuple(row[k] for k in KEY)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, plugin_source):
    before = {(r.op, r.name) for r in registry.list_impls()}
    root = tmp_path_factory.mktemp("scaleout")
    (root / "misbehaving_impls.py").write_text(plugin_source, encoding="utf-8")
    (root / "tiny.toml").write_text(TINY, encoding="utf-8")
    yield root
    for op, name in {(r.op, r.name) for r in registry.list_impls()} - before:
        registry.unregister_impl(op, name)


@pytest.fixture(scope="module")
def pooled(tiny):
    """The tiny suite, unsharded, on two CPU workers."""
    out = tiny / "pooled"
    rc = cli.main(
        ["run", str(tiny / "tiny.toml"), "--workers", "2", "--device", "cpu", "--out", str(out), "--no-progress"]
    )
    return out, rc


# ----------------------------------------------------------------------------- shards
@pytest.mark.parametrize("suite_file", ["smoke.toml", "paper.toml", "scaling.toml"])
def test_shards_partition_the_plan_exactly_and_deterministically(suite_file):
    planned = plan(load_suite(REPO / "suites" / suite_file), "cpu")
    everything = shard.cells(planned)
    assert len(everything) == len(set(everything))
    units = shard.by_cost(planned)
    for n in (1, 2, 3, 5, 8):
        parts = [shard.shard_of(planned, k, n) for k in range(1, n + 1)]
        got = [c for p in parts for c in shard.cells(p)]
        assert Counter(got) == Counter(everything), f"N={n}: cells lost or repeated"
        assert parts == [shard.shard_of(planned, k, n) for k in range(1, n + 1)], "not deterministic"
        for p in parts:  # each shard keeps the plan's (growing-size) order
            idx = [everything.index(c) for c in shard.cells(p)]
            assert idx == sorted(idx)
        # longest-processing-time-first: no shard exceeds the mean load by more than one series
        loads = [shard.series_cost(p) for p in parts]
        assert max(loads) <= sum(loads) / n + max(c for _, _, c in units) + 1e-9


def test_cell_cost_follows_the_time_exponent():
    planned = plan(load_suite(REPO / "suites" / "smoke.toml"), "cpu")
    cost = {(c.op, c.tokens): shard.cell_cost(c) for c, _ in planned}
    assert cost[("bi_wkv7", 256)] == pytest.approx(4 * cost[("bi_wkv7", 64)])  # linear
    assert cost[("attention", 256)] == pytest.approx(16 * cost[("attention", 64)])  # quadratic


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "2", "a/b", "-1/2"])
def test_bad_shard_specs(text):
    with pytest.raises(SuiteError, match="--shard"):
        shard.parse_shard(text)


# ----------------------------------------------------------------------------- bad specs, before any cell
@pytest.mark.parametrize(
    "flags, named",
    [
        (["--shard", "0/2"], "--shard"),
        (["--shard", "3/2"], "--shard"),
        (["--gpus", "9"], "--gpus"),
        (["--gpus", "all"], "--gpus"),
        (["--workers", "0"], "--workers"),
        (["--workers", "2", "--gpus", "0"], "--workers"),
    ],
)
def test_bad_run_specs_exit_2_before_any_cell(tiny, tmp_path, capsys, flags, named):
    out = tmp_path / "run"
    assert cli.main(["run", str(tiny / "tiny.toml"), "--out", str(out), "--no-progress", *flags]) == 2
    assert named in capsys.readouterr().err
    assert not (out / "results.csv").exists()


def test_gpu_slots_are_checked_against_the_gpus_here(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(SuiteError, match="--gpus: GPU 9 does not exist"):
        slots_for("9", None, "cuda", count=2)
    with pytest.raises(SuiteError, match="--gpus: GPU 1 named twice"):
        slots_for("1,1", None, "cuda", count=2)
    with pytest.raises(SuiteError, match="--workers"):
        slots_for(None, 3, "cuda", count=2)
    assert slots_for("all", None, "cuda", count=3) == [{"CUDA_VISIBLE_DEVICES": str(i)} for i in range(3)]
    assert slots_for("0,2", None, "cuda", count=3) == [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "2"}]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")  # indices are among the GPUs this process sees
    assert slots_for("1", None, "cuda", count=3) == [{"CUDA_VISIBLE_DEVICES": "5"}]
    assert slots_for(None, 2, "cpu") == [{}, {}]
    assert slots_for(None, None, "cpu") is None


# ----------------------------------------------------------------------------- the pool
def test_pool_writes_every_cell_once(pooled):
    out, rc = pooled
    assert rc == 0
    rows = rows_of(out)
    keys = [cell_key(r) for r in rows]
    planned = json.loads((out / "plan.json").read_text())["cells"]
    assert len(keys) == len(set(keys)) == len(planned) == 11
    status = {r["impl"]: r["status"] for r in rows if r["impl"] == "t_abort"}
    assert status == {"t_abort": "failed"}  # a crash costs its cell only
    assert all(r["status"] == "ok" for r in rows if r["impl"] != "t_abort")
    env = json.loads((out / "env.json").read_text())
    assert [w["slot"] for w in env["workers"]] == [0, 1]
    assert env["worker_starts"] >= 3  # two slots, and a restart after the abort


def test_shards_merge_into_the_unsharded_run(pooled, tiny, tmp_path):
    shards = []
    for k in (1, 2, 3):
        out = tmp_path / f"s{k}"
        assert cli.main(["run", str(tiny / "tiny.toml"), "--shard", f"{k}/3", "--out", str(out), "--no-progress"]) == 0
        shards.append(out)
    assert all(rows_of(s) for s in shards)  # the tiny suite has enough series for every shard
    merged = tmp_path / "merged"
    assert cli.main(["merge", *map(str, shards), "-o", str(merged)]) == 0
    a = {cell_key(r): r for r in rows_of(pooled[0])}
    b = {cell_key(r): r for r in rows_of(merged)}
    assert a.keys() == b.keys() and len(rows_of(merged)) == len(b)
    for k in a:  # same cells, statuses and (seeded inputs) the same errors
        assert a[k]["status"] == b[k]["status"], k
        assert a[k]["rel_err"] == b[k]["rel_err"], k
    samples = [json.loads(line) for line in (merged / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == sum(1 for r in b.values() if r["status"] == "ok")


def test_merge_rules(pooled, tiny, tmp_path, capsys):
    src = pooled[0]
    # the same cells again, newer, on the same machine: the newer rows win and the merge says so
    newer = tmp_path / "newer"
    newer.mkdir()
    rows = rows_of(src)
    for r in rows:
        r["timestamp"] = "2999-01-01T00:00:00+00:00"
    write_rows(newer, rows)
    (newer / "env.json").write_text((src / "env.json").read_text())
    res = merge_runs([src, newer], tmp_path / "m1", log=print)
    assert res["rows"] == len(rows) and res["replaced"] == len(rows)
    assert "kept the newer row" in capsys.readouterr().out
    assert {r["timestamp"] for r in rows_of(tmp_path / "m1")} == {"2999-01-01T00:00:00+00:00"}
    # another GPU model: both kept, one env file per machine
    other = tmp_path / "other"
    other.mkdir()
    for r in rows:
        r["gpu"] = "NVIDIA H200"
    write_rows(other, rows)
    env = json.loads((src / "env.json").read_text())
    env["gpu"] = {"name": "NVIDIA H200"}
    (other / "env.json").write_text(json.dumps(env))
    res = merge_runs([src, other], tmp_path / "m2")
    assert res["rows"] == 2 * len(rows) and res["replaced"] == 0
    assert len(list((tmp_path / "m2" / "envs").glob("*.json"))) == 2
    assert len(json.loads((tmp_path / "m2" / "env.json").read_text())["machines"]) == 2
    # a different suite: refused without --force
    env["suite"]["name"] = "another"
    (other / "env.json").write_text(json.dumps(env))
    assert cli.main(["merge", str(src), str(other), "-o", str(tmp_path / "m3")]) == 2
    assert "--force" in capsys.readouterr().err
    assert not (tmp_path / "m3").exists()
    assert cli.main(["merge", str(src), str(other), "-o", str(tmp_path / "m3"), "--force"]) == 0


def test_a_killed_pool_run_resumes_without_duplicates(tiny, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "wkvbench.cli", "run", str(tiny / "tiny.toml"), "--workers", "2", "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([*cmd, "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "results.csv").is_file() and len(rows_of(out)) >= 2:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(rows_of(out))
    assert 2 <= done < 11
    assert cli.main(["run", "--resume", "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    keys = [cell_key(r) for r in rows_of(out)]
    assert len(keys) == len(set(keys)) == 11


# ----------------------------------------------------------------------------- submit, status
def test_submit_local_array_status_and_report(tiny, tmp_path, capsys):
    run_dir = tmp_path / "sub"
    args = ["submit", str(tiny / "tiny.toml"), "--out", str(run_dir), "--executor", "local", "--jobs", "2"]
    assert cli.main([*args, "--gpus-per-job", "0"]) == 0
    keys = [cell_key(r) for r in rows_of(run_dir)]
    assert len(keys) == len(set(keys)) == 11
    capsys.readouterr()
    assert cli.main(["status", str(run_dir)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[-1].split() == ["all", "11", "10", "1", "0"]  # t_abort failed, nothing pending
    # resume: only an unfinished shard goes again
    first = sorted((run_dir / "shards").iterdir())[0]
    kept = rows_of(first)
    write_rows(first, kept[:-1], fields=kept[0])
    assert cli.main(["submit", "--out", str(run_dir), "--executor", "local", "--resume"]) == 0
    subs = json.loads((run_dir / "submit.json").read_text())["submissions"]
    assert len(subs) == 2 and list(subs[1]["shards"]) == ["1"]
    assert len(rows_of(run_dir)) == 11
    # a second submit into the same directory must say --resume
    assert cli.main([*args]) == 2
    assert "--resume" in capsys.readouterr().err
    from wkvbench.report.build import build_report

    build_report(run_dir, tmp_path / "report", formats=("png",))
    assert "torch_chunked" in (tmp_path / "report" / "report.md").read_text()


def test_submit_without_submitit_names_the_extra(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)
    args = ["submit", str(tiny / "tiny.toml"), "--out", str(tmp_path / "x"), "--executor", "local", "--jobs", "2"]
    assert cli.main(args) == 2
    assert "pip install 'wkvbench[cluster]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, named",
    [(["--jobs", "0"], "--jobs"), (["--jobs", "2", "--slurm-arg", "nokey"], "--slurm-arg"), ([], "--jobs")],
)
def test_bad_submit_specs(tiny, tmp_path, capsys, flags, named):
    assert cli.main(["submit", str(tiny / "tiny.toml"), "--out", str(tmp_path / "x"), *flags]) == 2
    assert named in capsys.readouterr().err


# ----------------------------------------------------------------------------- across machines
def _as_other_gpu(src, dst, gpu="NVIDIA H200"):
    dst.mkdir()
    rows = rows_of(src)
    for r in rows:
        r["gpu"] = gpu
    write_rows(dst, rows)
    env = json.loads((src / "env.json").read_text())
    env.update(gpu={"name": gpu}, hostname="node7")
    (dst / "env.json").write_text(json.dumps(env))
    (dst / "samples.jsonl").write_text((src / "samples.jsonl").read_text())
    return dst


def test_compare_refuses_timings_of_different_gpu_models(pooled, tmp_path, capsys):
    other = _as_other_gpu(pooled[0], tmp_path / "h200")
    assert cli.main(["compare", str(pooled[0]), str(other)]) == 2
    assert "--allow-gpu-mismatch" in capsys.readouterr().err
    assert cli.main(["compare", str(pooled[0]), str(other), "--allow-gpu-mismatch"]) == 0
    assert "NVIDIA H200" in capsys.readouterr().err
    assert cli.main(["compare", str(pooled[0]), str(pooled[0])]) == 0  # same model: no question asked


def test_a_merged_multi_gpu_run_splits_by_gpu_model(pooled, tmp_path):
    from wkvbench.report.load import load_run
    from wkvbench.report.machines import gpu_models, split_by_gpu

    other = _as_other_gpu(pooled[0], tmp_path / "h200")
    merged = tmp_path / "merged"
    merge_runs([pooled[0], other], merged)
    models = gpu_models(merged)
    assert len(models) == 2 and "NVIDIA H200" in models
    facets = split_by_gpu([merged], tmp_path / "report")
    assert set(facets) == set(models)
    for model, run_dir in facets.items():
        run = load_run(run_dir)
        assert len(run.results) == 11 and set(run.results["gpu"]) == {model}
        assert (run.env.gpu == model) if model == "NVIDIA H200" else run.env.gpu is None
        assert len(run.samples) == 10  # every ok cell's samples came along


def test_submit_to_slurm_writes_one_array(tiny, tmp_path, monkeypatch):
    """sbatch and srun stand-ins record what submitit would hand Slurm."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {tmp_path}/job.sbatch\necho "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    run_dir = tmp_path / "cluster"
    args = ["submit", str(tiny / "tiny.toml"), "--out", str(run_dir), "--jobs", "3", "--partition", "gpu"]
    args += ["--gpus-per-job", "2", "--time", "90", "--slurm-arg", "account=lab", "--no-wait"]
    assert cli.main(args) == 0
    sbatch = (tmp_path / "job.sbatch").read_text()
    for line in ("--array=0-2", "--partition=gpu", "--gpus-per-node=2", "--time=90", "--account=lab"):
        assert f"#SBATCH {line}" in sbatch, line
    sub = json.loads((run_dir / "submit.json").read_text())
    assert sub["submissions"][0]["shards"] == {"1": "4242_0", "2": "4242_1", "3": "4242_2"}
    from wkvbench.harness.cluster import shard_argv

    argv = shard_argv(sub, 2, 3, run_dir, resume=False)
    assert argv[argv.index("--shard") + 1] == "2/3" and argv[argv.index("--gpus") + 1] == "all"
    assert argv[argv.index("--out") + 1] == str(run_dir / "shards" / "002-of-003")


def test_merge_into_one_of_its_inputs_keeps_both_environments(pooled, tmp_path):
    import shutil

    a = tmp_path / "a"
    shutil.copytree(pooled[0], a)
    other = _as_other_gpu(pooled[0], tmp_path / "h200")
    merge_runs([a, other], a)
    names = sorted(p.name for p in (a / "envs").glob("*.json"))
    assert len(names) == 2 and any("h200" in n for n in names)
    assert len(rows_of(a)) == 22
