"""The speed-up policy on small hand-made tables: naive loops never a headline side, AST eager as run (float16).

Every expected number is written out from the table below, not computed by the report code.
"""

import math

import pandas as pd
import pytest

from wkvbench.report import analysis as an
from wkvbench.report.baselines import BASELINES, candidates, headline_subjects, naive_impl


def _row(op, impl, model, dtype, seconds, ms, status="ok", batch=1):
    family = {"A-RWKV-B": "a-rwkv", "AST-B": "ast", "AuM-B": "aum"}[model]
    tokens = int(seconds * (50 if family == "a-rwkv" else 120))
    return {
        "op": op, "impl": impl, "model": model, "family": family, "size": "B", "device": "cuda",
        "dtype": dtype, "batch": batch, "variant": "realistic", "mode": "fwd", "tokens": tokens, "seconds": seconds,
        "status": status, "ok": status == "ok", "note": "",
        "median_ms": ms if status == "ok" else math.nan,
        "p20_ms": ms * 0.9 if status == "ok" else math.nan, "p80_ms": ms * 1.1 if status == "ok" else math.nan,
    }  # fmt: skip


def table() -> pd.DataFrame:
    rows = []
    for s, wkv_ms in ((10.24, 0.5), (327.68, 8.0)):
        rows += [
            # the naive loop is the *fastest* Bi-WKV7 here on purpose: it must still not be the headline's best
            _row("bi_wkv7", "torch_loop", "A-RWKV-B", "bfloat16", s, wkv_ms / 10),
            _row("bi_wkv7", "triton_chunked", "A-RWKV-B", "bfloat16", s, wkv_ms),
            _row("bi_wkv7", "cupy_cuda", "A-RWKV-B", "bfloat16", s, wkv_ms * 2),
            # the scan: the naive loop is fastest again and must not be the denominator
            _row("bi_selective_scan", "torch_loop", "AuM-B", "bfloat16", s, wkv_ms / 100),
            _row("bi_selective_scan", "triton", "AuM-B", "bfloat16", s, wkv_ms * 3),
            _row("attention", "sdpa_flash", "AST-B", "bfloat16", s, wkv_ms * 4),
            _row("attention", "sdpa_math", "AST-B", "bfloat16", s, wkv_ms * 40),
        ]
    rows.append(_row("attention", "torch_eager", "AST-B", "float16", 10.24, 20.0))
    rows.append(_row("attention", "torch_eager", "AST-B", "float16", 327.68, 0, status="oom"))
    return pd.DataFrame(rows)


def test_naive_impls_come_from_the_op_records():
    assert naive_impl("bi_wkv7") == "torch_loop"
    assert naive_impl("bi_selective_scan") == "torch_loop"
    assert naive_impl("attention") == "torch_eager"
    assert naive_impl("no_such_op") == ""


def test_scan_baseline_is_the_fastest_non_naive_scan():
    scan = next(bl for bl in BASELINES if bl.name == "scan")
    rows = an.baseline_rows(table(), scan)
    assert set(rows["impl"]) == {"triton"}


def test_ast_eager_is_taken_in_float16_for_every_subject_dtype():
    df = table()
    df = pd.concat([df, df[df["op"] == "bi_wkv7"].assign(dtype="float32")], ignore_index=True)
    eager = next(bl for bl in BASELINES if bl.name == "attention_eager")
    assert eager.dtype == "float16"
    rows = candidates(df, eager)
    assert sorted(rows["dtype"].unique()) == ["bfloat16", "float32"]
    assert set(rows["impl"]) == {"torch_eager"}
    assert len(rows) == 4  # two cells x two subject dtypes


def test_headline_uses_honest_baselines_and_reports_the_oom():
    t, where = an.headline(table())
    assert where["dtype"] == "bfloat16"
    t = t.set_index("seconds")
    short, long = t.loc[10.24], t.loc[327.68]
    # best Bi-WKV7 is triton_chunked, never the (faster) naive loop
    assert short["best_impl"] == "triton_chunked" and short["best_ms"] == pytest.approx(0.5)
    assert long["best_impl"] == "triton_chunked" and long["best_ms"] == pytest.approx(8.0)
    # scan: triton (3x slower than triton_chunked), not the naive loop
    assert short["scan_impl"] == "triton" and short["scan_speedup"] == pytest.approx(3.0)
    # SDPA: the fastest ok sdpa backend
    assert short["attention_sdpa_impl"] == "sdpa_flash" and short["attention_sdpa_speedup"] == pytest.approx(4.0)
    # AST eager in float16 against the bfloat16 Bi-WKV7 headline: 20 / 0.5 = 40x, then OOM at 327.68 s
    assert short["attention_eager_impl"] == "torch_eager" and short["attention_eager_speedup"] == pytest.approx(40.0)
    assert long["attention_eager_status"] == "oom"
    assert math.isnan(long["attention_eager_speedup"])


def test_naive_loops_keep_their_own_rows_in_the_speedup_table():
    sp = an.speedups(table(), "audio")
    assert "torch_loop" in set(sp["impl"])  # the naive Bi-WKV7 is still drawn as its own line
    assert "torch_loop" not in set(sp.loc[sp["baseline"] == "scan", "base_impl"])
    assert set(headline_subjects(table()[table()["op"] == "bi_wkv7"])["impl"]) == {"triton_chunked", "cupy_cuda"}
