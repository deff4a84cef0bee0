"""The history store: reading runs (plain, merged, sharded), idempotent add, schema migration."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from wkvbench import schema
from wkvbench.history import store as hs
from wkvbench.history.ingest import read_run
from wkvbench.history.store import Store


def test_read_run_fields(make_run, h):
    run = make_run("r", "c0ffee" * 6 + "abcd", 3, {("torch_chunked", 16): 2.0, ("torch_loop", 16): (None, "failed")})
    (rec,) = read_run(run)
    assert rec.commit.startswith("c0ffee") and rec.gpu.startswith("SYNTHETIC-GPU")
    assert rec.env["driver"] == "555.55" and rec.env["torch"] == "2.11.0" and rec.env["triton"] == "3.6.0"
    assert len(rec.digest) == 12 and rec.report.endswith("r/report/report.html")
    by_impl = {c["key"][1]: c for c in rec.cells}
    assert by_impl["torch_chunked"]["key"] == schema.key_of(h.cell(impl="torch_chunked"))
    assert len(by_impl["torch_chunked"]["samples"]) == 20 and by_impl["torch_loop"]["status"] == "failed"


def test_environment_digest_follows_driver_and_versions(make_run):
    a = read_run(make_run("a", "aa" * 20, 1, {("x", 16): 1.0}))[0]
    b = read_run(make_run("b", "aa" * 20, 2, {("x", 16): 1.0}, driver="560.00"))[0]
    c = read_run(make_run("c", "aa" * 20, 3, {("x", 16): 1.0}, torch_version="2.12.0"))[0]
    d = read_run(make_run("d", "bb" * 20, 4, {("x", 16): 1.0}))[0]
    assert len({a.digest, b.digest, c.digest}) == 3 and a.digest == d.digest


def test_run_without_commit_needs_override(make_run):
    run = make_run("r", None, 1, {("x", 16): 1.0})
    with pytest.raises(ValueError, match="--commit"):
        read_run(run)
    assert read_run(run, commit="deadbeef")[0].commit == "deadbeef"
    with pytest.raises(ValueError, match="RUN"):
        read_run(run / "nope")


def test_merged_and_sharded_runs(make_run, tmp_path):
    from wkvbench.harness.merge import merge_runs

    a = make_run("h100", "aa" * 20, 1, {("x", 16): 1.0}, gpu="SYNTH-H100")
    b = make_run("h200", "aa" * 20, 2, {("x", 16): 0.8}, gpu="SYNTH-H200", driver="570.00")
    merge_runs([a, b], tmp_path / "merged", log=lambda *_: None)
    recs = read_run(tmp_path / "merged")
    assert sorted(r.gpu for r in recs) == ["SYNTH-H100", "SYNTH-H200"]
    assert {r.gpu: r.env["driver"] for r in recs} == {"SYNTH-H100": "555.55", "SYNTH-H200": "570.00"}
    sub = tmp_path / "submitted" / "shards"
    make_run("submitted/shards/1-of-2", "cc" * 20, 3, {("x", 16): 1.0})
    make_run("submitted/shards/2-of-2", "cc" * 20, 4, {("x", 32): 2.0})
    recs = read_run(sub.parent)
    assert [len(r.cells) for r in recs] == [1, 1] and {r.commit for r in recs} == {"cc" * 20}


def test_add_is_idempotent(make_run, tmp_path):
    run = make_run("r", "aa" * 20, 1, {("x", 16): 1.0, ("y", 16): 2.0})
    db = tmp_path / "h.sqlite"
    with Store(db) as s:
        assert s.add(read_run(run)[0]) == (True, 2)
        before = s.conn.execute("SELECT * FROM cells ORDER BY cell").fetchall()
        assert s.add(read_run(run)[0]) == (False, 0)
        assert s.counts() == (1, 2)
        assert s.conn.execute("SELECT * FROM cells ORDER BY cell").fetchall() == before
    with Store(db) as s:  # reopened: still one run
        assert s.counts() == (1, 2) and s.version == hs.VERSION


def test_frame_and_interval(make_run, tmp_path):
    with Store(tmp_path / "h.sqlite") as s:
        s.add(read_run(make_run("r", "aa" * 20, 1, {("x", 16): 1.0}))[0])
        df = s.frame()
    (row,) = df.to_dict("records")
    assert row["key"] == schema.key_of(row) and row["impl"] == "x" and row["samples"].size == 20
    assert row["ci_lo"] < np.median(row["samples"]) < row["ci_hi"]


def test_median_interval():
    assert hs.median_interval([1, 2, 3, 4, 5]) == (None, None)  # 5 samples cannot reach 95%
    lo, hi = hs.median_interval(np.arange(1, 101))
    assert (lo, hi) == (40.0, 61.0)  # the tabled 95% order statistics for n=100 (coverage 96.5%)


#: The version-1 layout, frozen here as a store of that version wrote it.
V1_SQL = """
CREATE TABLE runs (id INTEGER PRIMARY KEY, commit_sha TEXT NOT NULL, dirty INTEGER NOT NULL, date TEXT NOT NULL,
    gpu TEXT NOT NULL, digest TEXT NOT NULL, env TEXT NOT NULL, source TEXT NOT NULL, added TEXT NOT NULL,
    UNIQUE (commit_sha, gpu, date, digest));
CREATE TABLE cells (run_id INTEGER NOT NULL REFERENCES runs(id), cell TEXT NOT NULL, status TEXT NOT NULL, note TEXT,
    median_ms REAL, p20_ms REAL, p80_ms REAL, min_ms REAL, n_samples INTEGER, samples TEXT, PRIMARY KEY (run_id, cell));
PRAGMA user_version = 1;
"""


def test_v1_store_is_migrated(tmp_path):
    db = tmp_path / "old.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript(V1_SQL)
    conn.execute("INSERT INTO runs VALUES (1, 'abc123', 0, '2026-01-01T00:00:00+00:00', 'GPU', 'd1', '{}', '/r', 'x')")
    # a cell stored before the mode key column existed: read back with its default
    old_key = {"op": "bi_wkv7", "impl": "i", "model": "A-RWKV-T", "batch": 1, "tokens": 16, "dtype": "float32",
               "device": "cuda", "variant": "realistic"}  # fmt: skip
    samples = list(np.linspace(1.0, 2.0, 30))
    conn.execute(
        "INSERT INTO cells VALUES (1, ?, 'ok', '', 1.5, 1.2, 1.8, 1.0, 30, ?)",
        (json.dumps(old_key), json.dumps(samples)),
    )
    conn.commit()
    conn.close()
    with Store(db) as s:
        assert s.version == hs.VERSION == 2
        df = s.frame()
        lo, hi = s.conn.execute("SELECT ci_lo, ci_hi FROM cells").fetchone()
    assert (lo, hi) == hs.median_interval(samples) and lo < 1.5 < hi
    (row,) = df.to_dict("records")
    assert row["mode"] == "fwd" and row["key"] == schema.key_of({**old_key, "mode": "fwd"})
    assert row["report"] is None and row["commit_sha"] == "abc123"


def test_newer_store_is_refused(tmp_path):
    db = tmp_path / "new.sqlite"
    sqlite3.connect(db).execute(f"PRAGMA user_version = {hs.VERSION + 1}").connection.close()
    with pytest.raises(ValueError, match="newer"):
        Store(db)
    with pytest.raises(ValueError, match="does not exist"):
        Store(tmp_path / "missing.sqlite", create=False)
    with pytest.raises(TypeError, match="db"):
        Store(3)
