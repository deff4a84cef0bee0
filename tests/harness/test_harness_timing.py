"""Timing statistics, sample planning and the CPU timer, against independent computations."""

import math
import statistics
import time

import numpy as np
import pytest

from wkvbench.harness import timing


def test_summarize_matches_numpy_and_statistics():
    rng = np.random.default_rng(0)
    xs = list(rng.lognormal(0.0, 0.3, size=101))
    st = timing.summarize(xs)
    assert st.n_samples == 101
    assert st.median_ms == pytest.approx(np.percentile(xs, 50))
    assert st.p20_ms == pytest.approx(np.percentile(xs, 20))
    assert st.p80_ms == pytest.approx(np.percentile(xs, 80))
    assert st.iqr_ms == pytest.approx(np.percentile(xs, 75) - np.percentile(xs, 25))
    assert st.min_ms == min(xs)
    assert st.mean_ms == pytest.approx(statistics.fmean(xs))
    assert st.cv == pytest.approx(statistics.stdev(xs) / statistics.fmean(xs))


def test_summarize_hand_example_and_errors():
    st = timing.summarize([4.0, 1.0, 3.0, 2.0, 5.0])
    # sorted 1..5: median 3, p20 at position 0.8 -> 1.8, p80 at 3.2 -> 4.2, IQR 4 - 2
    assert (st.median_ms, st.p20_ms, st.p80_ms, st.iqr_ms, st.min_ms) == pytest.approx((3.0, 1.8, 4.2, 2.0, 1.0))
    one = timing.summarize([2.5])
    assert one.median_ms == one.p20_ms == one.p80_ms == 2.5 and one.cv == 0.0
    with pytest.raises(ValueError, match="samples_ms"):
        timing.summarize([])
    with pytest.raises(ValueError, match="samples_ms"):
        timing.summarize([1.0, math.nan])


@pytest.mark.parametrize(
    ("est_ms", "budget_s", "lo", "hi", "rounds", "total"),
    [
        (1.0, 0.1, 5, 1000, 4, 100),  # budget / estimate
        (1000.0, 0.1, 5, 1000, 3, 5),  # slow call: at least min_samples
        (1e-3, 1.0, 5, 50, 5, 50),  # fast call: at most max_samples
        (0.0, 1.0, 5, 20, 3, 20),  # no estimate: max_samples
    ],
)
def test_plan_samples_total_and_spread(est_ms, budget_s, lo, hi, rounds, total):
    plan = timing.plan_samples(est_ms, budget_s, lo, hi, rounds)
    assert len(plan) == rounds and sum(plan) == total
    assert max(plan) - min(plan) <= 1


def test_plan_samples_rejects_bad_settings():
    with pytest.raises(ValueError):
        timing.plan_samples(1.0, 1.0, 10, 5, 3)


def test_cpu_timer_measures_a_known_sleep():
    timer = timing.Timer("cpu")
    assert timer.flush_bytes == 0  # no L2 flush on the CPU
    _, first = timer.first_call(lambda: time.sleep(0.01))
    assert first >= 10.0
    xs = timer.samples(lambda: time.sleep(0.002), 4)
    assert len(xs) == 4 and all(x >= 2.0 for x in xs)
    est = timer.warmup(lambda: time.sleep(0.002), seconds=0.01)
    assert est >= 2.0


def test_copy_bandwidth_on_cpu_is_positive():
    bw = timing.copy_bandwidth_gbs("cpu", nbytes=4 * 2**20, reps=3)
    assert 0.05 < bw < 10_000
