"""One report from one run directory: ``OUT_DIR/figures/fig*.{png,svg,csv}``, ``report.html``
and ``report.md`` (the command is :mod:`wkvbench.report.cli`; docs/notes/report.md).
"""

from __future__ import annotations

from pathlib import Path

from wkvbench.report import analysis as an
from wkvbench.report.load import load_run
from wkvbench.report.render import Report, write


def build_report(run_dir, out_dir=None, title: str | None = None, formats=("png", "svg")) -> Report:
    """Load ``run_dir``, draw every figure and write both reports into ``out_dir``; returns the Report."""
    from wkvbench.report.figures import draw_all  # matplotlib only when a report is drawn
    from wkvbench.report.figures.measurement import measurement_plots

    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    df = run.results
    table, where = an.headline(df)
    net_table, net_where = an.network_headline(df)
    counts = {s: int((df["status"] == s).sum()) for s in ("ok", "wrong", "failed", "oom", "timeout", "skipped")}
    rep = Report(
        title=title or f"wkvbench report: {run.env.suite or run.path.resolve().name}",
        run_dir=str(run.path),
        env=run.env,
        headline=table,
        where=where,
        verification=an.verification(df),
        not_ok=an.not_ok(df),
        counts=counts,
        network_headline=net_table,
        network_where=net_where,
    )
    rep.plots = draw_all(df, run.env, out / "figures", formats=formats)
    # roofline, kernels, quality; network rows named by network ("A-RWKV-T (torch_chunked)")
    rep.plots += measurement_plots(run.path, an.named(df), run.env, out / "figures", formats)
    write(rep, out)
    return rep
