"""Step detection on synthetic histories: a known step is found at its commit, noise is not a step,
an environment change is a boundary."""

from __future__ import annotations

import numpy as np
import pytest

from wkvbench.history import steps as st

KEY = ("bi_wkv7", "torch_chunked", "A-RWKV-T", 1, 16, "float32", "cuda", "realistic", "fwd")


def line(pts):
    return {(KEY, "GPU"): pts}


@pytest.mark.parametrize("at,factor", [(30, 1.10), (12, 0.90), (49, 1.08), (1, 1.2)])
def test_step_found_at_its_commit(h, at, factor):
    meds = [1.0] * at + [factor] * (50 - at)
    found = st.find_steps(line(h.points(meds, seed=at)))
    assert len(found) == 1
    s = found[0]
    assert s.first_bad == h.sha(at) and s.last_good == h.sha(at - 1) and s.index == at
    assert s.kind == ("regression" if factor > 1 else "improvement")
    assert s.change == pytest.approx(factor - 1, abs=0.02)
    assert s.commit_range == f"{h.sha(at - 1)[:10]}..{h.sha(at)[:10]}"


def test_two_steps_by_binary_segmentation(h):
    meds = [1.0] * 15 + [1.2] * 20 + [1.0] * 15
    found = st.find_steps(line(h.points(meds, seed=3)))
    assert sorted(s.index for s in found) == [15, 35]
    assert {s.kind for s in found} == {"regression", "improvement"}


def test_step_below_min_effect_is_not_reported(h):
    meds = [1.0] * 25 + [1.03] * 25  # 3%: real, but under the 5% minimum effect
    assert st.find_steps(line(h.points(meds, seed=1, cv=0.005))) == []
    assert len(st.find_steps(line(h.points(meds, seed=1, cv=0.005)), min_effect=0.02)) == 1


def test_noise_false_positive_rate_of_the_test_itself(h):
    """200 seeded histories of 50 commits of pure noise, min_effect=0 (the rank test alone).

    The documented rate is at most alpha = 5% per history (Bonferroni over the splits makes it
    conservative). 19 or more of 200 would have probability < 0.1% at 5%.
    """
    hits = 0
    for seed in range(200):
        hits += bool(st.find_steps(line(h.points([1.0] * 50, seed=seed)), min_effect=0.0))
    assert hits <= 18, hits


def test_noise_with_run_to_run_drift_gives_no_step_at_default_effect(h):
    """Run-to-run offsets of 1% (sd) on top of 3% sample noise: the 5% minimum effect keeps steps out.

    Expected rate about 0.2% per history (a single end commit 3.3 sd away); 3 or more of 200 has
    probability about 1%.
    """
    hits = sum(bool(st.find_steps(line(h.points([1.0] * 50, run_sd=0.01, seed=s)))) for s in range(200))
    assert hits <= 2, hits


def test_bh_over_many_cells(h):
    lines = {}
    for j in range(30):
        key = (*KEY[:4], 16 * (j + 1), *KEY[5:])
        meds = [1.0] * 50 if j != 7 else [1.0] * 20 + [1.15] * 30
        lines[(key, "GPU")] = h.points(meds, seed=100 + j, run_sd=0.005)
    found = st.find_steps(lines)
    assert [(s.key[4], s.index) for s in found] == [(128, 20)]


def test_environment_change_is_a_boundary_not_a_step(h):
    digests = ["envA"] * 25 + ["envB"] * 25
    meds = [1.0] * 25 + [1.3] * 25  # a new driver: 30% slower, not a commit's doing
    pts = h.points(meds, seed=5, digests=digests)
    assert [p.segment for p in pts] == [0] * 25 + [1] * 25
    assert st.find_steps(line(pts)) == []
    # a step inside the new environment is still found, at its commit
    meds = [1.0] * 25 + [1.3] * 10 + [1.45] * 15
    found = st.find_steps(line(h.points(meds, seed=5, digests=digests)))
    assert [(s.index, s.segment, s.kind) for s in found] == [(35, 1, "regression")]


def test_best_split_uses_medians_when_no_samples():
    k, p = st.best_split([1.0] * 10 + [2.0] * 10, [[]] * 20)
    assert k == 10 and p < 0.01
    assert st.best_split([1.0], [[1.0]]) is None


def test_bad_parameters():
    with pytest.raises(ValueError, match="alpha"):
        st.find_steps({}, alpha=0)
    with pytest.raises(ValueError, match="min_effect"):
        st.best_split([1.0, 2.0], [[1.0], [2.0]], min_effect=-1)
    with pytest.raises(ValueError, match="min_points"):
        st.find_steps({}, min_points=0)


def test_ranks_average_ties():
    r, ties = st._ranks(np.array([3.0, 1.0, 3.0, 2.0]))
    assert r.tolist() == [3.5, 1.0, 3.5, 2.0] and ties == 6.0
