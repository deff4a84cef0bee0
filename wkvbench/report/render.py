"""Writing the report: ``report.html`` (one self-contained file) and ``report.md`` (for GitHub).

This module formats the numbers as display text; the markup is in the jinja2 templates under
``templates/`` (package data; the HTML one autoescaped). What each file holds: docs/notes/report.md.
"""

from __future__ import annotations

import base64
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd

from wkvbench.presets import network_label
from wkvbench.report import analysis as an
from wkvbench.report.baselines import BASELINES, SUBJECT_OP
from wkvbench.report.load import Env
from wkvbench.report.style import (
    STATUS_LABEL,
    fmt_bytes,
    fmt_ms,
    fmt_rate,
    fmt_sci,
    fmt_seconds,
    fmt_speedup,
    op_label,
)

#: The measured op's label in the headline (its op record's: ``Bi-WKV7``).
SUBJECT = op_label(SUBJECT_OP)


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
    # whole networks (op ``network``): analysis.network_headline's table and slice; empty without networks
    network_headline: pd.DataFrame = field(default_factory=pd.DataFrame)
    network_where: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- headline
def _base_cell(row, name: str) -> str:
    """A baseline's ms, or its status when it has no valid timing, or '-' when it was not measured."""
    ms = row[f"{name}_ms"]
    if pd.notna(ms):
        return fmt_ms(ms)
    status = row[f"{name}_status"]
    return STATUS_LABEL.get(status, status) if status else "-"


def _net(model, impl) -> str:
    """A network's name in the headline: ``"AST-B (sdpa_flash)"``, or '-' where there is none."""
    return network_label(model, impl) if model and impl else "-"


def network_headline_display(table: pd.DataFrame) -> pd.DataFrame:
    """The whole-network headline as strings, one row per duration, every network named by network
    and mixer ("A-RWKV-B (triton_chunked)", "AST-B (sdpa_flash)")."""
    out = []
    for _, r in table.iterrows():
        ok = pd.notna(r["best_ms"])
        rec = {
            "audio": fmt_seconds(r["seconds"]),
            f"{r['model']} tokens": f"{int(r['tokens']):,}",
            "A-RWKV network": _net(r["model"], r["best_impl"])
            if ok
            else f"none ok ({STATUS_LABEL.get(r['best_status'], r['best_status'])})",
            "ms": fmt_ms(r["best_ms"]),
        }
        for bl in BASELINES:
            rec[f"vs {bl.column}"] = _net(r[f"{bl.name}_model"], r[f"{bl.name}_impl"])
            rec[f"{bl.column} ms"] = _base_cell(r, bl.name)
            rec[f"x vs {bl.column}"] = fmt_speedup(r[f"{bl.name}_speedup"])
        out.append(rec)
    return pd.DataFrame(out)


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
            f"best {SUBJECT}": best,
            f"{SUBJECT} ms": fmt_ms(r["best_ms"]),
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


def _context(where: dict) -> str:
    return ", ".join(
        v
        for v in (
            f"batch {where.get('batch')}" if "batch" in where else "",
            where.get("dtype", "") + (" autocast" if where.get("precision") == "autocast" else ""),
            where.get("device", ""),
            an.MODE_LABEL.get(where.get("mode", ""), where.get("mode", "")),
            f"checkpoint={where['checkpoint']}" if where.get("checkpoint", "none") != "none" else "",
        )
        if v
    )


def headline_sentence(table: pd.DataFrame, where: dict) -> str:
    """'At 328 s of audio, batch 1, bfloat16, A-RWKV-B: best Bi-WKV7 ... X ms, AST attention ... Y ms: Zx faster.'"""
    r = an.headline_row(table)
    if r is None:
        return f"No {SUBJECT} cells in this run: no headline."
    head = f"At {fmt_seconds(r['seconds'])} of audio ({_context(where)}), {r['model']}: "
    if pd.isna(r["best_ms"]):
        return head + f"no {SUBJECT} implementation was ok ({STATUS_LABEL.get(r['best_status'], r['best_status'])})."
    parts = [f"best {SUBJECT} ({r['best_impl']}) {fmt_ms(r['best_ms'])} ms"]
    parts += _baseline_parts(r, lambda bl, impl, model: f"{bl.short} ({impl}{', ' + model if model else ''})", SUBJECT)
    return head + "; ".join(parts) + "."


