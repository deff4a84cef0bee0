"""Writing the report: ``report.html`` (one self-contained file) and ``report.md`` (for GitHub).

The HTML embeds every figure as a base64 PNG and loads nothing from outside (no scripts, fonts
or style sheets). Both files carry the same headline sentence and table; the HTML adds the
environment, the verification table, the list of cells that are not ok and, under each figure,
the table of what it shows. The Markdown links the figure files (``figures/*.png|svg``).
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from wkvbench.report import analysis as an
from wkvbench.report.baselines import BASELINES
from wkvbench.report.load import Env
from wkvbench.report.style import (
    STATUS_LABEL,
    fmt_bytes,
    fmt_ms,
    fmt_rate,
    fmt_sci,
    fmt_seconds,
    fmt_speedup,
)


@dataclass
class Report:
    """Everything the two renderers need."""

    title: str
    run_dir: str
    env: Env
    headline: pd.DataFrame
    where: dict
    verification: pd.DataFrame
    not_ok: pd.DataFrame
    plots: list = field(default_factory=list)  # figures.Plot
    counts: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- headline
def _base_cell(row, name: str) -> str:
    """A baseline's ms, or its status when it has no valid timing, or '-' when it was not measured."""
    ms = row[f"{name}_ms"]
    if pd.notna(ms):
        return fmt_ms(ms)
    status = row[f"{name}_status"]
    return STATUS_LABEL.get(status, status) if status else "-"


def headline_display(table: pd.DataFrame) -> pd.DataFrame:
    """The headline table as strings, one row per duration."""
    out = []
    for _, r in table.iterrows():
        best = (
            f"{r['best_impl']}"
            if pd.notna(r["best_ms"])
            else f"none ok ({STATUS_LABEL.get(r['best_status'], r['best_status'])})"
        )
        rec = {
            "audio": fmt_seconds(r["seconds"]),
            f"{r['model']} tokens": f"{int(r['tokens']):,}",
            "best Bi-WKV7": best,
            "Bi-WKV7 ms": fmt_ms(r["best_ms"]),
        }
        for bl in BASELINES:
            impl = r[f"{bl.name}_impl"] or "-"
            model = r[f"{bl.name}_model"]
            if bl.name != "attention_eager":
                rec[bl.label] = impl + (f" ({model})" if model else "")
            rec[f"{bl.column} ms"] = _base_cell(r, bl.name)
            rec[f"x vs {bl.column}"] = fmt_speedup(r[f"{bl.name}_speedup"])
        out.append(rec)
    return pd.DataFrame(out)


def headline_sentence(table: pd.DataFrame, where: dict) -> str:
    """'At 328 s of audio, batch 1, bfloat16, A-RWKV-B: best Bi-WKV7 ... X ms, AST attention ... Y ms: Zx faster.'"""
    r = an.headline_row(table)
    if r is None:
        return "No Bi-WKV7 cells in this run: no headline."
    ctx = ", ".join(
        v
        for v in (
            f"batch {where.get('batch')}" if "batch" in where else "",
            where.get("dtype", ""),
            where.get("device", ""),
            an.MODE_LABEL.get(where.get("mode", ""), where.get("mode", "")),
        )
        if v
    )
    head = f"At {fmt_seconds(r['seconds'])} of audio ({ctx}), {r['model']}: "
    if pd.isna(r["best_ms"]):
        return head + f"no Bi-WKV7 implementation was ok ({STATUS_LABEL.get(r['best_status'], r['best_status'])})."
    parts = [f"best Bi-WKV7 ({r['best_impl']}) {fmt_ms(r['best_ms'])} ms"]
    for bl in BASELINES:
        impl, model = r[f"{bl.name}_impl"], r[f"{bl.name}_model"]
        if not impl:
            continue
        who = f"{bl.short} ({impl}{', ' + model if model else ''})"
        ms = r[f"{bl.name}_ms"]
        if pd.isna(ms):
            parts.append(f"{who} {STATUS_LABEL.get(r[f'{bl.name}_status'], r[f'{bl.name}_status'])}")
            continue
        s = r[f"{bl.name}_speedup"]
        verdict = "faster" if s >= 1 else "(Bi-WKV7 slower)"
        parts.append(f"{who} {fmt_ms(ms)} ms: {fmt_speedup(s)} {verdict}")
    return head + "; ".join(parts) + "."


