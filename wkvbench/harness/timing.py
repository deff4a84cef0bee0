"""One timer for every backend: statistics, GPU and CPU timers, L2 flush, copy-bandwidth probe.

GPU protocol (the one ``triton.testing.do_bench`` follows, with the raw samples kept):

* every sample is one call, bracketed by ``torch.cuda.Event(enable_timing=True)`` records on
  torch's current stream -- Triton, CuPy and Numba implementations launch on that stream too
  (their wrappers take ``torch.cuda.current_stream()``), so one timer measures them all;
* before each sample a buffer twice the size of the device's L2 cache is read (summed, outside
  the events), so no call finds its inputs warm in L2 from the previous one; a read, not a
  ``zero_()``, since dirty lines would be written back inside the next timed call;
* the events of a batch of samples are read after one synchronisation at the end, so host
  overhead between samples does not serialise the GPU.

CPU protocol: ``time.perf_counter`` around each call, the same statistics. (``torch.utils.benchmark``
times blocks of calls and sets its own thread count; here one sample must be one call so that
implementations can be interleaved sample batch by sample batch.)

The per-call samples include whatever GPU idle time the call's own host-side launch work causes:
the start event is recorded right after the flush kernel, so a launch that takes longer on the
host than the flush takes on the GPU (Numba's dispatch, ~50-150 us) is charged the gap.
:meth:`Timer.gpu_ms` measures beside it the GPU time free of that overhead: ``k`` back-to-back
calls between one event pair (host work overlaps the previous call's kernels), divided by ``k``,
median over a few repeats. Results carry both: ``median_ms`` (per call, L2 cold, host gap
included) and ``gpu_ms`` (back-to-back, the GPU's own time; on a CPU the same loop on the clock).

:meth:`Timer.graph_ms` is the third figure: the call captured once in a CUDA graph and replayed,
so neither Python nor the launches of a multi-kernel call are in it, with a cold L2. The flush
read stays *outside* the graph and outside the events, as in the per-call samples: the host
enqueues flush, start event, replay, end event for every sample before the GPU gets there (a
replay is one launch), so the GPU never waits between the flush and the graph. A call that cannot
be captured (host synchronisation, a library on its own stream) gives the reason instead.

Noise-based stopping: :func:`rel_ci` is the bootstrap confidence half-width of the median over
the median; the sweep stops sampling a cell once it is at most ``max_noise`` (after at least
``min_samples``), else when the cell's time budget is spent (:func:`noise_ok`).

The first call of a cell is timed apart (host wall time, synchronised), since Triton, NVRTC and
Numba compile on it and that is a cost users pay. Warm-up is by time, and the number of samples
follows from the warm-up's per-call estimate and the per-cell time budget (:func:`plan_samples`).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

#: L2 flush buffer when the device does not report its L2 size (do_bench's choice).
DEFAULT_FLUSH_BYTES = 256 * 2**20


# ----------------------------------------------------------------------------- statistics
def quantile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of sorted data (numpy's default, ``method="linear"``)."""
    if not sorted_xs:
        return math.nan
    pos = (len(sorted_xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class Stats:
    """Summary of a cell's samples (milliseconds)."""

    median_ms: float
    p20_ms: float
    p80_ms: float
    min_ms: float
    mean_ms: float
    iqr_ms: float  # p75 - p25
    cv: float  # standard deviation / mean
    n_samples: int

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(samples_ms: Sequence[float]) -> Stats:
    """Median, p20, p80, min, mean, IQR and coefficient of variation of ``samples_ms``."""
    xs = sorted(float(x) for x in samples_ms)
    if not xs:
        raise ValueError("samples_ms: no samples to summarise")
    if not all(math.isfinite(x) and x >= 0 for x in xs):
        raise ValueError("samples_ms: samples must be finite and non-negative")
    mean = statistics.fmean(xs)
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return Stats(
        median_ms=quantile(xs, 0.5),
        p20_ms=quantile(xs, 0.2),
        p80_ms=quantile(xs, 0.8),
        min_ms=xs[0],
        mean_ms=mean,
        iqr_ms=quantile(xs, 0.75) - quantile(xs, 0.25),
        cv=sd / mean if mean > 0 else 0.0,
        n_samples=len(xs),
    )


def rel_ci(samples_ms: Sequence[float], conf: float = 0.95, n_boot: int = 1000, seed: int = 0) -> float:
    """Bootstrap half-width of the ``conf`` confidence interval of the median, over the median.

    Percentile bootstrap: ``n_boot`` resamples with replacement, the median of each, and half the
    distance between their ``(1 - conf) / 2`` and ``(1 + conf) / 2`` quantiles. NaN for fewer than
    two samples or a zero median. Deterministic for a given ``seed``.
    """
    if not 0 < conf < 1:
        raise ValueError(f"conf: expected a value in (0, 1), got {conf}")
    if n_boot < 10:
        raise ValueError(f"n_boot: expected >= 10, got {n_boot}")
    xs = np.asarray(samples_ms, dtype=float)
    if xs.size < 2:
        return math.nan
    med = float(np.median(xs))
    if med <= 0:
        return math.nan
    rng = np.random.default_rng(seed)
    boots = np.median(xs[rng.integers(0, xs.size, size=(n_boot, xs.size))], axis=1)
    lo, hi = np.quantile(boots, [(1 - conf) / 2, (1 + conf) / 2])
    return float(hi - lo) / 2 / med


def noise_ok(samples_ms: Sequence[float], max_noise: float, min_samples: int) -> bool:
    """Whether a cell may stop sampling: ``min_samples`` taken and :func:`rel_ci` <= ``max_noise``.

    ``max_noise = 0`` never stops early (sample to the budget).
    """
    if max_noise < 0:
        raise ValueError(f"max_noise: expected >= 0, got {max_noise}")
    if max_noise == 0 or len(samples_ms) < max(min_samples, 2):
        return False
    r = rel_ci(samples_ms)
    return math.isfinite(r) and r <= max_noise


def plan_samples(est_ms: float, budget_s: float, min_samples: int, max_samples: int, rounds: int) -> list[int]:
    """Samples per round: about ``budget_s`` of calls at ``est_ms`` each, split over ``rounds``.

    The total is clamped to ``[min_samples, max_samples]`` and spread as evenly as possible; a
    round never gets zero samples unless there are fewer samples than rounds.
    """
    if rounds < 1 or min_samples < 1 or max_samples < min_samples:
        raise ValueError(f"plan_samples: bad settings rounds={rounds} min={min_samples} max={max_samples}")
    total = budget_s * 1e3 / est_ms if est_ms > 0 else max_samples
    total = int(min(max(math.ceil(total), min_samples), max_samples))
    base, extra = divmod(total, rounds)
    return [base + (1 if i < extra else 0) for i in range(rounds)]


# ----------------------------------------------------------------------------- timers
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def l2_bytes(device: torch.device) -> int:
    """The device's L2 cache size in bytes (0 if unknown)."""
    if device.type != "cuda":
        return 0
    props = torch.cuda.get_device_properties(device)
    return int(getattr(props, "L2_cache_size", 0) or 0)


class Timer:
    """Times calls on one device with the protocol above.

    ``first_call(fn)`` -> ms (wall, synchronised); ``warmup(fn, seconds)`` -> estimated ms per
    call; ``samples(fn, n)`` -> list of ms, one per call, L2 flushed before each on a GPU.
    """

    def __init__(self, device: torch.device | str, flush: bool = True):
        self.device = torch.device(device)
        self._flush_buf = self._flush_sink = None
        if self.device.type == "cuda" and flush:
            nbytes = 2 * l2_bytes(self.device) or DEFAULT_FLUSH_BYTES
            self._flush_buf = torch.zeros(nbytes // 4, dtype=torch.int32, device=self.device)
            self._flush_sink = torch.zeros((), dtype=torch.int64, device=self.device)

    @property
    def flush_bytes(self) -> int:
        return 0 if self._flush_buf is None else self._flush_buf.numel() * 4

    def flush_l2(self) -> None:
        if self._flush_buf is not None:
            torch.sum(self._flush_buf, dim=0, dtype=torch.int64, out=self._flush_sink)

    def first_call(self, fn: Callable[[], object]) -> tuple[object, float]:
        """Call ``fn`` once; return (its result, wall milliseconds including any compilation)."""
        synchronize(self.device)
        t0 = time.perf_counter()
        out = fn()
        synchronize(self.device)
        return out, (time.perf_counter() - t0) * 1e3

    def warmup(self, fn: Callable[[], object], seconds: float, max_calls: int = 10_000) -> float:
        """Run ``fn`` for about ``seconds`` (at least once); return the mean ms per call."""
        synchronize(self.device)
        t0 = time.perf_counter()
        fn()
        synchronize(self.device)
        one = time.perf_counter() - t0
        n = int(min(max(seconds / one, 1) if one > 0 else max_calls, max_calls))
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        synchronize(self.device)
        return (time.perf_counter() - t0) * 1e3 / n

    def samples(self, fn: Callable[[], object], n: int) -> list[float]:
        """``n`` samples of one call each, in milliseconds."""
        if n < 1:
            return []
        if self.device.type != "cuda":
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                out.append((time.perf_counter() - t0) * 1e3)
            return out
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        for i in range(n):
            self.flush_l2()
            starts[i].record()
            fn()
            ends[i].record()
        torch.cuda.synchronize(self.device)
        return [float(s.elapsed_time(e)) for s, e in zip(starts, ends, strict=True)]

    def _span(self) -> tuple[Callable[[], object], Callable[[object, object], float]]:
        """(mark, elapsed ms between two marks): CUDA events on a GPU, the host clock otherwise."""
        if self.device.type == "cuda":

            def mark():
                ev = torch.cuda.Event(enable_timing=True)
                ev.record()
                return ev

            return mark, lambda a, b: float(a.elapsed_time(b))
        return time.perf_counter, lambda a, b: (b - a) * 1e3

    def gpu_ms(self, fn: Callable[[], object], est_ms: float, target_ms: float = 20.0, repeats: int = 5) -> float:
        """Per-call time of ``k`` back-to-back calls between one pair of marks, median of ``repeats``.

        ``k = clamp(target_ms / est_ms, 1, 1000)``: enough calls that the host launches run ahead of
        the GPU, so the span is the kernels' own time. One L2 flush before each repeat (not between
        the ``k`` calls). With ``k = 1`` this is one cold call, the per-call protocol's sample.
        """
        if repeats < 1:
            raise ValueError(f"repeats: expected >= 1, got {repeats}")
        k = int(min(max(target_ms / est_ms, 1), 1000)) if est_ms > 0 and math.isfinite(est_ms) else 1
        mark, elapsed = self._span()
        pairs = []
        for _ in range(repeats):
            self.flush_l2()
            a = mark()
            for _ in range(k):
                fn()
            pairs.append((a, mark()))
        synchronize(self.device)
        return statistics.median(elapsed(a, b) for a, b in pairs) / k

    def graph_ms(
        self, fn: Callable[[], object], n: int, capture: Callable[[Callable[[], object]], object] | None = None
    ) -> tuple[float | None, str]:
        """Median ms of ``n`` CUDA-graph replays of ``fn``, L2 flushed before each; or (None, reason).

        ``capture(fn)`` returns an object with ``replay()`` (default: :func:`capture_graph`); a
        capture that raises gives ``(None, "capture failed: ...")``. On a CPU, without ``capture``,
        ``(None, "")``: there is no graph to replay.
        """
        if n < 1:
            raise ValueError(f"n: expected >= 1, got {n}")
        if capture is None:
            if self.device.type != "cuda":
                return None, ""
            capture = capture_graph
        try:
            graph = capture(fn)
        except Exception as exc:  # the call does something a graph cannot hold
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return None, f"capture failed: {type(exc).__name__}: {msg}"[:200]
        mark, elapsed = self._span()
        graph.replay()  # upload and first replay outside the samples
        pairs = []
        for _ in range(n):
            self.flush_l2()
            a = mark()
            graph.replay()
            pairs.append((a, mark()))
        synchronize(self.device)
        return statistics.median(elapsed(a, b) for a, b in pairs), ""


def capture_graph(fn: Callable[[], object]):
    """``fn`` captured in a ``torch.cuda.CUDAGraph`` (after three warm-up calls on a side stream)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    torch.cuda.synchronize()
    return graph


def copy_bandwidth_gbs(device: torch.device | str, nbytes: int | None = None, reps: int = 10) -> float:
    """Device-memory copy bandwidth, GB/s, counting the bytes read plus the bytes written.

    A ``dst.copy_(src)`` of ``nbytes`` (1 GiB on a GPU, 64 MiB on a CPU by default; on a GPU at
    most a quarter of free memory), median of ``reps`` timed copies after one warm-up. This is
    the "achievable" bandwidth that ``pct_copy_bw`` is relative to.
    """
    device = torch.device(device)
    if nbytes is None:
        nbytes = 2**30 if device.type == "cuda" else 64 * 2**20
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            nbytes = min(nbytes, free // 4)
    n = max(nbytes // 4, 1)
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    timer = Timer(device, flush=False)
    dst.copy_(src)
    times = timer.samples(lambda: dst.copy_(src), reps)
    med = statistics.median(times)
    return 2 * n * 4 / (med * 1e-3) / 1e9 if med > 0 else math.nan
