"""``wkvbench history add|show|report|check`` end to end: a real tiny CPU run, synthetic histories."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser

import pytest

from wkvbench import cli


def hist(*argv) -> int:
    return cli.main(["history", *map(str, argv)])


def test_real_cpu_run_add_show_report(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["run", "--device", "cpu", "--op", "bi_wkv7", "--impl", "torch_chunked", "--model", "A-RWKV-T",
            "--tokens", "16", "--budget-s", "0.05", "--warmup-s", "0", "--rounds", "1", "--min-samples", "8",
            "--max-samples", "12", "--out", str(run), "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    db = tmp_path / "h.sqlite"
    assert hist("add", run, "--db", db, "--commit", "feedc0de") == 0
    assert "added" in capsys.readouterr().out
    assert hist("add", run, "--db", db, "--commit", "feedc0de") == 0
    out = capsys.readouterr().out
    assert "already stored" in out and "1 runs, 1 cells" in out
    assert hist("show", "--db", db, "--impl", "torch_chunked", "--tokens", "16") == 0
    out = capsys.readouterr().out
    assert "impl=torch_chunked" in out and "feedc0de" in out and " ok " in out
    assert hist("show", "--db", db, "--impl", "nothing") == 0
    assert "no stored cell" in capsys.readouterr().out
    assert hist("report", "--db", db, "-o", tmp_path / "dash") == 0
    assert (tmp_path / "dash" / "index.html").is_file()


def _history(make_run, n=12, step_at=None, factor=1.2, env_change_at=None, broken_at=None):
    """Runs of commits 0..n-1 (two cells); returns their run directories."""
    runs = []
    for i in range(n):
        slow = factor if step_at is not None and i >= step_at else 1.0
        env_new = env_change_at is not None and i >= env_change_at
        cells = {("a", 16): 1.0 * slow, ("b", 16): 3.0}
        if broken_at is not None and i >= broken_at:
            cells[("b", 16)] = (None, "failed")
        kw = {"driver": "570.00"} if env_new else {}
        runs.append(make_run(f"r{i}", f"{i:04d}" + "cd" * 18, i, cells, seed=i, **kw))
    return runs


def test_check_exit_codes(make_run, tmp_path, capsys):
    db = tmp_path / "h.sqlite"
    runs = _history(make_run, step_at=10, broken_at=11)
    assert hist("add", *runs, "--db", db) == 0
    c = [f"{i:04d}" + "cd" * 18 for i in range(12)]
    capsys.readouterr()
    assert hist("check", "--db", db, "--base", c[3][:6], "--head", c[5][:8]) == 0
    assert "no regression" in capsys.readouterr().out
    assert hist("check", "--db", db, "--base", c[9], "--head", c[10]) == 1
    out = capsys.readouterr().out
    assert "SLOWER" in out and " a " in out and "REGRESSION" in out
    assert hist("check", "--db", db, "--base", c[10], "--head", c[11]) == 1
    assert "ok -> failed" in capsys.readouterr().out
    assert hist("check", "--db", db, "--base", c[10], "--head", c[3]) == 0  # a is faster at head: no regression
    assert "FASTER" in capsys.readouterr().out
    assert hist("check", "--db", db, "--base", "zzzz", "--head", c[1]) == 2
    assert "--base" in capsys.readouterr().err
    assert hist("check", "--db", db, "--base", c[1], "--head", c[1]) == 2
    assert hist("check", "--db", tmp_path / "none.sqlite", "--base", c[1], "--head", c[2]) == 2


def test_dirty_run_is_flagged(make_run, tmp_path, capsys):
    run = make_run("r", "ab" * 20, 1, {("a", 16): 1.0}, dirty=True)
    assert hist("add", run, "--db", tmp_path / "h.sqlite") == 0
    assert "uncommitted changes" in capsys.readouterr().out
    assert hist("show", "--db", tmp_path / "h.sqlite") == 0
    assert "abababab+" in capsys.readouterr().out


def test_check_never_compares_across_environments(make_run, tmp_path, capsys):
    db = tmp_path / "h.sqlite"
    runs = _history(make_run, n=4, step_at=2, factor=1.5, env_change_at=2)
    hist("add", *runs, "--db", db)
    capsys.readouterr()
    c = [f"{i:04d}" + "cd" * 18 for i in range(4)]
    assert hist("check", "--db", db, "--base", c[1], "--head", c[2]) == 2
    captured = capsys.readouterr()
    assert "share no environment" in captured.err and "not compared" in captured.out


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def find(self, tag, cls=None):
        return [a for t, a in self.tags if t == tag and (cls is None or cls in (a.get("class") or "").split())]


def test_dashboard_steps_boundaries_links(make_run, tmp_path, capsys):
    db = tmp_path / "h.sqlite"
    runs = _history(make_run, n=24, step_at=8, env_change_at=16)
    report = runs[3] / "report" / "report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html>run report</html>")
    assert hist("add", *runs, "--db", db) == 0
    later = runs[5] / "report" / "report.html"  # a report built after the run was added
    later.parent.mkdir(parents=True)
    later.write_text("<html>run report</html>")
    assert hist("show", "--db", db, "--impl", "a") == 0
    out = capsys.readouterr().out
    assert re.search(r"regression \+(19|20|21)\.\d% \(0007cdcdcd\.\.0008cdcdcd\)", out), out[-2000:]
    assert "(new env)" in out
    out_dir = tmp_path / "dash"
    assert hist("report", "--db", db, "-o", out_dir) == 0
    html = (out_dir / "index.html").read_text()
    page = _Page()
    page.feed(html)
    assert len(page.find("figure", "family")) == 1  # impls a and b differ only in impl: one family
    assert len(page.find("svg")) == 1
    steps = page.find("line", "step")
    assert len(steps) == 1 and "regression" in steps[0]["class"]
    assert "0007cdcdcd..0008cdcdcd" in html  # the commit range of the step
    assert len(page.find("line", "env-boundary")) == 1
    links = {a["href"] for a in page.find("a")}
    assert os.path.relpath(report, out_dir) in links and os.path.relpath(later, out_dir) in links
    assert len(links) == 2  # no link to a report that does not exist
    assert (out_dir / os.path.relpath(report, out_dir)).resolve() == report.resolve()
    # self-contained: nothing to load at view time
    assert not page.find("script") and not page.find("link") and not page.find("img")
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in html
    assert len(page.find("tr")) > 24  # the runs table lists every run


@pytest.mark.parametrize("argv", [["history"], ["history", "add"], ["history", "check", "--base", "x"]])
def test_usage_errors(argv):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
