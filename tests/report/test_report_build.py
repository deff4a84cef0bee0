"""``wkvbench report``: every figure and both reports from a synthetic run with every status."""

import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pandas as pd
import pytest

from wkvbench import cli, schema
from wkvbench.report import analysis as an
from wkvbench.report import figures
from wkvbench.report.load import load_run, parse_env, tidy
from wkvbench.report.render import Report, render_html, render_md
from wkvbench.report.style import fmt_ms, fmt_speedup

FIGURE_NAMES = [name for name, _ in (*figures.FIGURES, *figures.NETWORK_FIGURES)]


@pytest.fixture(scope="module")
def built(tmp_path_factory, make_run):
    run = tmp_path_factory.mktemp("run")
    df = make_run(run, dtypes=("bfloat16",))
    out = tmp_path_factory.mktemp("out")
    assert cli.main(["report", str(run), "-o", str(out)]) == 0
    return run, out, df


def test_every_figure_exists_as_png_svg_and_csv(built):
    _, out, _ = built
    assert len(FIGURE_NAMES) == 14  # 10 kernel figures (fig3 twice, fig9 gradients, fig13 training memory) + 3 network
    for name in FIGURE_NAMES:
        png, svg, csv = (out / "figures" / f"{name}.{ext}" for ext in ("png", "svg", "csv"))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        root = ET.parse(svg).getroot()
        assert root.tag.endswith("svg"), name
        # the footer (device, driver, commit, date) is on every figure
        text = svg.read_text()
        for part in ("SYNTHETIC-GPU", "driver 000.00", "commit 0123456789", "2025-01-02"):
            assert part in text, (name, part)
        assert csv.stat().st_size > 0


def _expected_headline(df):
    """The 328 s headline read straight from the written table, without the report code."""
    sel = df[(df["dtype"] == "bfloat16") & (df["batch"] == 1) & (df["seconds"] == 328.0)]
    wkv = sel[(sel["op"] == "bi_wkv7") & (sel["model"] == "A-RWKV-B") & (sel["status"] == "ok")]
    best = wkv.loc[pd.to_numeric(wkv["median_ms"]).idxmin()]
    att = sel[(sel["op"] == "attention") & (sel["impl"].str.startswith("sdpa_")) & (sel["status"] == "ok")]
    sdpa = att.loc[pd.to_numeric(att["median_ms"]).idxmin()]
    # AST's eager attention is the float16 cell (as run), whatever the headline's dtype
    at = df[(df["batch"] == 1) & (df["seconds"] == 328.0) & (df["op"] == "attention") & (df["dtype"] == "float16")]
    eager = at[at["impl"] == "torch_eager"].iloc[0]
    return best, sdpa, eager