def _baseline_parts(r: pd.Series, who, slower: str) -> list[str]:
    """One clause per baseline of a headline row: '<who> Y ms: Zx faster', or '<who> <status>' where it
    had no valid timing. ``who(baseline, impl, model)`` names the baseline's side."""
    parts = []
    for bl in BASELINES:
        impl, model = r[f"{bl.name}_impl"], r[f"{bl.name}_model"]
        if not impl:
            continue
        name, ms = who(bl, impl, model), r[f"{bl.name}_ms"]
        if pd.isna(ms):
            parts.append(f"{name} {STATUS_LABEL.get(r[f'{bl.name}_status'], r[f'{bl.name}_status'])}")
            continue
        s = r[f"{bl.name}_speedup"]
        verdict = "faster" if s >= 1 else f"({slower} slower)"
        parts.append(f"{name} {fmt_ms(ms)} ms: {fmt_speedup(s)} {verdict}")
    return parts


def network_sentence(table: pd.DataFrame, where: dict) -> str:
    """'Whole networks at 327.68 s of audio (...): A-RWKV-B (triton_chunked) X ms; AST-B (sdpa_flash) Y ms:
    Zx faster; ...' -- each side named by network and mixer; '' when the run has no network rows."""
    r = an.headline_row(table)
    if r is None:
        return ""
    head = f"Whole networks at {fmt_seconds(r['seconds'])} of audio ({_context(where)}): "
    if pd.isna(r["best_ms"]):
        return head + f"no {r['model']} network was ok ({STATUS_LABEL.get(r['best_status'], r['best_status'])})."
    parts = [f"{_net(r['model'], r['best_impl'])} {fmt_ms(r['best_ms'])} ms"]

    def who(bl, impl, model):
        return _net(model, impl) + (f" in {bl.dtype}" if bl.dtype and bl.dtype != where.get("dtype") else "")

    parts += _baseline_parts(r, who, r["model"])
    return head + "; ".join(parts) + "."


def sentences(rep: Report) -> str:
    """The report's bold line: the kernel headline, then the whole-network one; only the latter when the
    run has network rows and no Bi-WKV7 cells."""
    net = network_sentence(rep.network_headline, rep.network_where) if not rep.network_headline.empty else ""
    if net and rep.headline.empty:
        return net
    return " ".join(s for s in (headline_sentence(rep.headline, rep.where), net) if s)


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


