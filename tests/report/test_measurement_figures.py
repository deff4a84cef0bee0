"""Roofline, kernel-breakdown and measurement-quality figures on a hand-made results table."""

import json

import numpy as np
import pandas as pd
import pytest

from wkvbench.report.figures import measurement as M
from wkvbench.report.load import Env


def table():
    base = {"model": "A-RWKV-T", "batch": 1, "tokens": 64, "dtype": "float32", "mode": "fwd", "op": "bi_wkv7"}
    base["shape"] = '{"B": 1, "T": 1000, "H": 5, "N": 64}'
    rows = [
        # counted: 2e9 FLOPs, 1e9 bytes in 1 ms -> intensity 2, 2 TFLOP/s; roof 2 * 3000 GB/s = 6 TF
        {
            **base,
            "impl": "torch_loop",
            "status": "ok",
            "median_ms": 1.0,
            "flops": 1e9,
            "bytes_moved": 5e8,
            "counted_flops": 2e9,
            "counted_bytes": 1e9,
            "rel_ci": 0.002,
            "throttled_frac": 0.0,
        },
        # formula FLOPs, counted bytes: 1e12 / 1e9 -> intensity 1000, roof capped at the peak 67 TF
        {
            **base,
            "impl": "triton_recurrent",
            "status": "ok",
            "median_ms": 100.0,
            "flops": 1e12,
            "bytes_moved": 1e8,
            "counted_flops": np.nan,
            "counted_bytes": 1e9,
            "rel_ci": 0.05,
            "throttled_frac": 0.25,
        },
        {
            **base,
            "impl": "t_wrong",
            "status": "wrong",
            "median_ms": np.nan,
            "flops": 1e9,
            "bytes_moved": 5e8,
            "counted_flops": np.nan,
            "counted_bytes": np.nan,
            "rel_ci": np.nan,
            "throttled_frac": np.nan,
        },
    ]
    return pd.DataFrame(rows)


ENV = Env(gpu="NVIDIA H100 80GB HBM3", copy_bandwidth_gbs=3000.0, raw={"suite": {"run": {"max_noise": 0.01}}})


def test_peak_by_name():
    assert M.peak_tflops("NVIDIA H100 80GB HBM3") == 67.0
    assert M.peak_tflops("NVIDIA H100 PCIe") == 51.0
    assert M.peak_tflops("AMD EPYC") is None and M.peak_tflops(None) is None


def test_roofline_table_uses_counted_work_and_the_roofs():
    t = M.roofline_table(table(), ENV).set_index("impl")
    assert list(t.index) == ["torch_loop", "triton_recurrent"]
    loop, tri = t.loc["torch_loop"], t.loc["triton_recurrent"]
    assert (loop["flops_from"], loop["bytes_from"]) == ("counted", "counted")
    assert loop["intensity"] == pytest.approx(2.0) and loop["achieved_tflops"] == pytest.approx(2.0)
    assert loop["roof_tflops"] == pytest.approx(6.0) and loop["pct_roofline"] == pytest.approx(100 / 3)
    assert (tri["flops_from"], tri["bytes_from"]) == ("formula", "counted")
    assert tri["intensity"] == pytest.approx(1000.0) and tri["roof_tflops"] == pytest.approx(67.0)
    assert loop["min_bytes_per_token_head"] == pytest.approx(5e8 / 5000)
    assert tri["bytes_per_token_head"] == pytest.approx(1e9 / 5000)
    assert tri["achieved_tflops"] == pytest.approx(10.0) and tri["pct_roofline"] == pytest.approx(100 * 10 / 67)


def test_flagged_cells_and_target():
    assert M.max_noise_of(Env(raw={"suite": {"run": {"max_noise": 0.05}}})) == 0.05
    assert M.max_noise_of(Env()) == 0.01 and M.max_noise_of(Env(raw={"suite": "smoke"})) == 0.01
    f = M.flagged_cells(table(), ENV)
    assert f[["impl", "flag"]].values.tolist() == [["triton_recurrent", "noisy, throttled"]]


def test_kernel_table_keeps_the_largest_and_sums_the_rest(tmp_path):
    ks = [{"name": f"k{i}", "count_per_call": 1.0, "us_per_call": float(i)} for i in range(1, 9)]
    rec = {"op": "bi_wkv7", "impl": "audiorwkv_catflip", "tokens": 64, "mode": "fwd", "kernels": ks}
    (tmp_path / M.KERNELS_FILE).write_text(json.dumps(rec) + "\n")
    t = M.kernel_table(M.read_kernels(tmp_path), top=3)
    assert t["kernel"].tolist() == ["k8", "k7", "k6", "other"]
    assert t["us_per_call"].tolist() == [8.0, 7.0, 6.0, 15.0]
    assert M.read_kernels(tmp_path / "none") == []


def test_figures_render(tmp_path):
    rec = {"op": "bi_wkv7", "impl": "x", "tokens": 8, "kernels": [{"name": "aten::mm", "us_per_call": 3.0}]}
    (tmp_path / M.KERNELS_FILE).write_text(json.dumps(rec) + "\n")
    plots = M.measurement_plots(tmp_path, table(), ENV, tmp_path, formats=("png",))
    assert [p.name for p in plots] == ["fig14_roofline", "fig15_kernel_breakdown", "fig16_quality"]
    for p in plots:
        assert (tmp_path / f"{p.name}.png").stat().st_size > 1000
        assert (tmp_path / f"{p.name}.csv").exists()
    empty = M.measurement_plots(tmp_path / "none", table().iloc[2:], Env(), tmp_path, formats=("png",))
    assert all(p.table.empty for p in empty)


def test_roofline_table_is_empty_without_flops():
    df = table()
    df["flops"], df["counted_flops"] = np.nan, np.nan
    t = M.roofline_table(df, ENV)
    assert t.empty and "pct_roofline" in t.columns
