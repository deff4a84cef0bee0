"""``wkvbench run`` on the CPU fills the measurement columns, stops on noise and writes kernels.jsonl."""

import csv
import json

import pytest

from wkvbench import cli
from wkvbench.harness.measure import KERNELS_FILE


def test_cpu_run_fills_rel_ci_counted_work_and_kernels(tmp_path):
    out = tmp_path / "run"
    args = ["run", "--op", "bi_wkv7", "--impl", "torch_loop", "--model", "A-RWKV-T", "--tokens", "4"]
    args += ["--device", "cpu", "--budget-s", "0.05", "--warmup-s", "0", "--rounds", "3", "--min-samples", "6"]
    # max_noise 10: any median is "known" after the first round that reaches min_samples
    args += ["--max-noise", "10", "--profile", "1", "--energy-s", "0", "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0
    (row,) = list(csv.DictReader(open(out / "results.csv", newline="")))
    assert row["status"] == "ok"
    assert float(row["rel_ci"]) >= 0
    assert row["graph_ms"] == "" and row["graph_note"] == "" and row["throttled_frac"] == ""  # a CPU
    assert float(row["counted_flops"]) == pytest.approx(float(row["flops"]), rel=0.1)
    assert float(row["counted_bytes"]) > float(row["bytes_moved"])
    (rec,) = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    # stopped after the round in which it first had min_samples, not after all three rounds
    sizes = rec["round_sizes"]
    assert len(sizes) < 3 and sum(sizes) >= 6 and sum(sizes[:-1]) < 6
    (k,) = [json.loads(x) for x in (out / KERNELS_FILE).read_text().splitlines()]
    assert k["impl"] == "torch_loop" and k["calls"] == 3
    assert "aten::bmm" in {x["name"] for x in k["kernels"]}