# ----------------------------------------------------------------------------- table formatting
def _fmt_col(name: str, v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, str):
        return v
    if name.endswith("_ms"):
        return fmt_ms(v)
    if name.startswith("speedup") or name.endswith("_speedup"):
        return fmt_speedup(v)
    if name in ("rel_err", "max_abs_err", "tol", "err") or "rel_err" in name:
        return fmt_sci(v)
    if name in ("tokens_per_s", "audio_s_per_s", "flops", "bytes_moved"):
        return fmt_rate(v)
    if name == "peak_mem_bytes":
        return fmt_bytes(v)
    if name == "bw_frac":
        return f"{v:.1%}"
    if name in ("seconds", "base_seconds", "target_s"):
        return f"{v:g}"
    if isinstance(v, float):
        return f"{v:.0f}" if v == round(v) and abs(v) < 1e15 else f"{v:.4g}"
    return str(v)


def format_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every cell as display text (units by column name), NaN as '-'."""
    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        out[col] = [_fmt_col(col, v) for v in df[col].tolist()]
    return out


def verification_display(v: pd.DataFrame) -> pd.DataFrame:
    shown = format_table(v.drop(columns="cv_median"))
    shown["timing CV (median)"] = [f"{c:.1%}" if pd.notna(c) else "-" for c in v["cv_median"]]
    return shown.rename(
        columns={"max_rel_err_ok": "worst rel. err (ok)", "max_rel_err_all": "worst (all)", "tol": "bar"}
    )


# ----------------------------------------------------------------------------- HTML
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:0.82em;margin:0.6em 0}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}
.t{text-align:left}
.headline{font-size:1.08em;background:#f6f8fa;border-left:4px solid #0072B2;padding:0.6em 1em}
.caption{font-size:0.9em;color:#444}img{max-width:100%;height:auto;border:1px solid #eee}
.st-ok{color:#117733}.st-bad{color:#B2182B;font-weight:600}details{margin:0.4em 0 1.2em}
.scroll{max-height:420px;overflow:auto}
"""


