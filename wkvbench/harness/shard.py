"""Units of work for scale-out: a planned sweep cut into series, priced, and dealt into shards.

A *series* is every case of one (op, model, batch, dtype, device, variant) with all its
implementations, in growing T. It is the unit both ``--shard K/N`` and the worker pool
(:mod:`wkvbench.harness.pool`) hand out: kept whole, its cases still run small-to-large, so the
skip predictions of :mod:`wkvbench.harness.predict` (out of memory or too slow at a shorter T)
work inside a shard or a pool slot as they do in one sweep, and each case's inputs and float64
reference are built once.

:func:`cell_cost` prices a cell from its shape and the op record's ``time_exponent`` (the
scaling the skip predictor uses): the product of the shape's dimensions, with T raised to the
exponent. :func:`shard_of` deals series into N shards by longest-processing-time-first (the most
expensive series to the least loaded shard, ties broken by the series key), so the partition is
deterministic -- the same suite and N give the same shards on every machine -- and the N
shards' cells are exactly the unsharded plan's, none twice. With more shards than series some
shards are empty.
"""

from __future__ import annotations

import math
import re

from wkvbench import ops
from wkvbench.harness import rundir
from wkvbench.harness.suite import CASE_KEY, Case, SuiteError

Planned = list[tuple[Case, list[tuple[str, str | None]]]]

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (1-based K, 1 <= K <= N) as (K, N); anything else is a SuiteError naming --shard."""
    m = _SHARD.match(str(text))
    if not m:
        raise SuiteError(f"command line: --shard: expected K/N (e.g. 2/8), got {text!r}")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= k <= n:
        raise SuiteError(f"command line: --shard: K must be between 1 and N (1-based), got {k}/{n}")
    return k, n


def series_id(case: Case) -> tuple:
    """The series a case belongs to: its case key without T (so a new key column, e.g. the timing
    mode, splits series by itself)."""
    return tuple(getattr(case, k) for k in CASE_KEY if k != "tokens")


def cell_cost(case: Case) -> float:
    """Relative predicted cost of one cell: prod(shape) * T^(time_exponent - 1)."""
    shape = case.shape
    exp = ops.get_op(case.op).time_exponent
    size = math.prod(int(v) for v in shape.values() if isinstance(v, (int, float)) and v > 0)
    return float(size) * float(case.tokens) ** (exp - 1)


def series(planned: Planned) -> list[tuple[tuple, Planned]]:
    """The planned cases grouped by :func:`series_id`, each series in the plan's (growing) order."""
    out: dict[tuple, Planned] = {}
    for case, impls in planned:
        out.setdefault(series_id(case), []).append((case, impls))
    return list(out.items())


def series_cost(items: Planned) -> float:
    """Predicted cost of a series: its runnable cells' costs (skipped cells cost nothing)."""
    return sum(cell_cost(case) * sum(1 for _, why in impls if why is None) for case, impls in items)


def by_cost(planned: Planned) -> list[tuple[tuple, Planned, float]]:
    """Series with their costs, most expensive first (ties: by series key, so deterministic)."""
    priced = [(sid, items, series_cost(items)) for sid, items in series(planned)]
    return sorted(priced, key=lambda x: (-x[2], tuple(map(str, x[0]))))


def assign(planned: Planned, n: int) -> dict[tuple, int]:
    """Series id -> shard (0-based) for ``n`` shards, longest processing time first."""
    if n < 1:
        raise ValueError(f"n: expected a positive number of shards, got {n}")
    load = [0.0] * n
    out = {}
    for sid, _, cost in by_cost(planned):
        j = min(range(n), key=lambda i: (load[i], i))
        out[sid] = j
        load[j] += cost
    return out


def shard_of(planned: Planned, k: int, n: int) -> Planned:
    """The cases of shard ``k`` of ``n`` (1-based), in the plan's order."""
    where = assign(planned, n)
    return [(case, impls) for case, impls in planned if where[series_id(case)] == k - 1]


def cells(planned: Planned) -> list[tuple]:
    """Every cell key of a plan (``Case.key``)."""
    return [case.key(name) for case, impls in planned for name, _ in impls]


def write_plan(out, planned: Planned, shard: tuple[int, int] | None, workers: int = 1) -> None:
    """Record in the run directory which cells this run (or shard) is to produce (``plan.json``),
    so that ``wkvbench status`` can tell done from pending cells."""
    rundir.write_plan(out, cells(planned), shard, workers)
