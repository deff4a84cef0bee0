"""``wkvbench compare``: synthetic faster, slower, noisy and broken runs get the designed verdicts and statuses."""

import math

import numpy as np
import pytest

from wkvbench import cli
from wkvbench.report.compare import bootstrap_speedup, classify, compare_runs, geomean_interval

# a small sweep keeps the bootstrap cheap: two Bi-WKV7 impls, one attention, two durations
IMPLS_KW = {"dtypes": ("bfloat16",), "seconds": (10.24, 60.0), "n_samples": 30}


def _make(make_run, path, **kw):
    from wkvbench.report.load import load_run

    make_run(path, **{**IMPLS_KW, **kw})
    return load_run(path)


@pytest.fixture(scope="module")
def base(tmp_path_factory, make_run):
    return _make(make_run, tmp_path_factory.mktemp("a"), seed=1, noise=0.01)


def _verdicts(cmp, impl):
    return set(cmp.cells.loc[cmp.cells["impl"] == impl, "verdict"])


def _statuses(cmp, impl):
    return set(cmp.cells.loc[cmp.cells["impl"] == impl, "statuses"])


def test_faster_slower_same_and_geomean(base, tmp_path, make_run):
    # B: triton 25% faster, torch_loop 25% slower, everything else unchanged (fresh noise)
    b = _make(make_run, tmp_path, seed=2, noise=0.01, scale={"triton_chunked": 1 / 1.25, "torch_loop": 1.25})
    cmp = compare_runs(base, b)
    assert _verdicts(cmp, "triton_chunked") == {"FASTER"}
    assert _verdicts(cmp, "torch_loop") == {"SLOWER"}
    assert _verdicts(cmp, "torch_chunked") == {"SAME"}
    assert _verdicts(cmp, "sdpa_flash") == {"SAME"}
    fast = cmp.cells[cmp.cells["verdict"] == "FASTER"]
    assert ((fast["ci_lo"] > 1.05) & (fast["speedup"].between(1.15, 1.35))).all()
    # the designed non-ok cells are the same in both runs: statuses in the run's words, no verdict
    assert _statuses(cmp, "cupy_cuda") == {"skipped -> skipped"} and _verdicts(cmp, "cupy_cuda") == {""}
    assert _statuses(cmp, "triton_chunked") == {""}
    assert cmp.regressed and cmp.regressions == {"SLOWER": 4}
    assert cmp.verdict_counts["FASTER"] == 4 and "NOT OK" not in cmp.cells["verdict"].tolist()
    # geometric mean over the cells ok in both equals exp(mean(log(speed-up)))
    ok = cmp.cells["speedup"].dropna()
    assert cmp.n_both_ok == len(ok)
    assert cmp.geomean == pytest.approx(math.exp(np.log(ok).mean()))
    assert cmp.geomean_lo <= cmp.geomean <= cmp.geomean_hi


def test_noisy_run_is_ambiguous_not_a_regression(base, tmp_path, make_run):
    # same speed, but B's samples are very noisy and few: the interval straddles the threshold
    b = _make(make_run, tmp_path, seed=3, noise=0.35, n_samples=6)
    cmp = compare_runs(base, b)
    ok = cmp.cells[cmp.cells["speedup"].notna()]
    share = (ok["verdict"] == "AMBIGUOUS").mean()
    assert share > 0.8, ok[["impl", "speedup", "ci_lo", "ci_hi", "verdict"]]
    assert not (ok["verdict"] == "FASTER").any()


def test_status_changes_and_env_warnings(base, tmp_path, make_run, capsys):
    b = tmp_path / "b"
    _make(make_run, b, seed=1, noise=0.01, driver="999.99", override={("torch_chunked", 60.0): ("failed", "boom")})
    cmp = compare_runs(base, b)
    broken = cmp.cells[cmp.cells["regression"]]
    assert set(broken["impl"]) == {"torch_chunked"} and set(broken["tokens"]) == {3000, 3001}
    assert set(broken["statuses"]) == {"ok -> failed"} and set(broken["verdict"]) == {""}
    assert cmp.regressions == {"ok -> failed": 4}
    assert cmp.env_diffs == {"driver": ("000.00", "999.99")}
    # the CLI exits 1 on a regression and warns about the environment on stderr
    assert cli.main(["compare", str(base.path), str(b), "-o", str(tmp_path / "cmp")]) == 1
    io = capsys.readouterr()
    assert "environments differ in driver" in io.err and "REGRESSION: 4 ok -> failed" in io.out
    assert (tmp_path / "cmp" / "compare.csv").exists()
    assert "ok -> failed" in (tmp_path / "cmp" / "compare.md").read_text()


def test_identical_runs_exit_0(base, capsys):
    assert cli.main(["compare", str(base.path), str(base.path)]) == 0
    out = capsys.readouterr().out
    assert "geometric-mean speed-up" in out and "1.00x" in out and "REGRESSION" not in out


def test_unreadable_run_exits_2(base, tmp_path, capsys):
    assert cli.main(["compare", str(base.path), str(tmp_path / "missing")]) == 2
    assert "run_dir" in capsys.readouterr().err


def test_bootstrap_interval_and_classify():
    rng = np.random.default_rng(0)
    a = 10 * np.exp(rng.normal(0, 0.01, 200))
    b = 8 * np.exp(rng.normal(0, 0.01, 200))
    point, lo, hi = bootstrap_speedup(a, b, rng=np.random.default_rng(1))
    assert lo < point < hi and point == pytest.approx(1.25, rel=0.01) and hi - lo < 0.02
    assert classify(1.06, 1.2, 0.05) == "FASTER"
    assert classify(0.8, 0.94, 0.05) == "SLOWER"
    assert classify(0.97, 1.03, 0.05) == "SAME"
    assert classify(0.9, 1.1, 0.05) == "AMBIGUOUS"
    assert classify(math.nan, 1.0, 0.05) == "AMBIGUOUS"
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_speedup(a, b, confidence=1.5)
    g, glo, ghi = geomean_interval(np.array([2.0, 0.5]), 500, 0.95, 0)
    assert g == pytest.approx(1.0) and glo <= 1.0 <= ghi


def test_bad_threshold_is_rejected(base):
    with pytest.raises(ValueError, match="threshold"):
        compare_runs(base, base, threshold=-0.1)
