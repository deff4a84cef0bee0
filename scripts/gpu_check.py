"""Helpers of ``scripts/gpu_check.sh``: the rehearsal's scaled suite, the verify table, the summary.

``python scripts/gpu_check.py rehearse-suite SRC DST``
    Write ``SRC`` (a suite TOML) scaled down for a CPU rehearsal: device ``cpu``; every
    duration divided by :data:`REHEARSE_SECONDS_DIVISOR` (327.68 s -> 5.12 s: 256 A-RWKV tokens);
    batch 8 -> 2; short sampling budgets; accuracy at full size. Implementations, models,
    dtypes and the structure stay as written, so the rehearsal plans the same cells.

``python scripts/gpu_check.py merge-csv OUT IN...``
    Concatenate CSV tables with the same header (the per-dtype verify tables) into ``OUT``.

``python scripts/gpu_check.py summary WORK OUT_MD``
    ``summary.md`` from whatever ``WORK`` holds (``run/`` results, ``verify.csv``, ``sweep.csv``,
    ``stages.tsv``): for batch 1 and 8 at the longest duration measured (327.68 s in the real
    check), the best Bi-WKV7 implementation against AST's eager attention (float16, as run),
    the best SDPA backend, the best Mamba scan and ``fla_chunk`` when it ran; the best Bi-WKV7's
    share of the measured copy bandwidth; the training cells (``fwd_bwd``) of every Bi-WKV7
    implementation against ``audiorwkv_catflip`` and ``fla_chunk`` with their saved and peak
    memory (:func:`training_lines`); verify counts; the launch sweep's fastest
    configuration against the default. Every number is read from this run's files; a missing
    file or cell is said so, never filled in.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

#: Durations are divided by this in a rehearsal (327.68 s -> 5.12 s: 256 A-RWKV tokens; 10.24 s -> 0.16 s: 8).
REHEARSE_SECONDS_DIVISOR = 64
#: Batch sizes in a rehearsal: 8 becomes 2 (batch 1 stays).
REHEARSE_MAX_BATCH = 2
REHEARSE_RUN = {
    "device": "cpu",
    "budget_s": 0.02,
    "warmup_s": 0.005,
    "rounds": 1,
    "min_samples": 2,
    "max_samples": 20,
    "max_cell_s": 30,
    "check_max_tokens": 0,
    "energy_s": 0,
}


# ----------------------------------------------------------------------------- suite
def rehearse(data: dict) -> dict:
    """A parsed suite, scaled down for a CPU rehearsal (see the module docstring)."""
    if not isinstance(data.get("group"), list):
        raise ValueError("suite: expected [[group]] tables")
    out = dict(data)
    out["name"] = f"{data.get('name', 'suite')}-rehearsal"
    out["description"] = f"{data.get('description', '')} (CPU rehearsal: sizes scaled down)".strip()
    out["run"] = {**data.get("run", {}), **REHEARSE_RUN}
    groups = []
    for g in data["group"]:
        g = dict(g)
        if "seconds" in g:
            g["seconds"] = [round(s / REHEARSE_SECONDS_DIVISOR, 6) for s in g["seconds"]]
        if "tokens" in g:
            g["tokens"] = [max(1, t // REHEARSE_SECONDS_DIVISOR) for t in g["tokens"]]
        if "batch" in g:
            g["batch"] = sorted({min(b, REHEARSE_MAX_BATCH) for b in g["batch"]})
        groups.append(g)
    out["group"] = groups
    return out


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"suite value: cannot write {type(v).__name__} as TOML")


def to_toml(data: dict) -> str:
    """A suite dict (top-level scalars, ``[run]``, ``[[group]]``) as TOML text."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if k not in ("run", "group")]
    if "run" in data:
        lines += ["", "[run]", *(f"{k} = {_toml_value(v)}" for k, v in data["run"].items())]
    for g in data.get("group", []):
        lines += ["", "[[group]]", *(f"{k} = {_toml_value(v)}" for k, v in g.items())]
    return "\n".join(lines) + "\n"


def cmd_rehearse_suite(src: str, dst: str) -> int:
    data = tomllib.loads(Path(src).read_text(encoding="utf-8"))
    Path(dst).write_text(to_toml(rehearse(data)), encoding="utf-8")
    return 0


def cmd_merge_csv(out: str, *inputs: str) -> int:
    header, rows = None, []
    for path in inputs:
        p = Path(path)
        if not p.is_file() or p.stat().st_size == 0:
            continue
        with p.open(newline="", encoding="utf-8") as fh:
            r = csv.reader(fh)
            head = next(r, None)
            if head is None:
                continue
            if header is None:
                header = head
            elif head != header:
                raise ValueError(f"{path}: header differs from the first table's")
            rows.extend(r)
    if header is None:
        return 1
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return 0


