"""The results schema: one cell key, typed rows, and the derived columns computed by hand."""

import pytest

from wkvbench import schema

FIELDS = {"op": "bi_wkv7", "impl": "x", "model": "A-RWKV-T", "batch": 2, "tokens": 64, "dtype": "float32",
          "device": "cpu", "variant": "realistic"}  # fmt: skip


def test_key_is_typed_and_the_same_from_fields_csv_and_rows():
    k = schema.key(**FIELDS)
    assert k == ("bi_wkv7", "x", "A-RWKV-T", 2, 64, "float32", "cpu", "realistic", "fwd", "pure", "none")
    as_csv = {c: str(v) for c, v in FIELDS.items()}
    assert schema.key_of(as_csv) == schema.key_of({**FIELDS, "median_ms": 1.0}) == k
    old = {c: v for c, v in as_csv.items() if c != "variant"}  # a row written before the column existed
    assert schema.key_of(old) == k and schema.key_of({**as_csv, "variant": ""}) == k
    assert schema.key_of({**as_csv, "mode": ""}) == k  # rows from before the mode column: inference
    assert schema.key(**FIELDS, mode="bwd") != k and schema.key(**FIELDS, mode="bwd")[schema.KEY.index("mode")] == "bwd"


def test_key_names_missing_and_unknown_fields():
    with pytest.raises(ValueError, match=r"missing \['op'\]"):
        schema.key(**{c: v for c, v in FIELDS.items() if c != "op"})
    with pytest.raises(ValueError, match=r"unexpected \['colour'\]"):
        schema.key(**FIELDS, colour="red")


def test_columns_start_with_the_key_and_types_partition_them():
    assert schema.COLUMNS[2 : 2 + len(schema.KEY)] == schema.KEY
    assert len(set(schema.COLUMNS)) == len(schema.COLUMNS)
    typed = set(schema.TEXT_COLUMNS) | set(schema.NUMERIC_COLUMNS) | set(schema.INTEGER_COLUMNS)
    assert typed == set(schema.COLUMNS) and set(schema.NUMERIC_COLUMNS) <= set(schema.COLUMNS)
    assert "speedup" not in schema.COLUMNS and "baseline_impl" not in schema.COLUMNS


def test_parse_row():
    row = schema.parse_row({"batch": "8", "tokens": "512", "median_ms": "1.25", "p20_ms": "", "note": "a,b"})
    assert row == {"batch": 8, "tokens": 512, "median_ms": 1.25, "p20_ms": None, "note": "a,b"}
    with pytest.raises(ValueError, match="median_ms"):
        schema.parse_row({"median_ms": "fast"})


def test_derive_by_hand():
    row = {"status": "ok", "median_ms": 2.0, "batch": 2, "tokens": 500, "seconds": 10.0,
           "bytes_moved": 4e9, "flops": 6e12}  # fmt: skip
    d = schema.derive(row, copy_bandwidth_gbs=1000.0, joules_per_call=0.5)
    assert set(d) == set(schema.DERIVED_COLUMNS)
    assert d["tokens_per_s"] == pytest.approx(1000 / 0.002)
    assert d["audio_s_per_s"] == pytest.approx(20 / 0.002)
    assert d["gbs"] == pytest.approx(2000.0) and d["pct_copy_bw"] == pytest.approx(200.0)
    assert d["tflops"] == pytest.approx(3000.0)
    assert d["energy_j_per_1k_tokens"] == pytest.approx(0.5)
    assert schema.derive(row)["pct_copy_bw"] is None and schema.derive(row)["energy_j_per_1k_tokens"] is None
    for bad in ({"status": "wrong"}, {"median_ms": None}, {"median_ms": 0.0}):
        assert set(schema.derive({**row, **bad}).values()) == {None}
