"""The long-format table and the generic metric plotter, against the results table read directly."""

import math

import numpy as np
import pandas as pd
import pytest

from wkvbench import schema
from wkvbench.report import analysis as an
from wkvbench.report import figures
from wkvbench.report.figures.metric import MetricFigure, Panels
from wkvbench.report.load import load_run, parse_env, tidy
from wkvbench.report.metrics import METRICS, long_table, wide_table


@pytest.fixture(scope="module")
def run(synthetic_run):
    return load_run(synthetic_run)


def test_long_table_has_every_cell_once_per_metric_with_the_recorded_values(run):
    df, env = run.results, run.env
    long = long_table(df, env)
    assert len(long) == len(df) * len(METRICS)
    assert (long.groupby("metric")["cell"].nunique() == len(df)).all()
    lat = long[long["metric"] == "latency"].set_index("cell").sort_index()
    np.testing.assert_array_equal(lat["value"].to_numpy(), df["median_ms"].to_numpy())
    np.testing.assert_array_equal(lat["p20"].to_numpy(), df["p20_ms"].to_numpy())
    assert (lat["unit"] == "ms").all() and lat["bar"].isna().all()
    # timings are valid only for ok cells; an error is valid for wrong cells too
    assert (lat["valid"] == (df["status"] == "ok").to_numpy()).all()
    err = long[long["metric"] == "rel_err"].set_index("cell").sort_index()
    assert (err["valid"] == df["status"].isin(["ok", "wrong"]).to_numpy()).all()
    np.testing.assert_array_equal(err["bar"].to_numpy(), df["tol"].to_numpy())
    # a derived metric: GB/s over the copy bandwidth in env.json (3000 GB/s), ok cells only
    frac = long[long["metric"] == "bandwidth_fraction"].set_index("cell").sort_index()["value"]
    expect = np.where(df["ok"], df["gbs"] / 3000.0, np.nan)
    np.testing.assert_allclose(frac.to_numpy(), expect, rtol=1e-12)


def test_wide_table_gives_back_the_results_columns(run):
    df = run.results
    wide = wide_table(long_table(df, run.env), ["latency", "rel_err", "peak_memory"])
    cols = ["op", "impl", "model", "tokens", "status", "median_ms", "p20_ms", "p80_ms", "rel_err", "peak_mem_bytes"]
    pd.testing.assert_frame_equal(wide[cols], df[cols].reset_index(drop=True), check_dtype=False)
    assert list(wide.columns[-1:]) == ["tol"]  # bars after the values


def test_unknown_metrics_are_rejected(run):
    with pytest.raises(ValueError, match="metrics"):
        long_table(run.results, run.env, metrics=["latency", "speed"])
    with pytest.raises(ValueError, match="unknown metric"):
        MetricFigure("x", "x", "x", panels=(Panels("speed", "speed"),))
    with pytest.raises(TypeError, match="df"):
        long_table([1, 2])


def _cells():
    rows = []
    for impl, status in (("torch_loop", {}), ("torch_chunked", {1024: "wrong", 2048: "oom"})):
        for t in (256, 512, 1024, 2048):
            rows.append({"op": "bi_wkv7", "impl": impl, "model": "A-RWKV-B", "batch": 1, "tokens": t,
                         "status": status.get(t, "ok"), "median_ms": t / 50, "p20_ms": t / 55, "p80_ms": t / 45,
                         "dtype": "float32", "device": "cpu", "first_call_ms": t / 5,
                         "rel_err": 1e-7 * (1e5 if status.get(t) == "wrong" else 1), "tol": 2e-5})  # fmt: skip
    return tidy(pd.DataFrame(rows))


def _line_data(plot):
    """{colour: (x, y)} of the lines that carry markers (one per implementation)."""
    out = {}
    for ax in plot.figure.axes:
        for line in ax.get_lines():
            if line.get_marker() not in (None, "None", "") and len(line.get_xdata()) > 1:
                out[line.get_color()] = (list(line.get_xdata()), list(line.get_ydata()))
    return out