# ----------------------------------------------------------------------------- summary
def _ms(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.4g}"


def _times(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}x"


def _side(row, name: str) -> str:
    """``impl ms (speed-up)`` of one baseline in a headline row, or its status."""
    impl, status, ms = row.get(f"{name}_impl", ""), row.get(f"{name}_status", ""), row.get(f"{name}_ms")
    if not impl:
        return "not measured"
    if ms is None or (isinstance(ms, float) and math.isnan(ms)):
        return f"{impl}: {status or 'no time'}"
    return f"{impl} {_ms(ms)} ms ({_times(row.get(f'{name}_speedup'))})"


def headline_rows(df) -> list[dict]:
    """Per batch, the headline at the longest duration measured (a dict of the table's cells)."""
    from wkvbench.report import analysis as an

    out = []
    wkv = df[df["op"] == "bi_wkv7"]
    for batch in sorted(wkv["batch"].unique()):
        part = df[df["batch"] == batch]
        table, where = an.headline(part)
        if table.empty:
            continue
        r = table.iloc[-1].to_dict()  # the longest duration
        sel = part[(part["op"] == "bi_wkv7") & (part["model"] == r["model"]) & (part["tokens"] == r["tokens"])]
        sel = sel[sel["dtype"] == where.get("dtype", sel["dtype"].iloc[0] if len(sel) else "")]
        best = sel[sel["impl"] == r["best_impl"]]
        fla = sel[sel["impl"] == "fla_chunk"]
        r["batch"] = int(batch)
        r["dtype"] = where.get("dtype", "")
        r["best_gpu_ms"] = float(best["gpu_ms"].iloc[0]) if len(best) and "gpu_ms" in best else math.nan
        r["best_pct_copy_bw"] = float(best["pct_copy_bw"].iloc[0]) if len(best) else math.nan
        if len(fla):
            f = fla.iloc[0]
            ok = bool(f["ok"])
            r["fla_chunk"] = (
                f"fla_chunk {_ms(f['median_ms'])} ms ({_times(f['median_ms'] / r['best_ms'])})"
                if ok and r["best_ms"] == r["best_ms"]
                else f"fla_chunk: {f['status']}"
            )
        else:
            r["fla_chunk"] = "not measured (fla-core not installed?)"
        out.append(r)
    return out


#: The training baselines the fused Bi-WKV7 kernels are measured against (docs/notes/training_kernels.md).
TRAINING_BASELINES = ("audiorwkv_catflip", "fla_chunk")


def _mib(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x / 2**20:.0f}"


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
        base = {b: part[(part["impl"] == b) & part["ok"]] for b in TRAINING_BASELINES}
        base_ms = {b: float(r["median_ms"].iloc[0]) if len(r) else math.nan for b, r in base.items()}
        cat = base["audiorwkv_catflip"]
        cat_peak = float(cat["peak_mem_bytes"].iloc[0]) if len(cat) else math.nan
        for _, r in part.sort_values("median_ms", na_position="last").iterrows():
            ok = bool(r["ok"])
            ms = float(r["median_ms"]) if ok else math.nan
            worst = f"{r['grad_worst']} {r['grad_rel_err']:.2g}" if r.get("grad_worst") else "-"
            ratios = [_times(base_ms[b] / ms) if ok and b != r["impl"] else "-" for b in TRAINING_BASELINES]
            peak = float(r["peak_mem_bytes"]) if ok else math.nan
            status = r["status"] if ok else f"{r['status']}: {str(r['note'])[:60]}"
            lines.append(
                f"| {int(batch)} | {int(tokens)} | {dtype} | {r['impl']} | {status} | {_ms(ms)} | "
                f"{_ms(r['gpu_ms'] if ok else math.nan)} | {worst} | {_mib(r['saved_bytes'])} | {_mib(peak)} | "
                + " | ".join(ratios)
                + f" | {_times(peak / cat_peak) if r['impl'] != 'audiorwkv_catflip' else '-'} |"
            )
    return [*lines, ""]


