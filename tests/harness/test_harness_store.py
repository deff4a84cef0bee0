"""results.csv / samples.jsonl: schema, flush per row, torn-line repair, replace by key."""

import csv
import json

import pytest

from wkvbench.harness.store import RunStore, StoreError, fmt, key_of
from wkvbench.schema import COLUMNS, KEY, SCHEMA_VERSION


def row(impl="a", tokens=64, status="ok", median=1.5, mode="fwd"):
    return {
        "schema_version": SCHEMA_VERSION,
        "op": "bi_wkv7",
        "impl": impl,
        "model": "A-RWKV-T",
        "batch": 1,
        "tokens": tokens,
        "dtype": "float32",
        "device": "cpu",
        "variant": "realistic",
        "mode": mode,
        "precision": "pure",
        "checkpoint": "none",
        "status": status,
        "median_ms": median,
        "note": "a, b\nc",
    }


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_fmt():
    assert fmt(None) == "" and fmt(float("nan")) == "" and fmt(True) == "true"
    assert fmt(1 / 3) == "0.3333333" and fmt(12) == "12" and fmt(float("inf")) == "inf"


def test_append_is_on_disk_immediately_and_reloads(tmp_path):
    st = RunStore(tmp_path)
    st.append_row(row("a"))
    rows = read_csv(st.results)  # another reader sees it without closing the store
    assert list(rows[0]) == list(COLUMNS)
    assert rows[0]["impl"] == "a" and rows[0]["median_ms"] == "1.5" and rows[0]["note"] == "a, b\nc"
    again = RunStore(tmp_path)
    assert again.has(("bi_wkv7", "a", "A-RWKV-T", 1, 64, "float32", "cpu", "realistic"))
    assert again.has(("bi_wkv7", "a", "A-RWKV-T", "1", "64", "float32", "cpu", "realistic"))  # as read from CSV
    assert key_of(rows[0]) == key_of(row("a")) == tuple(row("a")[k] for k in KEY)
    typed = again.get(key_of(row("a")))  # typed like the schema: int, float, None, text
    assert typed["batch"] == 1 and typed["median_ms"] == 1.5 and typed["p20_ms"] is None and typed["note"] == "a, b\nc"
    assert st.get(key_of(row("a"))) == typed  # the appending store holds the same typed row


def test_unknown_column_rejected(tmp_path):
    with pytest.raises(KeyError, match="not in the schema"):
        RunStore(tmp_path).append_row({**row(), "colour": "red"})


def test_torn_last_line_is_dropped(tmp_path):
    st = RunStore(tmp_path)
    st.append_row(row("a"))
    st.append_samples({"op": "bi_wkv7", "impl": "a", "samples_ms": [1.0]})
    with open(st.results, "a") as fh:  # a writer killed mid-row
        fh.write("1,2026-01-01,bi_wkv7,b,tor")
    with open(st.samples, "a") as fh:
        fh.write('{"op": "bi_w')
    again = RunStore(tmp_path)
    assert len(again.rows) == 1 and len(read_csv(again.results)) == 1
    assert again.read_samples() == [{"op": "bi_wkv7", "impl": "a", "samples_ms": [1.0]}]
    again.append_row(row("c"))
    assert [r["impl"] for r in read_csv(again.results)] == ["a", "c"]


def test_drop_replaces_cells_without_duplicates(tmp_path):
    st = RunStore(tmp_path)
    for impl in ("a", "b"):
        st.append_row(row(impl))
        st.append_samples({**{k: str(row(impl)[k]) for k in KEY}, "samples_ms": [1.0]})
    k = key_of({k: str(v) for k, v in row("a").items()})
    assert st.drop([k]) == 1
    st.append_row(row("a", median=2.0))
    rows = read_csv(st.results)
    assert sorted(r["impl"] for r in rows) == ["a", "b"]
    assert [r["median_ms"] for r in rows if r["impl"] == "a"] == ["2"]
    assert [r["impl"] for r in st.read_samples()] == ["b"]
    assert st.drop([("nope",) * len(KEY)]) == 0


def test_schema_mismatch_is_refused(tmp_path):
    (tmp_path / "results.csv").write_text("op,impl\nbi_wkv7,a\n")
    with pytest.raises(StoreError, match="columns differ"):
        RunStore(tmp_path)


def test_samples_jsonl_round_trip(tmp_path):
    st = RunStore(tmp_path)
    rec = {"impl": "a", "samples_ms": [0.5, 0.25], "gpu_before": None}
    st.append_samples(rec)
    assert json.loads(st.samples.read_text().strip()) == rec


def test_the_mode_column_round_trips_and_old_keys_read_as_fwd(tmp_path):
    st = RunStore(tmp_path)
    for mode in ("fwd", "bwd", "fwd_bwd"):
        st.append_row({**row("a", mode=mode), "grad_rel_err": None if mode == "fwd" else 3.1e-5, "grad_worst": "dw"})
    again = RunStore(tmp_path)
    assert len(again.rows) == 3  # one cell per mode, none replacing another
    base = ("bi_wkv7", "a", "A-RWKV-T", 1, 64, "float32", "cpu", "realistic")
    assert again.get((*base, "bwd"))["mode"] == "bwd" and again.get((*base, "bwd"))["grad_rel_err"] == 3.1e-5
    assert again.get((*base, "fwd_bwd"))["grad_worst"] == "dw"
    assert again.get(base) == again.get((*base, "fwd"))  # a key from before the column: inference
    assert key_of({k: v for k, v in row("a").items() if k != "mode"})[KEY.index("mode")] == "fwd"
