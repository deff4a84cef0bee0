"""``wkvbench compare RUN_A RUN_B``: cell-by-cell comparison of two runs, for people and for CI.

Cells are matched on :data:`wkvbench.schema.KEY`. For a cell ok in both runs the speed-up is
``median_A / median_B`` (above 1: B is faster) with a bootstrap confidence interval: the raw
samples of each run are resampled with replacement (numpy, seeded per cell, 2000 resamples by
default) and the ratio of the resampled medians taken each time (Efron & Tibshirani, *An
Introduction to the Bootstrap*, 1993, percentile interval). Without at least 5 raw samples on
each side the interval falls back to the crossed quantiles ``[p20_A / p80_B, p80_A / p20_B]``.

Two separate things are said of each cell:

* its **statuses**, in the run's own vocabulary (:data:`wkvbench.schema.STATUSES`: ``ok, wrong,
  failed, oom, timeout, skipped``), as ``A -> B`` (``ok -> oom``, ``skipped -> skipped``, ``only
  in A``) for every cell that is not ok with a timing in both runs;
* for a cell ok in both, a **verdict** on its speed (:data:`VERDICTS`), with threshold ``t``
  (default 5%) in log-symmetric form: ``FASTER`` when the whole interval lies above ``1 + t``,
  ``SLOWER`` below ``1 / (1 + t)``, ``SAME`` within ``[1 / (1 + t), 1 + t]``, ``AMBIGUOUS``
  otherwise.

A regression is a ``SLOWER`` verdict or a cell ok in A (with a finite timing) that in B is wrong,
failed, OOM, timed out, without a finite timing or missing; ``ok -> skipped`` is not one. The
reverse is listed as an improvement; cells in one run only are listed. A non-finite timing is
never ``ok``. The geometric-mean speed-up is taken over the
cells ok in both runs, with a bootstrap interval over cells. Differences in GPU, driver, CUDA,
clocks, power limit, torch or triton are warned about. Exit status: 1 on any regression, else
0; 2 when a run directory cannot be read.
"""

from __future__ import annotations

import argparse
import math
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from wkvbench import schema
from wkvbench.presets import network_label
from wkvbench.report.load import Run, load_run
from wkvbench.report.style import fmt_ms, fmt_speedup

#: Verdicts on the speed of a cell ok in both runs (not statuses: those are schema.STATUSES).
VERDICTS = ("SLOWER", "AMBIGUOUS", "FASTER", "SAME")
#: Statuses in B that make a cell ok in A a regression.
BREAKING = tuple(s for s in schema.STATUSES if s not in ("ok", "skipped"))
MIN_SAMPLES = 5
_CHUNK = 256  # resamples drawn at a time (bounds memory for long sample lists)


@dataclass
class Comparison:
    """The result of comparing run B against run A."""

    cells: pd.DataFrame
    geomean: float
    geomean_lo: float
    geomean_hi: float
    n_both_ok: int
    env_diffs: dict[str, tuple[str, str]] = field(default_factory=dict)
    threshold: float = 0.05
    confidence: float = 0.95

    @property
    def verdict_counts(self) -> dict[str, int]:
        """Cells per speed verdict (cells ok in both runs)."""
        vc = self.cells["verdict"].value_counts()
        return {v: int(vc.get(v, 0)) for v in VERDICTS}

    @property
    def status_counts(self) -> dict[str, int]:
        """Cells per ``A -> B`` statuses, for the cells not ok in both runs (in display order)."""
        vc = self.cells.loc[self.cells["statuses"] != "", "statuses"].value_counts(sort=False)
        return {k: int(n) for k, n in vc.items()}

    @property
    def regressions(self) -> dict[str, int]:
        """Regressed cells by what regressed: ``SLOWER`` or the ``A -> B`` statuses."""
        bad = self.cells[self.cells["regression"]]
        what = bad["verdict"].where(bad["verdict"] != "", bad["statuses"])
        return {k: int(n) for k, n in what.value_counts(sort=False).items()}

    @property
    def improvements(self) -> dict[str, int]:
        """Cells broken, untimed or missing in A and ok in B, by their ``A -> B`` statuses."""
        good = self.cells[self.cells["improvement"]] if "improvement" in self.cells else self.cells.iloc[:0]
        return {k: int(n) for k, n in good["statuses"].value_counts(sort=False).items()}

    @property
    def regressed(self) -> bool:
        return bool(self.cells["regression"].any())