# ----------------------------------------------------------------------------- templates
@functools.cache
def _templates() -> jinja2.Environment:
    """The report templates (package data under ``templates/``); HTML ones autoescaped."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("wkvbench.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


@dataclass(frozen=True)
class TableView:
    """A display table for the HTML template: (header, numeric) per column and (text, numeric, flagged) per cell."""

    columns: list[tuple[str, bool]]
    rows: list[list[tuple[str, bool, bool]]]
    empty: bool


def table_view(df: pd.DataFrame, status_col: str | None = "status") -> TableView:
    """``df`` (display text) for the template; cells of ``status_col`` other than ``ok`` are flagged."""
    num = {c: _numeric_column(df[c]) for c in df.columns}
    rows = [
        [(str(v), num[c], c == status_col and str(v) != "ok") for c, v in zip(df.columns, r, strict=True)]
        for r in df.itertuples(index=False)
    ]
    return TableView([(str(c), num[c]) for c in df.columns], rows, df.empty)


def _png(plot) -> Path | None:
    return next((p for p in plot.files if p.suffix == ".png"), None)


def _plot_view(plot, **fields) -> dict:
    """What a template shows of one figure: its name, title and caption, plus ``fields``."""
    return {"name": plot.name, "title": plot.title, "caption": plot.caption, **fields}


def render_html(rep: Report) -> str:
    plots = [
        _plot_view(
            plot,
            png_base64=None if png is None else base64.b64encode(png.read_bytes()).decode("ascii"),
            n_rows=len(plot.table),
            table=table_view(format_table(plot.table)),
        )
        for plot, png in ((p, _png(p)) for p in rep.plots)
    ]
    return (
        _templates()
        .get_template("report.html.j2")
        .render(
            title=rep.title,
            run_dir=rep.run_dir,
            counts_line=_counts_line(rep.counts),
            sentence=sentences(rep),
            headline_caption=_headline_caption(rep.where),
            headline=table_view(headline_display(rep.headline), status_col=None),
            network_caption=_network_caption(rep.network_where),
            network_headline=None
            if rep.network_headline.empty
            else table_view(network_headline_display(rep.network_headline), status_col=None),
            environment=table_view(pd.DataFrame(rep.env.rows(), columns=["", "value"]), status_col=None),
            verification=table_view(verification_display(rep.verification), status_col=None),
            n_not_ok=len(rep.not_ok),
            not_ok=table_view(format_table(rep.not_ok)),
            plots=plots,
            footer=rep.env.footer(),
        )
    )


def _counts_line(counts: dict) -> str:
    if not counts:
        return ""
    total = sum(counts.values())
    return f"{total} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + "."


def _headline_caption(where: dict) -> str:
    sl = an.slice_label(where) or "all cells"
    return (
        f"Slice: {sl}. Per duration: the fastest ok {SUBJECT} implementation, and each baseline at the same "
        f"seconds of audio and model size, with the speed-up (baseline ms / {SUBJECT} ms). A status (OOM, failed, "
        "...) stands where a side had no valid timing; '-' where it was not measured."
    )


def _network_caption(where: dict) -> str:
    sl = an.slice_label(where) or "all cells"
    return (
        f"Whole networks (op 'network'), slice: {sl}. Per duration: the A-RWKV network (A-RWKV-B if measured) "
        "with its fastest ok mixer, and the AST-B and AuM networks of the same size with each baseline's mixers "
        "at the same seconds of audio, each named by network and mixer, with the speed-up (baseline ms / "
        "A-RWKV ms). A status stands where a side had no valid timing; '-' where it was not measured."
    )


# ----------------------------------------------------------------------------- Markdown tables
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
    not_ok_counts = ""
    if not rep.not_ok.empty:
        not_ok_counts = md_table(rep.not_ok.groupby(["op", "impl", "status"]).size().reset_index(name="cells"))
    plots = [
        _plot_view(
            plot,
            png=None if _png(plot) is None else _png(plot).name,
            links=" · ".join(f"[{f.suffix[1:].upper()}]({fig_dir}/{f.name})" for f in plot.files),
        )
        for plot in rep.plots
    ]
    return (
        _templates()
        .get_template("report.md.j2")
        .render(
            title=rep.title,
            sentence=sentences(rep),
            counts_line=_counts_line(rep.counts),
            headline_caption=_headline_caption(rep.where),
            headline=md_table(headline_display(rep.headline)),
            network_caption=_network_caption(rep.network_where),
            network_headline=None
            if rep.network_headline.empty
            else md_table(network_headline_display(rep.network_headline)),
            environment=md_table(pd.DataFrame(rep.env.rows(), columns=["", "value"])),
            verification=md_table(verification_display(rep.verification)),
            n_not_ok=len(rep.not_ok),
            not_ok_counts=not_ok_counts,
            plots=plots,
            fig_dir=fig_dir,
            footer=rep.env.footer(),
        )
    )


def write(rep: Report, out_dir: Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    html_path.write_text(render_html(rep), encoding="utf-8")
    md_path.write_text(render_md(rep), encoding="utf-8")
    return html_path, md_path