def _csv_rows(path: Path) -> list[dict] | None:
    """The rows of a CSV file as dicts, or None when it was not written."""
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _verify_lines(path: Path) -> list[str]:
    rows = _csv_rows(path)
    if rows is None:
        return ["verify.csv: not written (the verify stage did not finish)."]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
    bad = [r for r in rows if r.get("status") in ("wrong", "failed", "oom")]
    lines = [f"verify.csv: {len(rows)} checks: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    for r in bad[:10]:
        lines.append(f"- {r.get('status')}: {r.get('impl')} {r.get('shape')} {r.get('dtype')} {r.get('note', '')}")
    return lines


def _sweep_lines(path: Path) -> list[str]:
    rows = _csv_rows(path)
    if rows is None:
        return ["Launch sweep: not run or not finished."]
    lines = [
        "| impl | batch | tokens | default | default ms | fastest | fastest ms | gpu_ms of fastest |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["impl"], r["batch"], r["tokens"]), []).append(r)
    for (impl, batch, tokens), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok" and r["median_ms"]]
        if not ok:
            why = rs[0].get("note") or rs[0]["status"]
            lines.append(f"| {impl} | {batch} | {tokens} | {rs[0]['default']} | - | - | - | {why} |")
            continue
        fast = min(ok, key=lambda r: float(r["median_ms"]))
        dflt = next((r for r in ok if r["value"] == r["default"]), None)
        lines.append(
            f"| {impl} | {batch} | {tokens} | {rs[0]['param']}={rs[0]['default']} | "
            f"{_ms(float(dflt['median_ms'])) if dflt else '-'} | {fast['param']}={fast['value']} | "
            f"{_ms(float(fast['median_ms']))} | {_ms(float(fast['gpu_ms'])) if fast['gpu_ms'] else '-'} |"
        )
    return lines


def summary(work: Path) -> str:
    """The summary text from the files in ``work`` (see the module docstring)."""
    lines = ["# wkvbench GPU check", ""]
    stages = work / "stages.tsv"
    if stages.is_file():
        lines += ["| stage | budget s | took s | exit |", "|---|---|---|---|"]
        for line in stages.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) == 4:
                lines.append("| " + " | ".join(parts) + " |")
        lines.append("")
    run = work / "run"
    gpu = copy = ""
    if (run / "results.csv").is_file():
        from wkvbench.report.load import load_run

        loaded = load_run(run)
        df, env = loaded.results, loaded.env
        gpu = env.gpu or (df["gpu"].iloc[0] if len(df) else "")
        copy = env.copy_bandwidth_gbs
        n = len(df)
        counts = df["status"].value_counts().to_dict()
        lines.append(f"Device: {gpu or 'unknown'}; copy bandwidth measured: {_ms(copy)} GB/s.")
        lines.append(f"Results: {n} cells: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        lines.append("")
        rows = headline_rows(df)
        if rows:
            lines += [
                "## Headline (longest duration measured; speed-up = baseline ms / best Bi-WKV7 ms)",
                "",
                "| batch | audio s | A-RWKV tokens | best Bi-WKV7 | ms (per call) | gpu_ms (back-to-back) | "
                "vs AST eager fp16 | vs best SDPA | vs Mamba scan | fla_chunk | % copy bw |",
                "|---|---|---|---|---|---|---|---|---|---|---|",
            ]
            for r in rows:
                best = r["best_impl"] if r["best_ms"] == r["best_ms"] else f"none ok ({r['best_status']})"
                lines.append(
                    f"| {r['batch']} | {r['seconds']:g} | {int(r['tokens'])} | {best} | {_ms(r['best_ms'])} | "
                    f"{_ms(r['best_gpu_ms'])} | {_side(r, 'attention_eager')} | {_side(r, 'attention_sdpa')} | "
                    f"{_side(r, 'scan')} | {r['fla_chunk']} | {_ms(r['best_pct_copy_bw'])} |"
                )
            lines.append("")
            lines.append(
                "ms: median of per-call samples, L2 flushed before each, host launch gap included; gpu_ms: "
                "back-to-back calls, the GPU's own time. Baselines: docs/spec.md section 6 and "
                "wkvbench/report/baselines.py (AST eager as run in float16; naive loops never a side)."
            )
        else:
            lines.append("No Bi-WKV7 cells in the results: no headline.")
        lines += ["", *training_lines(df)]
    else:
        lines.append("No results: the suite stage did not write any cell.")
    lines += ["", "## Verify", "", *_verify_lines(work / "verify.csv"), "", "## Launch configurations", ""]
    lines += _sweep_lines(work / "sweep.csv")
    return "\n".join(lines) + "\n"


def cmd_summary(work: str, out_md: str) -> int:
    Path(out_md).write_text(summary(Path(work)), encoding="utf-8")
    return 0


COMMANDS = {"rehearse-suite": (cmd_rehearse_suite, 2), "merge-csv": (cmd_merge_csv, None), "summary": (cmd_summary, 2)}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: gpu_check.py {{{','.join(COMMANDS)}}} ARGS...", file=sys.stderr)
        return 2
    fn, nargs = COMMANDS[argv[0]]
    args = argv[1:]
    if (nargs is not None and len(args) != nargs) or (nargs is None and len(args) < 2):
        print(f"gpu_check.py {argv[0]}: wrong number of arguments", file=sys.stderr)
        return 2
    return fn(*args)


if __name__ == "__main__":
    sys.exit(main())
