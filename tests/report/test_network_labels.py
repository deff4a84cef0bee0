"""Every place the report shows a whole-network row names it by network: "A-RWKV-B (triton_chunked)".

Synthetic rows (not measurements): A-RWKV linear in audio, AST quadratic, AuM linear and slower.
"""

import pandas as pd
import pytest

from wkvbench import presets
from wkvbench.report import analysis as an
from wkvbench.report import render
from wkvbench.report.figures import measurement
from wkvbench.report.figures import network as NF
from wkvbench.report.load import Env, parse_env, tidy
from wkvbench.schema import derive

SECS = (10.24, 81.92, 327.68)


def _row(model, impl, seconds, ms, status="ok", dtype="bfloat16"):
    m = presets.get_preset(model)
    row = {"op": "network", "impl": impl, "model": model, "batch": 1, "tokens": m.tokens(seconds), "seconds": seconds,
           "dtype": dtype, "device": "cuda", "variant": "realistic", "mode": "fwd", "status": status,
           "median_ms": ms if status == "ok" else None, "p20_ms": ms * 0.95, "p80_ms": ms * 1.05,
           "peak_mem_bytes": 2**30, "rel_err": 1e-3, "tol": 4e-3}  # fmt: skip
    return {**row, **derive(row)}


def _runs() -> pd.DataFrame:
    rows = [_row("A-RWKV-B", "triton_chunked", s, 2.0 * s) for s in SECS]
    rows += [_row("A-RWKV-B", "torch_chunked", s, 20.0 * s) for s in SECS]
    rows += [_row("AST-B", "sdpa_flash", s, 1.0 * s + 0.2 * s * s) for s in SECS]
    rows += [_row("AST-B", "torch_eager", s, 5.0 * s * s, dtype="float16") for s in SECS[:2]]
    rows.append(_row("AST-B", "torch_eager", 327.68, 1.0, status="oom", dtype="float16"))
    rows += [_row("AuM-B", "torch_chunked", s, 3.0 * s) for s in SECS]
    return tidy(pd.DataFrame(rows))


def test_the_speedup_figure_names_both_networks():
    df = _runs()
    plot = NF.fig_network_speedup(df, Env())
    t = plot.table
    vs_sdpa = t[(t["baseline"] == "attention_sdpa") & (t["seconds"] == 327.68) & (t["impl"] == "triton_chunked")]
    assert list(vs_sdpa[["network", "base_network"]].iloc[0]) == ["A-RWKV-B (triton_chunked)", "AST-B (sdpa_flash)"]
    assert float(vs_sdpa["speedup"].iloc[0]) == pytest.approx((327.68 + 0.2 * 327.68**2) / (2 * 327.68))
    vs_scan = t[(t["baseline"] == "scan") & (t["impl"] == "torch_chunked")]
    assert set(vs_scan["network"]) == {"A-RWKV-B (torch_chunked)"} and set(vs_scan["base_network"]) == {
        "AuM-B (torch_chunked)"
    }
    legend = [x.get_text() for x in plot.figure.legends[0].get_texts()]
    assert "A-RWKV-B (triton_chunked)" in legend and "A-RWKV-B (torch_chunked)" in legend
    assert "AST-B (torch_eager)" in legend  # the baseline's OOM cell, named by network
    assert not any(x.startswith("Bi-WKV7 ") or x.startswith("attention ") for x in legend)
    titles = [ax.get_title() for ax in plot.figure.axes if ax.get_title()]
    assert any(x.startswith("vs AST-B with attention (best SDPA)") for x in titles)
    assert any(x.startswith("vs AuM-B with Mamba scan (best)") for x in titles)


def test_the_params_figure_names_each_network_by_its_fastest_mixer():
    df = _runs()
    table = NF.param_table(df)
    at_328 = table[table["target_s"] == 328.0].set_index("model")
    assert at_328.loc["A-RWKV-B", "network"] == "A-RWKV-B (triton_chunked)"
    assert at_328.loc["AST-B", "network"] == "AST-B (sdpa_flash)"
    assert at_328.loc["AuM-B", "mixer_op"] == "bi_selective_scan" and "op" not in table
    plot = NF.fig_network_params(df, Env())
    notes = {x.get_text() for ax in plot.figure.axes for x in ax.texts}
    assert {"A-RWKV-B (triton_chunked)", "AST-B (sdpa_flash)", "AuM-B (torch_chunked)"} <= notes
    legend = [x.get_text() for x in plot.figure.legends[0].get_texts()]
    assert legend[:3] == ["A-RWKV networks (fastest mixer each)", "AST networks (fastest mixer each)",
                          "AuM networks (fastest mixer each)"]  # fmt: skip