def test_headline_numbers_equal_the_table(built):
    _, out, df = built
    best, sdpa, eager = _expected_headline(df)
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    speedup = float(sdpa["median_ms"]) / float(best["median_ms"])
    sentence = (
        f"At 328 s of audio (batch 1, bfloat16, cuda, inference (fwd)), A-RWKV-B: best Bi-WKV7 ({best['impl']}) "
        f"{fmt_ms(best['median_ms'])} ms; AST attention (torch_eager, AST-B) OOM; best SDPA attention "
        f"({sdpa['impl']}, AST-B) {fmt_ms(sdpa['median_ms'])} ms: {fmt_speedup(speedup)} faster"
    )
    assert eager["status"] == "oom"
    assert sentence in md and sentence in html
    # the headline table's 328 s row: best impl, its ms, eager OOM, SDPA ms and speed-up
    row = next(line for line in md.splitlines() if line.startswith("| 328 s |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "16,400" and cells[2] == best["impl"] and cells[3] == fmt_ms(best["median_ms"])
    assert cells[4] == "OOM" and cells[5] == "-"
    assert cells[7] == fmt_ms(sdpa["median_ms"]) and cells[8] == fmt_speedup(speedup)
    # the numbers themselves, independently formatted
    assert abs(float(cells[3].replace(",", "")) - float(best["median_ms"])) / float(best["median_ms"]) < 5e-3


def test_html_is_self_contained_and_lists_every_not_ok_cell(built):
    _, out, df = built
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURE_NAMES)
    assert not re.search(r"(src|href)=[\"']?(https?:|//)", html)
    assert "<script" not in html and "<link" not in html
    n_bad = int((df["status"] != "ok").sum())
    assert f"Cells that are not ok ({n_bad})" in html
    for status in ("wrong", "failed", "oom", "timeout", "skipped"):
        assert f'<span class="st-bad">{status}</span>' in html
    md = (out / "report.md").read_text()
    for name in FIGURE_NAMES:
        assert f"](figures/{name}.png)" in md and f"](figures/{name}.svg)" in md


def test_figure_tables_keep_non_ok_cells_and_never_speed_up_from_them(built):
    _, out, df = built
    lat = pd.read_csv(out / "figures" / "fig1_latency.csv")
    assert len(lat) == len(df) and set(lat["status"]) == set(df["status"])
    sp = pd.read_csv(out / "figures" / "fig3_speedup_audio.csv")
    bad = (sp["status"] != "ok") | (sp["base_status"] != "ok")
    assert bad.any() and sp.loc[bad, "speedup"].isna().all()
    slopes = lat.dropna(subset=["slope"])
    eager = slopes[(slopes["impl"] == "torch_eager")]["slope"].iloc[0]
    triton = slopes[(slopes["impl"] == "triton_chunked") & (slopes["size"] == "B")]["slope"].iloc[0]
    assert eager > 1.2 > triton  # the quadratic term shows at the longest sequences


def test_cpu_run_figures_say_what_was_not_measured():
    rows = pd.DataFrame(
        [{"op": op, "impl": "torch_chunked", "model": m, "batch": 1, "tokens": t, "status": "ok", "median_ms": t / 100,
          "p20_ms": t / 110, "p80_ms": t / 90, "dtype": "float32", "device": "cpu", "rel_err": 1e-7}
         for op, m in (("bi_wkv7", "A-RWKV-T"), ("bi_selective_scan", "AuM-T")) for t in (128, 512)]
    )  # fmt: skip
    df = tidy(rows)
    env = parse_env({"gpu": None, "cpu": "some CPU"})
    mem = figures.fig_memory(df, env)
    texts = [t.get_text() for ax in mem.figure.axes for t in ax.texts]
    assert any("not measured" in t for t in texts)
    bw = figures.fig_bandwidth(df, env)
    assert any("no bandwidth" in t.get_text() for ax in bw.figure.axes for t in ax.texts)
    sp = figures.fig_speedup(df, env, "audio")  # no attention: only the scan column
    assert math.isfinite(an.speedups(df, "audio")["speedup"].iloc[0])
    assert len([ax for ax in sp.figure.axes if ax.axison]) == 1


def test_report_of_a_missing_run_exits_2(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nope")]) == 2
    assert "results.csv" in capsys.readouterr().err


def test_loaded_synthetic_run_round_trips(built):
    run, _, df = built
    assert len(load_run(run).results) == len(df)


def test_per_row_speedup_columns_are_never_read(tmp_path, make_run):
    # runs from now on write neither column; older ones have them, whatever they hold
    small = {"dtypes": ("bfloat16",), "seconds": (10.24, 60.0)}
    plain, junk = tmp_path / "plain", tmp_path / "junk"
    make_run(plain, **small)
    make_run(junk, **small)
    raw = pd.read_csv(plain / schema.RESULTS_FILE, dtype=str, keep_default_na=False)
    raw.drop(columns=["speedup", "baseline_impl"], errors="ignore").to_csv(plain / schema.RESULTS_FILE, index=False)
    raw.assign(speedup="not a number", baseline_impl="sdpa_math").to_csv(junk / schema.RESULTS_FILE, index=False)
    a, b = load_run(plain).results, load_run(junk).results
    assert not {"speedup", "baseline_impl"} & (set(a.columns) | set(b.columns))
    pd.testing.assert_frame_equal(a, b)
    for view in ("audio", "tokens"):
        pd.testing.assert_frame_equal(an.speedups(a, view), an.speedups(b, view))
    out = tmp_path / "out"
    assert cli.main(["report", str(plain), "-o", str(out), "--no-svg"]) == 0
    sp = pd.read_csv(out / "figures" / "fig3_speedup_audio.csv")
    assert sp["speedup"].notna().any() and "A-RWKV-B" in (out / "report.md").read_text()


#: The section headings of the synthetic run's reports, pinned before the renderers moved to templates.
FIGURE_HEADINGS = [
    "Latency vs tokens (log-log)",
    "Throughput vs sequence length",
    "Speed-up of Bi-WKV7 over attention and the Mamba scan (equal audio)",
    "Speed-up of Bi-WKV7 over attention and the Mamba scan (equal tokens)",
    "Throughput vs model size at fixed audio durations",
    "Peak memory vs sequence length",
    "Accuracy: relative L2 error vs the float64 reference",
    "Achieved bandwidth as a fraction of measured copy bandwidth",
    "First call in the worker (compile/load where `compiled`) per implementation",
    "Training accuracy: worst gradient's relative L2 error vs float64 autograd",
    "Bi-WKV7 training memory vs sequence length",
    "Whole networks: throughput vs duration",
    "Whole networks: speed-up of A-RWKV over AST-B and AuM (equal audio)",
    "Whole networks: throughput vs parameter count",
]
HTML_HEADINGS = [
    ("h1", "wkvbench report: synthetic"),
    ("h2", "Headline"),
    ("h2", "Environment"),
    ("h2", "Verification"),
    ("h2", "Cells that are not ok (15)"),
    *(("h2", t) for t in FIGURE_HEADINGS),
]
MD_HEADINGS = [
    ("h1", "wkvbench report: synthetic"),
    ("h2", "Headline"),
    ("h2", "Environment"),
    ("h2", "Verification"),
    ("h2", "Figures"),
    *(("h3", t) for t in FIGURE_HEADINGS),
]


class _Headings(HTMLParser):
    """(tag, text) of every h1/h2/h3 of an HTML document, in order, whitespace collapsed."""

    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._open: list | None = None

    def handle_starttag(self, tag, attrs):
        if tag in ("h1", "h2", "h3"):
            self._open = [tag, ""]

    def handle_data(self, data):
        if self._open is not None:
            self._open[1] += data

    def handle_endtag(self, tag):
        if self._open is not None and tag == self._open[0]:
            self.found.append((tag, " ".join(self._open[1].split())))
            self._open = None


def _html_headings(text: str) -> list[tuple[str, str]]:
    parser = _Headings()
    parser.feed(text)
    return parser.found


def _md_headings(text: str) -> list[tuple[str, str]]:
    return [(f"h{len(m[1])}", m[2].strip()) for m in re.finditer(r"^(#{1,3}) (.+)$", text, re.MULTILINE)]


def test_reports_have_the_same_sections_in_the_same_order(built):
    _, out, df = built
    assert int((df["status"] != "ok").sum()) == 15
    assert _html_headings((out / "report.html").read_text(encoding="utf-8")) == HTML_HEADINGS
    assert _md_headings((out / "report.md").read_text(encoding="utf-8")) == MD_HEADINGS


def test_html_escapes_text_from_the_run():
    rows = pd.DataFrame(
        [{"op": "bi_wkv7", "impl": "torch_chunked", "model": "A-RWKV-T", "batch": 1, "tokens": 128, "status": "failed",
          "median_ms": "", "note": "<script>alert(1)</script>", "dtype": "float32", "device": "cpu"}]
    )  # fmt: skip
    df = tidy(rows)
    table, where = an.headline(df)
    rep = Report(
        title="<i>run</i> & co",
        run_dir="runs/a<b",
        env=parse_env({"cpu": "some CPU"}),
        headline=table,
        where=where,
        verification=an.verification(df),
        not_ok=an.not_ok(df),
        counts={"failed": 1},
    )
    html = render_html(rep)
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<h1>&lt;i&gt;run&lt;/i&gt; &amp; co</h1>" in html and "<code>runs/a&lt;b</code>" in html
    assert '<span class="st-bad">failed</span>' in html
    assert render_md(rep).startswith("# <i>run</i> & co\n")  # Markdown is text: not escaped


def test_the_templates_are_package_data():
    from pathlib import Path

    import wkvbench

    tomllib = pytest.importorskip("tomllib")
    pkg = Path(wkvbench.__file__).parent
    pyproject = pkg.parent / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("installed without its source tree")
    globs = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]["wkvbench"]
    shipped = {p for g in globs for p in pkg.glob(g)}
    templates = sorted((pkg / "report" / "templates").iterdir())
    assert {p.name for p in templates} >= {"report.html.j2", "report.md.j2"}
    assert set(templates) <= shipped
