"""``summary.md`` of the GPU check, from whatever its work directory holds (``scripts/gpu_check.py summary``).

Sections, each from this run's files only (a missing file or cell is said so, never filled in):
the preflight (``preflight.md``); the stages with budget, time taken and exit code
(``stages.tsv``); the headline per batch at the two longest durations measured (81.92 s, where
AST's eager attention fits in memory, and 327.68 s in the real check), every ratio labelled with
its duration: the best Bi-WKV7 implementation against AST eager (float16, as run), the best
SDPA backend, the best Mamba scan and ``fla_chunk`` when it ran, and its share of the measured
copy bandwidth; the training cells (``fwd_bwd``) of every Bi-WKV7 implementation against
``audiorwkv_catflip`` and ``fla_chunk`` with gradients and saved and peak memory; verify counts
per kind of check (output, gradients, the concurrency checks) with every row that is not ok; the
launch sweep's fastest configuration against the default, each checked against float64.
Results come from ``run/`` and, when the fla stage ran, ``run-fla/``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

#: The training baselines the fused Bi-WKV7 kernels are measured against (docs/notes/training_kernels.md).
TRAINING_BASELINES = ("audiorwkv_catflip", "fla_chunk")
#: Durations per batch in the headline table: the two longest measured.
HEADLINE_DURATIONS = 2
HEADLINE_TITLE = "## Headline"
NOT_OK = ("wrong", "failed", "oom", "timeout")


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _ms(x) -> str:
    return "-" if _nan(x) else f"{x:.4g}"


def _times(x, seconds=None) -> str:
    if _nan(x):
        return "-"
    return f"{x:.3g}x" + (f" at {seconds:g} s" if seconds is not None else "")


def _side(row, name: str) -> str:
    """``impl ms (speed-up at N s)`` of one baseline in a headline row, or its status."""
    impl, status, ms = row.get(f"{name}_impl", ""), row.get(f"{name}_status", ""), row.get(f"{name}_ms")
    if not impl:
        return "not measured"
    if _nan(ms):
        return f"{impl}: {status or 'no time'}"
    return f"{impl} {_ms(ms)} ms ({_times(row.get(f'{name}_speedup'), row['seconds'])})"


def headline_rows(df) -> list[dict]:
    """Per batch, the headline at the two longest durations measured (dicts of the table's cells)."""
    from wkvbench.report import analysis as an

    out = []
    wkv = df[df["op"] == "bi_wkv7"]
    for batch in sorted(wkv["batch"].unique()):
        part = df[df["batch"] == batch]
        table, where = an.headline(part)
        if table.empty:
            continue
        for _, row in table.iloc[-HEADLINE_DURATIONS:].iterrows():
            r = row.to_dict()
            sel = part[(part["op"] == "bi_wkv7") & (part["model"] == r["model"]) & (part["tokens"] == r["tokens"])]
            sel = sel[sel["dtype"] == where.get("dtype", sel["dtype"].iloc[0] if len(sel) else "")]
            sel = sel[sel["mode"] == "fwd"] if "mode" in sel else sel
            best = sel[sel["impl"] == r["best_impl"]]
            fla = sel[sel["impl"] == "fla_chunk"]
            r["batch"] = int(batch)
            r["dtype"] = where.get("dtype", "")
            r["best_gpu_ms"] = float(best["gpu_ms"].iloc[0]) if len(best) and "gpu_ms" in best else math.nan
            r["best_pct_copy_bw"] = float(best["pct_copy_bw"].iloc[0]) if len(best) else math.nan
            if len(fla):
                f = fla.iloc[0]
                r["fla_chunk"] = (
                    f"fla_chunk {_ms(f['median_ms'])} ms ({_times(f['median_ms'] / r['best_ms'], r['seconds'])})"
                    if bool(f["ok"]) and not _nan(r["best_ms"])
                    else f"fla_chunk: {f['status']}"
                )
            else:
                r["fla_chunk"] = "not measured (fla-core not brought along, or its stage did not reach it)"
            out.append(r)
    return out


def headline_lines(df) -> list[str]:
    rows = headline_rows(df)
    if not rows:
        return ["No Bi-WKV7 cells in the results: no headline."]
    lines = [
        f"{HEADLINE_TITLE} (the two longest durations measured; speed-up = baseline ms / best Bi-WKV7 ms)",
        "",
        "| batch | audio s | A-RWKV tokens | best Bi-WKV7 | ms (per call) | gpu_ms (back-to-back) | "
        "vs AST eager fp16 | vs best SDPA | vs Mamba scan | fla_chunk | % copy bw |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        best = r["best_impl"] if not _nan(r["best_ms"]) else f"none ok ({r['best_status']})"
        lines.append(
            f"| {r['batch']} | {r['seconds']:g} | {int(r['tokens'])} | {best} | {_ms(r['best_ms'])} | "
            f"{_ms(r['best_gpu_ms'])} | {_side(r, 'attention_eager')} | {_side(r, 'attention_sdpa')} | "
            f"{_side(r, 'scan')} | {r['fla_chunk']} | {_ms(r['best_pct_copy_bw'])} |"
        )
    return [
        *lines,
        "",
        "ms: median of per-call samples, L2 flushed before each, host launch gap included; gpu_ms: "
        "back-to-back calls, the GPU's own time. Baselines: docs/spec.md section 6 and "
        "wkvbench/report/baselines.py (AST eager as run in float16; naive loops never a side).",
    ]


def _mib(x) -> str:
    return "-" if _nan(x) else f"{x / 2**20:.4g}"


def training_lines(df) -> list[str]:
    """Per (batch, tokens, dtype) of the Bi-WKV7 fwd_bwd cells: every implementation against the baselines."""
    train = df[(df["op"] == "bi_wkv7") & (df["mode"] == "fwd_bwd")]
    if train.empty:
        return []
    lines = [
        "## Training (fwd_bwd; speed-up = baseline ms / impl ms; memory in MiB)",
        "",
        "| batch | tokens | dtype | impl | status | ms | gpu_ms | worst gradient | saved MiB | peak MiB | "
        + " | ".join(f"vs {b}" for b in TRAINING_BASELINES)
        + " | peak vs catflip |",
        "|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(TRAINING_BASELINES) + "---|",
    ]
    for (batch, tokens, dtype), part in train.groupby(["batch", "tokens", "dtype"], sort=True):
        rows = {b: part[part["impl"] == b] for b in TRAINING_BASELINES}
        base = {b: r[r["ok"]] for b, r in rows.items()}
        base_ms = {b: float(r["median_ms"].iloc[0]) if len(r) else math.nan for b, r in base.items()}
        why = {b: (f"no {b} row" if not len(rows[b]) else f"{b} {rows[b]['status'].iloc[0]}") for b in rows}
        cat = base["audiorwkv_catflip"]
        cat_peak = float(cat["peak_mem_bytes"].iloc[0]) if len(cat) else math.nan
        for _, r in part.sort_values("median_ms", na_position="last").iterrows():
            ok = bool(r["ok"])
            ms = float(r["median_ms"]) if ok else math.nan
            worst = f"{r['grad_worst']} {r['grad_rel_err']:.2g}" if r.get("grad_worst") else "-"
            ratios = [
                "-" if not ok or b == r["impl"] else (_times(base_ms[b] / ms) if not _nan(base_ms[b]) else why[b])
                for b in TRAINING_BASELINES
            ]
            peak = float(r["peak_mem_bytes"]) if ok else math.nan
            peak_vs = "-" if r["impl"] == "audiorwkv_catflip" or not ok else (
                _times(peak / cat_peak) if not _nan(cat_peak) else why["audiorwkv_catflip"]
            )  # fmt: skip
            status = r["status"] if ok else f"{r['status']}: {str(r['note'])[:60]}"
            lines.append(
                f"| {int(batch)} | {int(tokens)} | {dtype} | {r['impl']} | {status} | {_ms(ms)} | "
                f"{_ms(r['gpu_ms'] if ok else math.nan)} | {worst} | {_mib(r['saved_bytes'])} | {_mib(peak)} | "
                + " | ".join(ratios)
                + f" | {peak_vs} |"
            )
    return [*lines, ""]


def _csv_rows(path: Path) -> list[dict] | None:
    """The rows of a CSV file as dicts, or None when it was not written."""
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def verify_lines(path: Path) -> list[str]:
    rows = _csv_rows(path)
    if rows is None:
        return ["verify.csv: not written (the verify stages did not run)."]
    if not rows:
        return ["verify.csv: no checks finished (the verify stages were cut off or did not run)."]
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        k = (r.get("check") or "fwd", r.get("status", "?"))
        counts[k] = counts.get(k, 0) + 1
    kinds = list(dict.fromkeys(k for k, _ in counts))
    lines = [f"verify.csv: {len(rows)} rows."]
    for kind in kinds:
        lines.append(f"- {kind}: " + ", ".join(f"{n} {s}" for (k, s), n in sorted(counts.items()) if k == kind))
    bad = [r for r in rows if r.get("status") in NOT_OK]
    conc = [r for r in rows if (r.get("check") or "fwd") not in ("fwd", "grad") and r.get("status") not in NOT_OK]
    for r in bad[:12] + conc[:12]:
        lines.append(
            f"- {r.get('status')}: {r.get('impl')} {r.get('check') or 'fwd'} {r.get('shape')} {r.get('dtype')} "
            f"{r.get('note', '')[:200]}"
        )
    if len(bad) > 12:
        lines.append(f"- ... {len(bad) - 12} more rows not ok: verify.csv has them")
    return lines


def sweep_lines(path: Path) -> list[str]:
    rows = _csv_rows(path)
    if rows is None:
        return ["Launch sweep: not run or not finished."]
    lines = [
        "| impl | batch | tokens | default | default ms | fastest ok | fastest ms | gpu_ms of fastest | not ok |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["impl"], r["batch"], r["tokens"]), []).append(r)
    for (impl, batch, tokens), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok" and r["median_ms"]]
        bad = ", ".join(f"{r['param']}={r['value']}: {r['status']}" for r in rs if r["status"] in NOT_OK) or "-"
        if not ok:
            why = rs[0].get("note") or rs[0]["status"]
            lines.append(f"| {impl} | {batch} | {tokens} | {rs[0]['default']} | - | - | - | {why} | {bad} |")
            continue
        fast = min(ok, key=lambda r: float(r["median_ms"]))
        dflt = next((r for r in ok if r["value"] == r["default"]), None)
        lines.append(
            f"| {impl} | {batch} | {tokens} | {rs[0]['param']}={rs[0]['default']} | "
            f"{_ms(float(dflt['median_ms'])) if dflt else '-'} | {fast['param']}={fast['value']} | "
            f"{_ms(float(fast['median_ms']))} | {_ms(float(fast['gpu_ms'])) if fast['gpu_ms'] else '-'} | {bad} |"
        )
    return lines


def load_results(work: Path):
    """``(results DataFrame, env)`` of ``run/`` with ``run-fla/`` appended; ``(None, None)`` if neither has rows."""
    import pandas as pd

    from wkvbench.report.load import load_run

    parts, env = [], None
    for name in ("run", "run-fla"):
        if (work / name / "results.csv").is_file():
            loaded = load_run(work / name)
            parts.append(loaded.results)
            env = env or loaded.env
    if not parts:
        return None, None
    return pd.concat(parts, ignore_index=True), env


def summary(work: Path) -> str:
    """The summary text from the files in ``work`` (see the module docstring)."""
    lines = ["# wkvbench GPU check", ""]
    pre = work / "preflight.md"
    lines += pre.read_text(encoding="utf-8").splitlines() if pre.is_file() else ["Preflight: not run.", ""]
    stages = work / "stages.tsv"
    if stages.is_file():
        lines += ["## Stages", "", "| stage | budget s | took s | exit |", "|---|---|---|---|"]
        for line in stages.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) == 4:
                lines.append("| " + " | ".join(parts) + " |")
        lines.append("")
    df, env = load_results(work)
    if df is not None:
        gpu = env.gpu or (df["gpu"].iloc[0] if len(df) else "")
        counts = df["status"].value_counts().to_dict()
        lines.append(f"Device: {gpu or 'unknown'}; copy bandwidth measured: {_ms(env.copy_bandwidth_gbs)} GB/s.")
        lines.append(f"Results: {len(df)} cells: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        lines += ["", *headline_lines(df), "", *training_lines(df)]
    else:
        lines.append("No results: the suite stage did not write any cell.")
    lines += ["", "## Verify", "", *verify_lines(work / "verify.csv"), "", "## Launch configurations", ""]
    lines += sweep_lines(work / "sweep.csv")
    return "\n".join(lines) + "\n"


def headline_section(text: str) -> str:
    """The headline table of a summary.md text (to print as the check's last lines), or why there is none."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith(HEADLINE_TITLE)), None)
    if start is None:
        return "No headline table in summary.md (the suite wrote no Bi-WKV7 cell)."
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[start:end]).rstrip()