def test_the_network_headline_names_the_networks_and_their_mixers():
    df = _runs()
    table, where = an.network_headline(df)
    assert where["dtype"] == "bfloat16" and list(table["model"].unique()) == ["A-RWKV-B"]
    r = table[table["seconds"] == 327.68].iloc[0]
    assert (r["best_impl"], r["attention_sdpa_model"], r["attention_sdpa_impl"]) == (
        "triton_chunked",
        "AST-B",
        "sdpa_flash",
    )
    sentence = render.network_sentence(table, where)
    ratio = (327.68 + 0.2 * 327.68**2) / (2 * 327.68)
    assert sentence.startswith("Whole networks at 327.68 s of audio (batch 1, bfloat16, cuda, inference (fwd)): ")
    assert f"A-RWKV-B (triton_chunked) {render.fmt_ms(2 * 327.68)} ms" in sentence
    assert f"AST-B (sdpa_flash) {render.fmt_ms(327.68 + 0.2 * 327.68**2)} ms: {render.fmt_speedup(ratio)} faster" in (
        sentence
    )
    assert "AST-B (torch_eager) in float16 OOM" in sentence  # eager AST as run, OOM shown as such
    assert "AuM-B (torch_chunked)" in sentence and "Bi-WKV7" not in sentence
    shown = render.network_headline_display(table)
    last = shown.iloc[-1]
    assert (last["A-RWKV network"], last["vs SDPA"], last["vs AST eager"], last["AST eager ms"]) == (
        "A-RWKV-B (triton_chunked)",
        "AST-B (sdpa_flash)",
        "AST-B (torch_eager)",
        "OOM",
    )


def _report(df: pd.DataFrame) -> render.Report:
    table, where = an.headline(df)
    net, net_where = an.network_headline(df)
    return render.Report(title="t", run_dir="r", env=parse_env({"cpu": "some CPU"}), headline=table, where=where,
                         verification=an.verification(df), not_ok=an.not_ok(df), network_headline=net,
                         network_where=net_where)  # fmt: skip


def test_the_report_leads_with_the_networks_when_it_has_no_kernel_cells():
    df = _runs()
    rep = _report(df)
    assert render.sentences(rep).startswith("Whole networks at 327.68 s")
    md = render.render_md(rep)
    assert "## Whole networks" in md and "| A-RWKV-B (triton_chunked) |" in md and "AST-B (sdpa_flash)" in md
    html = render.render_html(rep)
    assert "<h2>Whole networks</h2>" in html and "A-RWKV-B (triton_chunked)" in html
    kernel = {**_row("A-RWKV-B", "triton_chunked", 327.68, 50.0), "op": "bi_wkv7"}
    both = _report(tidy(pd.DataFrame([*df.to_dict("records"), kernel])))
    text = render.sentences(both)
    assert text.startswith("At 327.68 s of audio") and " Whole networks at 327.68 s" in text
    bare = _report(df[df["op"] != "network"])  # no network rows: no section, the old sentence
    assert "Whole networks" not in render.render_md(bare) and render.sentences(bare).startswith("No Bi-WKV7 cells")


def test_measurement_tables_name_networks():
    df = _runs().assign(rel_ci=0.5)  # every cell noisier than the 1% target: all flagged
    flagged = measurement.flagged_cells(an.named(df), Env())
    assert "A-RWKV-B (triton_chunked)" in set(flagged["impl"]) and "triton_chunked" not in set(flagged["impl"])
    rec = {"op": "network", "impl": "sdpa_flash", "model": "AST-B", "tokens": 39314, "mode": "fwd",
           "kernels": [{"name": "flash_fwd", "us_per_call": 10.0}]}  # fmt: skip
    assert set(measurement.kernel_table([rec])["cell"]) == {"AST-B (sdpa_flash) T=39314 fwd"}


def test_run_comparisons_name_networks():
    from wkvbench.report.compare import _impl_name

    net = pd.Series({"op": "network", "impl": "torch_chunked", "model": "AuM-T"})
    assert _impl_name(net) == "AuM-T (torch_chunked)"
    assert _impl_name(pd.Series({"op": "bi_wkv7", "impl": "torch_chunked", "model": "A-RWKV-T"})) == "torch_chunked"


def test_the_network_headline_takes_autocast_cells_and_never_pools_precisions():
    df = _runs()
    auto = df[df["impl"] != "torch_eager"].assign(precision="autocast")
    auto = auto.assign(median_ms=auto["median_ms"] / 2, p20_ms=auto["p20_ms"] / 2, p80_ms=auto["p80_ms"] / 2)
    both = tidy(pd.concat([df, auto], ignore_index=True))
    table, where = an.network_headline(both)
    assert where["precision"] == "autocast" and "autocast" in an.slice_label(where)
    assert render.network_sentence(table, where).startswith("Whole networks at 327.68 s of audio (batch 1, bfloat16 "
                                                             "autocast, cuda, inference (fwd)): ")  # fmt: skip
    r = table[table["seconds"] == 327.68].iloc[0]
    assert r["best_ms"] == pytest.approx(327.68)  # the autocast cell (half the pure one), not a pooled minimum
    assert r["attention_eager_status"] == "oom"  # AST eager as run (float16, pure) still stands beside it
    pure, where = an.network_headline(tidy(df))
    assert "precision" not in where and pure["best_ms"].iloc[-1] == pytest.approx(2 * 327.68)