# ----------------------------------------------------------------------------- statistics
def _rng(seed: int, key: tuple) -> np.random.Generator:
    """A generator per cell: the interval of a cell does not depend on which other cells exist."""
    return np.random.default_rng([seed, zlib.crc32(repr(key).encode())])


def _resampled_medians(x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        n = min(_CHUNK, resamples - start)
        idx = rng.integers(0, len(x), size=(n, len(x)))
        out[start : start + n] = np.median(x[idx], axis=1)
    return out


def bootstrap_speedup(
    a: np.ndarray, b: np.ndarray, resamples: int = 2000, confidence: float = 0.95, rng=None
) -> tuple[float, float, float]:
    """``median(a) / median(b)`` and its percentile-bootstrap interval from resampling both sides."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("a, b: need at least one sample on each side")
    if not (0 < confidence < 1):
        raise ValueError(f"confidence: must lie in (0, 1), got {confidence}")
    if resamples < 100:
        raise ValueError(f"resamples: need at least 100, got {resamples}")
    rng = np.random.default_rng(0) if rng is None else rng
    ratios = _resampled_medians(a, resamples, rng) / _resampled_medians(b, resamples, rng)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(ratios, [alpha, 1 - alpha])
    return float(np.median(a) / np.median(b)), float(lo), float(hi)


def classify(lo: float, hi: float, threshold: float) -> str:
    """The verdict (FASTER / SLOWER / SAME / AMBIGUOUS) on a speed-up interval (B over A) at a relative threshold."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "AMBIGUOUS"
    up, down = 1 + threshold, 1 / (1 + threshold)
    if lo > up:
        return "FASTER"
    if hi < down:
        return "SLOWER"
    if lo >= down and hi <= up:
        return "SAME"
    return "AMBIGUOUS"


def geomean_interval(speedups: np.ndarray, resamples: int, confidence: float, seed: int) -> tuple[float, float, float]:
    """Geometric mean of per-cell speed-ups and a bootstrap interval over cells (NaN for no cells)."""
    logs = np.log(np.asarray(speedups, dtype=float))
    if logs.size == 0:
        return math.nan, math.nan, math.nan
    point = float(np.exp(logs.mean()))
    if logs.size < 2:
        return point, math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, logs.size, size=(resamples, logs.size))
    means = np.exp(logs[idx].mean(axis=1))
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return point, float(lo), float(hi)


# ----------------------------------------------------------------------------- comparison
def _good(r) -> bool:
    """Ok with a finite, positive timing (a non-finite median is never ok)."""
    if r is None or r["status"] != "ok":
        return False
    ms = r["median_ms"]
    return ms is not None and math.isfinite(ms) and ms > 0


def _status(r) -> str:
    return r["status"] if r["status"] != "ok" or _good(r) else "ok (no finite timing)"


def _statuses(ra, rb) -> str:
    """``A -> B`` in the runs' status vocabulary ('' when both are ok with a timing)."""
    if ra is None or rb is None:
        return "only in A" if rb is None else "only in B"
    return "" if _good(ra) and _good(rb) else f"{_status(ra)} -> {_status(rb)}"


def _regressed(ra, rb) -> bool:
    """Ok in A, and in B broken (BREAKING), without a finite timing, or missing (skipped is not one)."""
    if not _good(ra):
        return False
    return rb is None or (not _good(rb) and rb["status"] != "skipped")


def _improved(ra, rb) -> bool:
    """The reverse of a regression: broken, untimed or missing in A, ok in B."""
    return _good(rb) and (ra is None or (not _good(ra) and ra["status"] != "skipped"))


def _order(r) -> int:
    """Display order: broken cells, slower, ambiguous, ok -> skipped, faster, same, the rest."""
    if r["verdict"]:
        return {"SLOWER": 1, "AMBIGUOUS": 2, "FASTER": 4, "SAME": 5}[r["verdict"]]
    if r["regression"]:
        return 0
    if r["improvement"]:
        return 4
    if r["status_a"] == "ok":
        return 3
    if not (r["status_a"] and r["status_b"]):
        return 8
    return 6 if r["status_b"] == "ok" else 7


