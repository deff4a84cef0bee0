"""``wkvbench merge`` carries each input's ``kernels.jsonl`` (the ``--profile`` records) into the merged run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from wkvbench import schema
from wkvbench.harness import rundir
from wkvbench.harness.merge import merge_runs


def _run(path: Path, cells: list[tuple[str, int, str]], profiled: bool = True) -> Path:
    """A run directory (synthetic test data) with one ok row per (impl, tokens, timestamp) cell and,
    if ``profiled``, one kernels record per cell naming the input it came from."""
    path.mkdir(parents=True)
    rows, recs = [], []
    for impl, tokens, stamp in cells:
        key = {"op": "bi_wkv7", "impl": impl, "model": "A-RWKV-T", "batch": 1, "tokens": tokens, "dtype": "float32"}
        key.update(device="cuda", variant="realistic", mode="fwd", precision="pure")
        row = dict.fromkeys(schema.COLUMNS, "")
        row.update(key, schema_version=schema.SCHEMA_VERSION, timestamp=stamp, status="ok", gpu="SYNTH-GPU")
        rows.append(row)
        recs.append({**key, "calls": 1, "kernels": [{"name": f"{path.name}-{impl}-{tokens}", "us_per_call": 1.0}]})
    with open(path / schema.RESULTS_FILE, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(schema.COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    (path / schema.SAMPLES_FILE).write_text("")
    (path / schema.ENV_FILE).write_text(json.dumps({"hostname": path.name, "gpu": {"name": "SYNTH-GPU"}}))
    for rec in recs if profiled else []:
        rundir.append_kernels(path, rec)
    return path


def test_merge_carries_the_kernels_of_the_rows_kept(tmp_path):
    a = _run(tmp_path / "a", [("t_one", 16, "2026-01-01T00:00:00"), ("t_two", 16, "2026-01-01T00:00:00")])
    b = _run(tmp_path / "b", [("t_one", 16, "2026-01-02T00:00:00"), ("t_one", 32, "2026-01-02T00:00:00")])
    c = _run(tmp_path / "c", [("t_two", 32, "2026-01-01T00:00:00")], profiled=False)
    out = tmp_path / "merged"
    res = merge_runs([a, b, c], out, log=lambda msg: None)
    assert res["rows"] == 4 and res["replaced"] == 1
    names = sorted(k["name"] for rec in rundir.read_kernels(out) for k in rec["kernels"])
    # (t_one, 16) is b's newer row: b's record comes along, a's is dropped; c has none
    assert names == ["a-t_two-16", "b-t_one-16", "b-t_one-32"]
    assert all(rec["gpu"] == "SYNTH-GPU" and rec["calls"] == 1 for rec in rundir.read_kernels(out))
    plain = tmp_path / "plain"
    merge_runs([c], plain, log=lambda msg: None)
    assert not (plain / rundir.KERNELS_FILE).exists()  # no input profiled: no file
