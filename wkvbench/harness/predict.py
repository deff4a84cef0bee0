"""Skip prediction: which cells are not worth running, from what smaller cells of the sweep showed.

Cases come in growing sizes (:mod:`wkvbench.harness.plan`), so before a cell runs the
:class:`SkipPredictor` knows what the same implementation did at smaller sizes:

* out of memory, or timed out, at a size every dimension of which is <= this one's (:func:`dominates`);
  a time-out in the first call (compile, autotuning: :func:`first_call_timeout`) is kept apart and
  predicts nothing, since a slow compile says nothing about how long timed calls take;
* the float64 reference (built once per case) exceeded ``max_cell_s`` at such a size;
* predicted too slow: the longest shorter case's median, scaled to this T by the op record's
  ``time_exponent`` (linear for the scans, quadratic for attention; :func:`predict_ms`), times
  ``min_samples + 2`` calls exceeds ``max_cell_s``.

Everything is learnt per timing mode (a training cell needs more time and memory than inference).
It learns from each written row (:meth:`SkipPredictor.learn`) and, on ``--resume``, from the rows
already in the run directory (:meth:`SkipPredictor.learn_rows`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from wkvbench import ops
from wkvbench.harness.suite import Case, RunSettings, case_id_of


def dominates(shape: dict, smaller: dict) -> bool:
    """Every dimension of ``shape`` is at least that of ``smaller`` (same keys)."""
    return shape.keys() == smaller.keys() and all(shape[k] >= smaller[k] for k in shape)


def predict_ms(op: str, tokens: int, measured: list[tuple[int, float]]) -> tuple[float, int, float] | None:
    """Predicted ms per call at ``tokens`` from the longest shorter measured case, or None.

    ``measured`` holds (tokens, median_ms) of the same implementation, model, batch and dtype.
    Returns (predicted ms, T it was scaled from, its median).
    """
    shorter = [(t, m) for t, m in measured if t < tokens and m > 0]
    if not shorter:
        return None
    t0, m0 = max(shorter)
    return m0 * (tokens / t0) ** ops.get_op(op).time_exponent, t0, m0


#: How the runner's note of a cell that timed out in its first call begins (harness/runner.py ``_check``).
FIRST_CALL_NOTE = "first call"


def first_call_timeout(status: str, note: str | None) -> bool:
    """Whether a cell timed out in its first call (compile, autotune, check), not in timed calls."""
    return status == "timeout" and (note or "").startswith(FIRST_CALL_NOTE)


def shape_str(shape: dict) -> str:
    return "[" + ", ".join(f"{k}={v}" for k, v in shape.items()) + "]"


class SkipPredictor:
    """What the sweep has learnt so far, and the skip reason it gives a cell (or None)."""

    def __init__(self, run: RunSettings):
        self.run = run
        self.history: dict[tuple, list[tuple[int, float]]] = defaultdict(list)  # ok medians by T
        self.oom: dict[tuple, list[dict]] = defaultdict(list)  # shapes that ran out of memory
        self.slow: dict[tuple, list[dict]] = defaultdict(list)  # shapes that timed out
        self.ref_slow: dict[tuple, list[dict]] = defaultdict(list)  # shapes whose reference timed out
        self.first_call_slow: dict[tuple, list[dict]] = defaultdict(list)  # first call (compile) timed out
        self.device_bytes: int | None = None  # the device's memory, once the worker has probed it

    def set_device_bytes(self, n: int | None) -> None:
        self.device_bytes = int(n) if n else None

    def too_big(self, case: Case) -> str | None:
        """Why a case cannot fit at all: its inputs and output alone exceed the device's memory."""
        if not self.device_bytes:
            return None
        try:
            need = ops.get_op(case.op).bytes_moved(case.shape, {"float64": 8, "float32": 4}.get(case.dtype, 2))
        except Exception:  # an op without a byte count: nothing to say
            return None
        if need > self.device_bytes:
            return f"inputs and output alone need {need:,} bytes; the device has {self.device_bytes:,}"
        return None

    @staticmethod
    def _impl_key(case: Case, impl: str) -> tuple:
        return (case.op, impl, case.dtype, case.device, case.mode)

    @staticmethod
    def _hist_key(case: Case, impl: str) -> tuple:
        return (case.op, impl, case.model, case.batch, case.dtype, case.device, case.variant, case.mode)

    def learn(self, case: Case, impl: str, status: str, median_ms: float | None, note: str = "") -> None:
        """Record one cell's outcome (``note``: the row's, which tells a first-call time-out apart)."""
        if status == "ok" and median_ms:
            self.history[self._hist_key(case, impl)].append((case.tokens, median_ms))
        elif status == "oom":
            self.oom[self._impl_key(case, impl)].append(case.shape)
        elif first_call_timeout(status, note):
            self.first_call_slow[self._impl_key(case, impl)].append(case.shape)  # recorded, never a skip reason
        elif status == "timeout":
            self.slow[self._impl_key(case, impl)].append(case.shape)

    def learn_rows(self, rows: Iterable[dict], cases: Iterable[Case]) -> None:
        """Record typed results rows (a resumed run directory's) of the given cases."""
        by_id = {c.case_id: c for c in cases}
        for row in rows:
            case = by_id.get(case_id_of(row))
            if case is not None:
                self.learn(case, row["impl"], row["status"], row.get("median_ms"), row.get("note") or "")

    def reference_too_slow(self, case: Case) -> None:
        """The case's float64 reference exceeded ``max_cell_s``: skip larger ones of the op."""
        self.ref_slow[(case.op, case.dtype, case.device, case.mode)].append(case.shape)

    def why_skip(self, case: Case, impl: str) -> str | None:
        """Why this cell is not worth running, from what smaller cells showed; None to run it."""
        shape, run = case.shape, self.run
        big = self.too_big(case)
        if big is not None:
            return big
        for s in self.oom.get(self._impl_key(case, impl), []):
            if dominates(shape, s):
                return f"out of memory at a smaller or equal size {shape_str(s)}"
        for s in self.slow.get(self._impl_key(case, impl), []):
            if dominates(shape, s):
                return f"timed out at a smaller or equal size {shape_str(s)} (max_cell_s={run.max_cell_s:g})"
        for s in self.ref_slow.get((case.op, case.dtype, case.device, case.mode), []):
            if dominates(shape, s):
                return f"float64 reference exceeded max_cell_s at {shape_str(s)}; raise it or set check_max_tokens"
        pred = predict_ms(case.op, case.tokens, self.history.get(self._hist_key(case, impl), []))
        if pred is not None:
            ms, t0, m0 = pred
            calls = run.min_samples + 2
            if ms / 1e3 * calls > run.max_cell_s:
                kind = "quadratic" if ops.get_op(case.op).time_exponent == 2 else "linear"
                return (
                    f"predicted {ms / 1e3:.3g} s per call ({kind} in T from {m0:.4g} ms at T={t0}); "
                    f"{calls} calls exceed max_cell_s={run.max_cell_s:g}"
                )
        return None
