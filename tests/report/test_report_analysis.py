"""The numbers behind the report, checked against the synthetic tables computed by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from wkvbench.report import analysis as an
from wkvbench.report.load import load_run, tidy
from wkvbench.report.style import fmt_bytes, fmt_ms, fmt_rate, fmt_speedup, impl_label, op_label, style_for


@pytest.fixture(scope="module")
def df(synthetic_run):
    return load_run(synthetic_run).results


def _rows(df, **where):
    sel = df
    for k, v in where.items():
        sel = sel[sel[k] == v]
    return sel


def test_best_per_case_takes_the_fastest_ok_and_never_a_wrong_row(df):
    wkv = _rows(df, op="bi_wkv7", model="A-RWKV-B", dtype="bfloat16")
    best = an.best_per_case(wkv)
    assert len(best) == wkv["tokens"].nunique()
    for _, b in best.iterrows():
        cands = wkv[(wkv["tokens"] == b["tokens"]) & (wkv["status"] == "ok")]
        assert b["status"] == "ok" and b["median_ms"] == cands["median_ms"].min()
    # a case whose only rows are not ok reports the most severe status
    only_bad = wkv[wkv["status"] != "ok"]
    summary = an.best_per_case(only_bad)
    at_328 = summary[summary["seconds"] == 328.0]
    assert list(at_328["status"]) == ["timeout"]


def test_speedups_only_from_ok_cells_and_equal_audio_pairs_ast_tokens(df):
    sp = an.speedups(df, "audio")
    assert sp.loc[~(sp["ok"] & sp["base_ok"]), "speedup"].isna().all()
    assert sp.loc[sp["ok"] & sp["base_ok"], "speedup"].notna().all()
    eager = sp[(sp["baseline"] == "attention_eager") & (sp["model"] == "A-RWKV-B") & (sp["seconds"] == 10.24)]
    assert set(eager["base_tokens"]) == {1214} and set(eager["tokens"]) == {512}
    # the speed-up is the ratio of the two medians read straight from the table
    r = eager[(eager["impl"] == "triton_chunked") & (eager["dtype"] == "bfloat16")].iloc[0]
    a = _rows(df, op="attention", impl="torch_eager", dtype="float16", seconds=10.24)["median_ms"].iloc[0]
    w = _rows(df, op="bi_wkv7", impl="triton_chunked", model="A-RWKV-B", dtype="bfloat16", seconds=10.24)
    assert r["speedup"] == pytest.approx(a / w["median_ms"].iloc[0], rel=1e-12)
    assert r["speedup_lo"] <= r["speedup"] <= r["speedup_hi"]
    # OOM baseline at 328 s: no speed-up, status carried
    oom = sp[(sp["baseline"] == "attention_eager") & (sp["seconds"] == 328.0)]
    assert set(oom["base_status"]) == {"oom"} and oom["speedup"].isna().all()
    # no AST-T: size T Bi-WKV7 is never compared with attention
    assert not ((sp["size"] == "T") & (sp["baseline"] != "scan")).any()


def test_equal_tokens_interpolates_between_ok_neighbours_only(df):
    sp = an.speedups(df, "tokens")
    eager = sp[(sp["baseline"] == "attention_eager") & (sp["dtype"] == "bfloat16") & (sp["impl"] == "torch_chunked")]
    # A-RWKV-B 3000 tokens lies between AST-B 1214 and 7190 (both ok): interpolated log-log
    r = eager[eager["tokens"] == 3000].iloc[0]
    att = _rows(df, op="attention", impl="torch_eager", dtype="float16").set_index("tokens")["median_ms"]
    t = math.log(3000 / 1214) / math.log(7190 / 1214)
    expect = math.exp((1 - t) * math.log(att[1214]) + t * math.log(att[7190]))
    assert bool(r["base_interp"]) and r["base_median_ms"] == pytest.approx(expect, rel=1e-12)
    # 16400 lies between 7190 (ok) and 39350 (OOM): nothing is made up
    assert (eager["tokens"] != 16400).all()
    # 128 is below every AST-B cell: never extrapolated
    assert (eager["tokens"] != 128).all()


def test_headline_equals_an_independent_reading_of_the_table(df):
    table, where = an.headline(df)
    assert where == {"device": "cuda", "dtype": "bfloat16", "variant": "realistic", "mode": "fwd", "batch": 1}
    r = table[table["seconds"] == 328.0].iloc[0]
    wkv = _rows(df, op="bi_wkv7", model="A-RWKV-B", dtype="bfloat16", seconds=328.0, status="ok")
    best = wkv.loc[wkv["median_ms"].idxmin()]
    assert (r["best_impl"], r["best_ms"]) == (best["impl"], best["median_ms"])
    sdpa = _rows(df, op="attention", dtype="bfloat16", seconds=328.0, status="ok")
    sdpa = sdpa[sdpa["impl"].str.startswith("sdpa_")]
    assert r["attention_sdpa_ms"] == sdpa["median_ms"].min()
    assert r["attention_sdpa_speedup"] == pytest.approx(sdpa["median_ms"].min() / best["median_ms"])
    assert r["attention_eager_status"] == "oom" and math.isnan(r["attention_eager_speedup"])
    scan = _rows(df, op="bi_selective_scan", model="AuM-B", dtype="bfloat16", seconds=328.0, status="ok")
    assert r["scan_ms"] == scan["median_ms"].min()
    assert an.headline_row(table)["seconds"] == 328.0


def test_slope_of_power_laws():
    x = np.array([512, 2048, 8192, 32768])
    assert an.loglog_slope(x, 3e-6 * x**2) == pytest.approx(2.0)
    assert an.loglog_slope(x, 0.01 + 2e-5 * x, tail=4) < 1.0
    assert math.isnan(an.loglog_slope([10], [1.0]))


def test_verification_counts_every_status(df):
    v = an.verification(df)
    assert v[["ok", "wrong", "failed", "oom", "timeout", "skipped"]].to_numpy().sum() == len(df)
    fla = v[(v["impl"] == "fla_chunk") & (v["dtype"] == "bfloat16")].iloc[0]
    assert fla["wrong"] == 1 and fla["max_rel_err_all"] > fla["tol"] >= fla["max_rel_err_ok"]
    assert len(an.not_ok(df)) == int((df["status"] != "ok").sum())


def test_at_durations_picks_nearest_within_factor():
    rows = pd.DataFrame(
        [{"op": "bi_wkv7", "impl": "x", "model": "A-RWKV-B", "batch": 1, "tokens": t, "status": "ok", "median_ms": 1.0,
          "seconds": s} for t, s in ((512, 10.24), (1200, 24.0), (16400, 328.0))]
    )  # fmt: skip
    near = an.at_durations(tidy(rows))
    assert dict(zip(near["target_s"], near["seconds"], strict=True)) == {10.0: 10.24, 328.0: 328.0}


def test_formats_and_styles():
    assert [fmt_ms(v) for v in (0.0123, 1.234, 12.34, 1234.5, float("nan"))] == ["0.0123", "1.23", "12.3", "1,234", "-"]
    assert [fmt_speedup(v) for v in (13.31, 2.414, 0.871)] == ["13.3x", "2.41x", "0.87x"]
    assert [fmt_rate(v) for v in (1.234e6, 45_600, 789, None)] == ["1.23M", "45.6k", "789", "-"]
    assert [fmt_bytes(v) for v in (1.5 * 2**30, 12 * 2**20, 3000, 512)] == ["1.5 GiB", "12 MiB", "2.93 KiB", "512 B"]
    # fixed styles, and a deterministic one for a plugin name
    assert style_for("attention", "torch_eager").linestyle == "--"
    assert style_for("bi_wkv7", "my_plugin") == style_for("bi_wkv7", "my_plugin")
    assert style_for("bi_wkv7", "triton_fused").colour != style_for("attention", "torch_eager").colour


def test_bi_wkv7_fixed_styles_are_distinct():
    """Every Bi-WKV7 implementation with a fixed style has its own colour and marker (triton_chunked_tc
    is not drawn in triton_chunked's colour)."""
    from wkvbench.report.style import _FIXED

    fixed = {impl: style for (op, impl), style in _FIXED.items() if op == "bi_wkv7"}
    assert "triton_chunked_tc" in fixed
    assert len({c for c, _ in fixed.values()}) == len(fixed) == len({m for _, m in fixed.values()})
    assert style_for("bi_wkv7", "triton_chunked_tc").colour != style_for("bi_wkv7", "triton_chunked").colour


def test_legend_labels_come_from_the_op_record_and_the_registration():
    from matplotlib.figure import Figure

    from wkvbench.opspec import OPS
    from wkvbench.registry import register_impl, unregister_impl
    from wkvbench.report.figures.layout import Legend

    assert op_label("bi_selective_scan") == OPS["bi_selective_scan"].label and op_label("other_op") == "other_op"
    assert impl_label("bi_selective_scan", "torch_chunked") == f"{OPS['bi_selective_scan'].label} torch_chunked"
    with pytest.raises(TypeError, match="label"):
        register_impl("bi_wkv7", name="bad_label", backend="torch", label=3)

    @register_impl("bi_wkv7", name="labelled_plugin", backend="torch", label="My fused kernel")
    def labelled(r, w, k, v, a, b, g=None):
        return v

    try:
        assert impl_label("bi_wkv7", "labelled_plugin") == "My fused kernel"
        legend = Legend()
        for op, impl in (("attention", "torch_eager"), ("bi_wkv7", "labelled_plugin"), ("bi_wkv7", "torch_loop")):
            legend.impl(op, impl)
        legend.not_ok()
        fig = Figure()
        legend.draw(fig)
        texts = [t.get_text() for t in fig.legends[0].get_texts()]
        assert texts == ["Bi-WKV7 torch_loop", "My fused kernel", "attention torch_eager", "not ok (status beside)"]
    finally:
        unregister_impl("bi_wkv7", "labelled_plugin")
    assert impl_label("bi_wkv7", "labelled_plugin") == "Bi-WKV7 labelled_plugin"


def test_network_rows_are_named_by_network_in_the_tables():
    """Two networks sharing a mixer are two rows of the verification table, each named by network."""
    rows = [
        {"op": "network", "impl": "torch_chunked", "model": m, "dtype": "float32", "status": s, "rel_err": 1e-7,
         "tol": 1e-6, "cv": 0.01, "batch": 1, "tokens": 16, "seconds": 0.32, "device": "cpu", "variant": "",
         "mode": "fwd", "note": ""}
        for m, s in (("A-RWKV-T", "ok"), ("AuM-T", "ok"), ("AuM-T", "failed"))
    ]  # fmt: skip
    df = pd.DataFrame(rows)
    v = an.verification(df)
    assert sorted(v["impl"]) == ["A-RWKV-T (torch_chunked)", "AuM-T (torch_chunked)"]
    assert v.set_index("impl").loc["AuM-T (torch_chunked)", "failed"] == 1
    assert list(an.not_ok(df)["impl"]) == ["AuM-T (torch_chunked)"]