def _html_table(df: pd.DataFrame, status_col: str | None = "status") -> str:
    if df.empty:
        return "<p><em>(empty)</em></p>"
    num = {c: _numeric_column(df[c]) for c in df.columns}
    head = "".join(f"<th{'' if num[c] else ' class=t'}>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for _, r in df.iterrows():
        cells = []
        for c in df.columns:
            text = html.escape(str(r[c]))
            if c == status_col and text != "ok":
                text = f'<span class="st-bad">{text}</span>'
            cells.append(f"<td{'' if num[c] else ' class=t'}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(rep: Report) -> str:
    env_rows = pd.DataFrame(rep.env.rows(), columns=["", "value"])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(rep.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(rep.title)}</h1>",
        f"<p>Run directory: <code>{html.escape(rep.run_dir)}</code>. {html.escape(_counts_line(rep.counts))}</p>",
        f'<p class="headline">{html.escape(headline_sentence(rep.headline, rep.where))}</p>',
        "<h2>Headline</h2>",
        f"<p class='caption'>{html.escape(_headline_caption(rep.where))}</p>",
        _html_table(headline_display(rep.headline), status_col=None),
        "<h2>Environment</h2>",
        _html_table(env_rows, status_col=None),
        "<h2>Verification</h2>",
        "<p class='caption'>Cells per implementation and dtype by status, the worst relative L2 error against "
        "the float64 reference (docs/spec.md section 5), and the median coefficient of variation of the timing "
        "samples of the ok cells (a few percent on a quiet GPU; tens of percent mean a noisy machine). Only ok "
        "cells are timed into speed-ups.</p>",
        _html_table(verification_display(rep.verification), status_col=None),
        f"<h2>Cells that are not ok ({len(rep.not_ok)})</h2>",
        f"<div class='scroll'>{_html_table(format_table(rep.not_ok))}</div>",
    ]
    for plot in rep.plots:
        png = next((p for p in plot.files if p.suffix == ".png"), None)
        parts.append(f"<h2 id='{plot.name}'>{html.escape(plot.title)}</h2>")
        if png is not None:
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            parts.append(f'<img alt="{html.escape(plot.title)}" src="data:image/png;base64,{data}">')
        parts.append(f"<p class='caption'>{html.escape(plot.caption)}</p>")
        parts.append(
            f"<details><summary>Table: what this figure shows ({len(plot.table)} rows)</summary>"
            f"<div class='scroll'>{_html_table(format_table(plot.table))}</div></details>"
        )
    parts.append(f"<p class='caption'>{html.escape(rep.env.footer())}. Generated by wkvbench report.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _counts_line(counts: dict) -> str:
    if not counts:
        return ""
    total = sum(counts.values())
    return f"{total} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + "."


def _headline_caption(where: dict) -> str:
    sl = an.slice_label(where) or "all cells"
    return (
        f"Slice: {sl}. Per duration: the fastest ok Bi-WKV7 implementation, and each baseline at the same "
        "seconds of audio and model size, with the speed-up (baseline ms / Bi-WKV7 ms). A status (OOM, failed, "
        "...) stands where a side had no valid timing; '-' where it was not measured."
    )


# ----------------------------------------------------------------------------- Markdown
def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numeric_column(values: pd.Series) -> bool:
    """Whether a column of display text holds numbers (with units like 'x', ' s', ' GiB'): right-aligned."""
    vals = [str(v).replace(",", "").removesuffix(" GiB").removesuffix(" MiB").rstrip("xs% ") for v in values]
    vals = [v for v in vals if v not in ("-", "")]
    return bool(vals) and all(_is_number(v) for v in vals)


def md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(empty)_\n"

    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    align = ["---:" if _numeric_column(df[c]) else "---" for c in df.columns]
    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def render_md(rep: Report, fig_dir: str = "figures") -> str:
    out = [
        f"# {rep.title}",
        "",
        f"**{headline_sentence(rep.headline, rep.where)}**",
        "",
        f"{_counts_line(rep.counts)} Full report with the tables behind every figure: `report.html`.",
        "",
        "## Headline",
        "",
        _headline_caption(rep.where),
        "",
        md_table(headline_display(rep.headline)),
        "## Environment",
        "",
        md_table(pd.DataFrame(rep.env.rows(), columns=["", "value"])),
        "## Verification",
        "",
        md_table(verification_display(rep.verification)),
    ]
    if not rep.not_ok.empty:
        counts = rep.not_ok.groupby(["op", "impl", "status"]).size().reset_index(name="cells")
        out += [
            f"{len(rep.not_ok)} cells are not ok (each listed with its reason in `report.html`):",
            "",
            md_table(counts),
        ]
    out += ["## Figures", ""]
    for plot in rep.plots:
        links = " · ".join(f"[{p.suffix[1:].upper()}]({fig_dir}/{p.name})" for p in plot.files)
        png = next((p for p in plot.files if p.suffix == ".png"), None)
        out += [f"### {plot.title}", ""]
        if png is not None:
            out += [f"![{plot.title}]({fig_dir}/{png.name})", ""]
        out += [plot.caption, "", links, ""]
    out += ["---", f"_{rep.env.footer()}_", ""]
    return "\n".join(out)


def write(rep: Report, out_dir: Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    html_path.write_text(render_html(rep), encoding="utf-8")
    md_path.write_text(render_md(rep), encoding="utf-8")
    return html_path, md_path