def test_a_new_metric_figure_is_a_spec_and_draws_only_valid_values():
    df = _cells()
    spec = MetricFigure(
        "fig_first_call_vs_tokens",
        "First call vs tokens",
        "caption",
        panels=(Panels("first_call", "first call (s)", scale=1e3),),
    )
    plot = spec(df, parse_env({"cpu": "test CPU"}))
    assert list(plot.table.columns[-1:]) == ["first_call_ms"] and len(plot.table) == len(df)
    by_len = {len(x): (x, y) for x, y in _line_data(plot).values()}
    # torch_loop: every cell ok; torch_chunked: the wrong (1024) and OOM (2048) cells are not drawn
    assert by_len[4][0] == [256, 512, 1024, 2048] and by_len[2][0] == [256, 512]
    assert by_len[4][1] == pytest.approx([t / 5 / 1e3 for t in (256, 512, 1024, 2048)], rel=1e-12)
    assert by_len[2][1] == pytest.approx([256 / 5 / 1e3, 512 / 5 / 1e3], rel=1e-12)
    texts = {t.get_text() for ax in plot.figure.axes for t in ax.texts}
    assert {"wrong", "OOM"} <= texts  # the two not-ok cells sit in the band with their status


def test_accuracy_draws_the_worst_error_per_token_count_and_wrong_cells():
    df = _cells()
    twin = df.assign(model="A-RWKV-B2", rel_err=df["rel_err"] * 3)  # a second model, 3x the error
    plot = figures.fig_accuracy(pd.concat([df, twin], ignore_index=True), parse_env({}))
    ys = {len(x): y for x, y in _line_data(plot).values()}
    assert ys[4] == pytest.approx([3e-7] * 4)  # worst over the two models
    assert ys[3] == pytest.approx([3e-7, 3e-7, 3e-2])  # the wrong cell drawn, at its error
    assert math.isclose(plot.table["tol"].iloc[0], 2e-5) and len(plot.table) == 2 * len(df)


def test_training_memory_draws_only_bi_wkv7_training_cells_at_their_saved_bytes():
    df = _cells()
    train = df.assign(mode="fwd_bwd", saved_bytes=df["tokens"] * 2**20 / 256)  # 1 MiB per 256 tokens
    scan = train.assign(op="bi_selective_scan", saved_bytes=train["saved_bytes"] * 7)  # not drawn: another op
    plot = figures.fig_training_memory(pd.concat([df, train, scan], ignore_index=True), parse_env({}))
    assert set(plot.table["mode"]) == {"fwd_bwd"} and set(plot.table["op"]) == {"bi_wkv7"}
    assert "saved_bytes" in plot.table.columns and len(plot.table) == len(train)
    ys = {len(x): y for x, y in _line_data(plot).values()}
    assert ys[4] == pytest.approx([1, 2, 4, 8])  # MiB, torch_loop: every cell ok
    assert ys[2] == pytest.approx([1, 2])  # torch_chunked's wrong and OOM cells are not drawn


def test_recorded_rates_are_read_and_only_empty_ones_come_from_schema_derive():
    base = {"op": "bi_wkv7", "impl": "torch_chunked", "model": "A-RWKV-T", "batch": 2, "tokens": 1000,
            "status": "ok", "median_ms": 2.0, "seconds": 20.0, "bytes_moved": 4e9, "flops": 6e12,
            "dtype": "float32", "device": "cuda"}  # fmt: skip
    df = tidy(pd.DataFrame([{**base, "tokens_per_s": 123.0, "pct_copy_bw": 10.0}, {**base, "tokens": 2000}]))
    assert df.loc[0, "tokens_per_s"] == 123.0  # as recorded, not recomputed
    fresh = schema.derive(schema.parse_row({k: str(v) for k, v in {**base, "tokens": 2000}.items()}))
    for col in ("tokens_per_s", "audio_s_per_s", "gbs", "tflops"):
        assert df.loc[1, col] == pytest.approx(fresh[col]), col
    assert df.loc[1, "gbs"] == pytest.approx(2000.0) and df.loc[1, "tflops"] == pytest.approx(3000.0)
    frac = an.bandwidth_fraction(df, 1000.0)  # the row's own pct_copy_bw wins over env.json's probe
    assert frac[0] == pytest.approx(0.10) and frac[1] == pytest.approx(2.0)
    assert math.isnan(an.bandwidth_fraction(df.assign(ok=False), 1000.0)[1])