def _cell(key, ra, rb, run_a: Run, run_b: Run, threshold, resamples, confidence, seed) -> dict:
    out = dict(zip(schema.KEY, key, strict=True))
    out.update(status_a=ra["status"] if ra is not None else "", status_b=rb["status"] if rb is not None else "")
    out.update(statuses=_statuses(ra, rb), verdict="")
    out.update(median_a_ms=ra["median_ms"] if ra is not None else math.nan)
    out.update(median_b_ms=rb["median_ms"] if rb is not None else math.nan)
    out.update(speedup=math.nan, ci_lo=math.nan, ci_hi=math.nan, n_a=0, n_b=0, interval="")
    out["regression"] = _regressed(ra, rb)
    out["improvement"] = _improved(ra, rb)
    if out["statuses"]:
        return out
    sa, sb = run_a.samples_for(key), run_b.samples_for(key)
    out["n_a"] = 0 if sa is None else len(sa)
    out["n_b"] = 0 if sb is None else len(sb)
    point = ra["median_ms"] / rb["median_ms"]
    if out["n_a"] >= MIN_SAMPLES and out["n_b"] >= MIN_SAMPLES:
        _, lo, hi = bootstrap_speedup(sa, sb, resamples, confidence, _rng(seed, key))
        out["interval"] = "bootstrap"
    else:
        lo, hi = ra["p20_ms"] / rb["p80_ms"], ra["p80_ms"] / rb["p20_ms"]
        out["interval"] = "p20-p80" if math.isfinite(lo) and math.isfinite(hi) else "none"
    out.update(speedup=point, ci_lo=lo, ci_hi=hi, verdict=classify(lo, hi, threshold))
    out["regression"] = out["verdict"] == "SLOWER"
    return out


def env_differences(run_a: Run, run_b: Run) -> dict[str, tuple[str, str]]:
    """Fields that differ between the two environments (``{field: (a, b)}``); unknown on both sides is equal."""
    ea, eb = run_a.env.comparable(), run_b.env.comparable()
    return {k: (ea[k], eb[k]) for k in ea if ea[k] != eb[k] and (ea[k] or eb[k])}


