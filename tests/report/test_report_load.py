"""Reading a run directory: types, derived columns, tolerance of missing env keys, bad input."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from wkvbench import schema
from wkvbench.report.load import load_run, parse_env


def test_loads_types_and_derived_columns(synthetic_run):
    run = load_run(synthetic_run)
    df = run.results
    assert df["tokens"].dtype.kind == "i" and df["batch"].dtype.kind == "i"
    assert df["median_ms"].dtype.kind == "f"
    assert set(df["status"]) == set(schema.STATUSES)
    # size from the preset name; ok only for status ok with a timing
    assert set(df["size"]) == {"T", "B"}
    assert not df.loc[df["status"] != "ok", "ok"].any()
    assert df.loc[df["status"] == "ok", "ok"].all()
    # AST at 10.24 s is 1214 tokens, A-RWKV 512 (docs/spec.md section 6)
    sel = df[(df["seconds"] == 10.24) & (df["dtype"] == "bfloat16")]
    assert set(sel.loc[sel["model"] == "AST-B", "tokens"]) == {1214}
    assert set(sel.loc[sel["model"] == "A-RWKV-B", "tokens"]) == {512}


def test_samples_are_keyed_like_rows(synthetic_run):
    run = load_run(synthetic_run)
    ok = run.results[run.results["ok"]]
    row = ok.iloc[0]
    samples = run.samples_for(schema.key_of(row))
    assert samples is not None and len(samples) == 25
    assert np.median(samples) == pytest.approx(row["median_ms"], rel=1e-12)


def test_env_fields_and_footer(synthetic_run):
    env = load_run(synthetic_run).env
    assert env.gpu == "SYNTHETIC-GPU (test data)"
    assert env.driver == "000.00" and env.copy_bandwidth_gbs == 3000.0
    foot = env.footer()
    for part in ("SYNTHETIC-GPU", "driver 000.00", "commit 0123456789", "2025-01-02"):
        assert part in foot


def test_env_tolerates_missing_keys_and_cpu_runs():
    env = parse_env({})
    assert env.gpu is None and "unknown" in env.footer()
    cpu = parse_env({"gpu": None, "cpu": {"model": "AMD EPYC 9654"}, "git": {"commit": "abc", "dirty": True}})
    assert cpu.device_label == "CPU: AMD EPYC 9654"
    assert "driver" not in cpu.footer() and "(dirty)" in cpu.footer()
    with pytest.raises(TypeError, match="env"):
        parse_env(["not", "a", "dict"])


def test_missing_results_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="run_dir"):
        load_run(tmp_path)


def _write(tmp_path, df):
    df.to_csv(tmp_path / schema.RESULTS_FILE, index=False)
    return tmp_path


def _minimal(**over):
    row = {"op": "bi_wkv7", "impl": "torch_loop", "model": "A-RWKV-T", "batch": 1, "tokens": 512, "status": "ok",
           "median_ms": 1.0, "dtype": "float32", "device": "cpu"}  # fmt: skip
    row.update(over)
    return row


def test_bad_status_and_bad_numbers_raise(tmp_path):
    _write(tmp_path, pd.DataFrame([_minimal(status="great")]))
    with pytest.raises(ValueError, match="status"):
        load_run(tmp_path)
    _write(tmp_path, pd.DataFrame([_minimal(median_ms="fast")]))
    with pytest.raises(ValueError, match="median_ms"):
        load_run(tmp_path)
    _write(tmp_path, pd.DataFrame([_minimal(tokens="")]))
    with pytest.raises(ValueError, match="tokens"):
        load_run(tmp_path)


def test_minimal_table_is_completed_and_repeated_keys_keep_the_last(tmp_path):
    _write(tmp_path, pd.DataFrame([_minimal(median_ms=2.0), _minimal(median_ms=1.0)]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = load_run(tmp_path)
    assert any("kept the last" in str(w.message) for w in caught)
    df = run.results
    assert len(df) == 1 and df["median_ms"].iloc[0] == 1.0
    assert df["variant"].iloc[0] == "realistic" and df["family"].iloc[0] == "a-rwkv"
    assert df["seconds"].iloc[0] == pytest.approx(10.24)  # 512 A-RWKV tokens
    assert df["tokens_per_s"].iloc[0] == pytest.approx(512 / 1e-3)
    assert run.samples == {} and run.env.gpu is None


def test_samples_file_errors_name_the_line(tmp_path):
    _write(tmp_path, pd.DataFrame([_minimal()]))
    (tmp_path / schema.SAMPLES_FILE).write_text(json.dumps({"op": "bi_wkv7"}) + "\n")
    with pytest.raises(ValueError, match="line 1"):
        load_run(tmp_path)
