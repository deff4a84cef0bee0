"""Step detection on history lines: where a cell's time changed, and at which commit.

Per environment segment of a line (:mod:`wkvbench.history.series`), over its ok points:

1. **split**: for every split ``k`` (points ``[:k]`` before, ``[k:]`` after) the effect is
   ``median(after medians) / median(before medians)`` (per-commit medians: one noisy commit moves
   it little); splits whose effect is within ``[1/(1+min_effect), 1+min_effect]`` are not steps.
   Of the others, the split with the largest standardised Mann-Whitney U between the pooled raw
   samples of the two sides (average ranks, tie-corrected normal approximation) wins;
2. **test**: its two-sided p-value times the number of splits tried (Bonferroni over the scan);
3. **many cells**: Benjamini-Hochberg at level ``alpha`` over the first split of every
   (line, segment) tested; a line that passes is split again on each side (binary
   segmentation) with the cut-off BH accepted at, down to ``min_points`` points a side.

A step's first bad commit is the first point after the split; its commit range is
``last_good..first_bad`` (commits in between were not measured). Slower is a regression, faster
an improvement. Defaults: ``min_effect=0.05``, ``alpha=0.05``; ``docs/notes/history.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_EFFECT = 0.05
ALPHA = 0.05


@dataclass
class Step:
    """A detected change in one line: between ``last_good`` and ``first_bad``."""

    key: tuple
    gpu: str
    segment: int
    index: int  # position of first_bad in the line's point list
    last_good: str
    first_bad: str
    before_ms: float
    after_ms: float
    p: float

    @property
    def change(self) -> float:
        """Relative change of the median time (after / before - 1; positive: slower)."""
        return self.after_ms / self.before_ms - 1

    @property
    def kind(self) -> str:
        return "regression" if self.after_ms > self.before_ms else "improvement"

    @property
    def commit_range(self) -> str:
        return f"{self.last_good[:10]}..{self.first_bad[:10]}"


def _ranks(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Average ranks (1-based) of ``x`` and the tie term sum(t^3 - t)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(x.size)
    _, start, counts = np.unique(xs, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return ranks, float(np.sum(counts.astype(float) ** 3 - counts))


def _norm_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def best_split(medians, samples, min_effect: float = MIN_EFFECT) -> tuple[int, float] | None:
    """(k, p) of the best split of points with per-point ``medians`` and raw ``samples``, or None.

    ``samples[i]`` may be empty: the point then counts as one sample, its median. ``p`` is
    Bonferroni-corrected over the splits tried.
    """
    med = np.asarray(medians, dtype=float)
    m = med.size
    if m < 2:
        return None
    if min_effect < 0:
        raise ValueError(f"min_effect: must be >= 0, got {min_effect}")
    per = [np.asarray(s, dtype=float) if len(s) else med[i : i + 1] for i, s in enumerate(samples)]
    sizes = np.array([p.size for p in per])
    pooled = np.concatenate(per)
    n = pooled.size
    ranks, ties = _ranks(pooled)
    cum_r = np.concatenate([[0.0], np.cumsum(np.add.reduceat(ranks, np.r_[0, np.cumsum(sizes)[:-1]]))])
    cum_n = np.concatenate([[0], np.cumsum(sizes)])
    limit = math.log1p(min_effect)
    best = None
    for k in range(1, m):
        effect = math.log(np.median(med[k:]) / np.median(med[:k]))
        if abs(effect) < limit:
            continue
        n1, n2 = cum_n[k], n - cum_n[k]
        u = cum_r[k] - n1 * (n1 + 1) / 2
        var = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1)))
        if var <= 0:
            continue
        z = abs(u - n1 * n2 / 2) / math.sqrt(var)
        if best is None or z > best[1]:
            best = (k, z)
    if best is None:
        return None
    k, z = best
    return k, min(1.0, 2 * _norm_sf(z) * (m - 1))


def _bh_cutoff(pvalues: list[float], alpha: float) -> float:
    """The Benjamini-Hochberg cut-off: the largest p_(i) <= alpha * i / M (-1 when none passes)."""
    ps = sorted(pvalues)
    cut = -1.0
    for i, p in enumerate(ps, 1):
        if p <= alpha * i / len(ps):
            cut = p
    return cut


def _segments(points) -> list[list[int]]:
    """Indices of the ok points of each environment segment."""
    segs: dict[int, list[int]] = {}
    for i, p in enumerate(points):
        if p.ok:
            segs.setdefault(p.segment, []).append(i)
    return list(segs.values())


def _steps_in(line_id, points, idx, cutoff, min_effect, min_points, out) -> None:
    if len(idx) < 2:
        return
    med = [points[i].median_ms for i in idx]
    res = best_split(med, [points[i].samples for i in idx], min_effect)
    if res is None or res[1] > cutoff:
        return
    k, p = res
    before, after = idx[:k], idx[k:]
    key, gpu = line_id
    out.append(
        Step(
            key=key,
            gpu=gpu,
            segment=points[idx[0]].segment,
            index=after[0],
            last_good=points[before[-1]].commit,
            first_bad=points[after[0]].commit,
            before_ms=float(np.median([points[i].median_ms for i in before])),
            after_ms=float(np.median([points[i].median_ms for i in after])),
            p=p,
        )
    )
    for part in (before, after):
        if len(part) >= 2 * min_points:
            _steps_in(line_id, points, part, cutoff, min_effect, min_points, out)


def find_steps(lines: dict, alpha: float = ALPHA, min_effect: float = MIN_EFFECT, min_points: int = 1) -> list[Step]:
    """Steps in every line (``{(key, gpu): [Point, ...]}``), BH-corrected over lines and segments."""
    if not (0 < alpha < 1):
        raise ValueError(f"alpha: must lie in (0, 1), got {alpha}")
    if not (isinstance(min_points, int) and min_points >= 1):
        raise ValueError(f"min_points: must be an integer >= 1, got {min_points!r}")
    tests = []  # (line id, points, segment indices, p)
    for line_id, points in lines.items():
        for idx in _segments(points):
            if len(idx) < 2:
                continue
            res = best_split([points[i].median_ms for i in idx], [points[i].samples for i in idx], min_effect)
            tests.append((line_id, points, idx, 1.0 if res is None else res[1]))
    if not tests:
        return []
    cutoff = _bh_cutoff([t[3] for t in tests], alpha)
    out: list[Step] = []
    for line_id, points, idx, p in tests:
        if p <= cutoff:
            _steps_in(line_id, points, idx, cutoff, min_effect, min_points, out)
    out.sort(key=lambda s: (tuple(map(str, s.key)), s.gpu, s.index))
    return out