def compare_runs(
    run_a: Run | str | Path,
    run_b: Run | str | Path,
    threshold: float = 0.05,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Compare run B against run A (the baseline), cell by cell."""
    if not (isinstance(threshold, (int, float)) and 0 <= threshold < 1):
        raise ValueError(f"threshold: must lie in [0, 1), got {threshold!r}")
    run_a = run_a if isinstance(run_a, Run) else load_run(run_a)
    run_b = run_b if isinstance(run_b, Run) else load_run(run_b)
    rows_a = {schema.key_of(r): r for r in run_a.results.to_dict("records")}
    rows_b = {schema.key_of(r): r for r in run_b.results.to_dict("records")}
    keys = list(rows_a) + [k for k in rows_b if k not in rows_a]
    cells = pd.DataFrame(
        [_cell(k, rows_a.get(k), rows_b.get(k), run_a, run_b, threshold, resamples, confidence, seed) for k in keys]
    )
    if cells.empty:
        cols = [*schema.KEY, "status_a", "status_b", "statuses", "verdict", "regression", "improvement"]
        cells = pd.DataFrame(columns=[*cols, "speedup", "ci_lo", "ci_hi"]).astype(
            {"regression": bool, "improvement": bool}
        )
    else:
        rank = cells.apply(_order, axis=1)
        cells = cells.assign(_r=rank).sort_values(["_r", *schema.KEY], kind="stable").drop(columns="_r")
        cells = cells.reset_index(drop=True)
    both = cells["speedup"].dropna()
    g, glo, ghi = geomean_interval(both.to_numpy(), resamples, confidence, seed)
    return Comparison(cells, g, glo, ghi, len(both), env_differences(run_a, run_b), threshold, confidence)


# ----------------------------------------------------------------------------- output
def _fmt_interval(r) -> str:
    if not math.isfinite(r["speedup"]):
        return ""
    ci = f" [{r['ci_lo']:.3f}, {r['ci_hi']:.3f}]" if math.isfinite(r["ci_lo"]) else ""
    return f"{fmt_speedup(r['speedup'])}{ci}"


def _impl_name(r) -> str:
    """A row's implementation; a whole network by its name and mixer ("A-RWKV-T (torch_chunked)")."""
    return network_label(r["model"], r["impl"]) if r["op"] == "network" else r["impl"]


def display_table(cmp: Comparison, everything: bool = False) -> pd.DataFrame:
    """Cells as text; SAME cells only with ``everything``."""
    cells = cmp.cells if everything else cmp.cells[cmp.cells["verdict"] != "SAME"]
    rows = []
    for _, r in cells.iterrows():
        rows.append({
            "status A -> B": r["statuses"] or "ok", "verdict": r["verdict"] or "-",
            "op": r["op"], "impl": _impl_name(r), "model": r["model"], "batch": r["batch"],
            "tokens": r["tokens"], "dtype": r["dtype"], "device": r["device"], "variant": r["variant"],
            "A ms": fmt_ms(r["median_a_ms"]) if r["status_a"] == "ok" else (r["status_a"] or "-"),
            "B ms": fmt_ms(r["median_b_ms"]) if r["status_b"] == "ok" else (r["status_b"] or "-"),
            f"speed-up B/A [{cmp.confidence:.0%} CI]": _fmt_interval(r),
        })  # fmt: skip
    return pd.DataFrame(rows)


def summary_lines(cmp: Comparison, name_a: str, name_b: str) -> list[str]:
    lines = []
    for k, (a, b) in cmp.env_diffs.items():
        lines.append(f"warning: environments differ in {k}: {a or '(unknown)'!r} (A) vs {b or '(unknown)'!r} (B)")
    if math.isfinite(cmp.geomean):
        ci = f" [{cmp.geomean_lo:.3f}, {cmp.geomean_hi:.3f}]" if math.isfinite(cmp.geomean_lo) else ""
        lines.append(
            f"geometric-mean speed-up of B ({name_b}) over A ({name_a}): {fmt_speedup(cmp.geomean)}{ci} "
            f"over {cmp.n_both_ok} cells ok in both"
        )
    else:
        lines.append("no cell is ok in both runs: no geometric-mean speed-up")
    verdicts = ", ".join(f"{n} {v}" for v, n in cmp.verdict_counts.items() if n)
    lines.append(f"verdicts (cells ok in both, threshold {cmp.threshold:.0%}): {verdicts or 'none'}")
    statuses = ", ".join(f"{n} {s}" for s, n in cmp.status_counts.items())
    if statuses:
        lines.append(f"statuses A -> B (cells not ok in both): {statuses}")
    if cmp.improvements:
        lines.append("improved: " + ", ".join(f"{n} {what}" for what, n in cmp.improvements.items()))
    if cmp.regressed:
        lines.append("REGRESSION: " + ", ".join(f"{n} {what}" for what, n in cmp.regressions.items()))
    return lines


def _text_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "(no cells to show)"
    cols = list(df.columns)
    widths = [max(len(str(c)), *(len(str(v)) for v in df[c])) for c in cols]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    for row in df.itertuples(index=False):
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def write_outputs(cmp: Comparison, out_dir: Path, name_a: str, name_b: str) -> None:
    from wkvbench.report.render import md_table

    out_dir.mkdir(parents=True, exist_ok=True)
    cmp.cells.to_csv(out_dir / "compare.csv", index=False)
    text = [f"# wkvbench compare: {name_b} vs {name_a}", ""]
    text += [f"- {line}" for line in summary_lines(cmp, name_a, name_b)]
    text += ["", md_table(display_table(cmp, everything=True))]
    (out_dir / "compare.md").write_text("\n".join(text), encoding="utf-8")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", metavar="RUN_A", help="baseline run directory")
    parser.add_argument("run_b", metavar="RUN_B", help="run directory compared against RUN_A")
    parser.add_argument("--threshold", type=float, default=0.05, help="relative change that counts (default 0.05)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per cell (default 2000)")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence of the intervals (default 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--all", action="store_true", help="list SAME cells too")
    parser.add_argument("-o", "--out", metavar="OUT_DIR", default=None, help="also write compare.csv and compare.md")
    parser.add_argument(
        "--allow-gpu-mismatch", action="store_true", help="compare timings from different GPU models (a warning)"
    )


def main(args: argparse.Namespace) -> int:
    from wkvbench.report.machines import gpu_mismatch

    why = gpu_mismatch(args.run_a, args.run_b)
    if why and not getattr(args, "allow_gpu_mismatch", False):
        print(
            f"wkvbench compare: {why}; timings of different GPU models are not a regression test "
            "(give --allow-gpu-mismatch to compare them anyway)",
            file=sys.stderr,
        )
        return 2
    if why:
        print(f"warning: {why}: the differences include the hardware", file=sys.stderr)
    try:
        cmp = compare_runs(args.run_a, args.run_b, args.threshold, args.resamples, args.confidence, args.seed)
    except ValueError as exc:
        print(f"wkvbench compare: {exc}", file=sys.stderr)
        return 2
    name_a, name_b = str(args.run_a), str(args.run_b)
    print(_text_table(display_table(cmp, everything=args.all)))
    print()
    for line in summary_lines(cmp, name_a, name_b):
        print(line, file=sys.stderr if line.startswith("warning") else sys.stdout)
    if args.out:
        write_outputs(cmp, Path(args.out), name_a, name_b)
    return 1 if cmp.regressed else 0
