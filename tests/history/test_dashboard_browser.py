"""The dashboard in a headless browser (skipped where no Chromium is installed)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from wkvbench import cli

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium here")
def test_dashboard_renders_in_chromium(make_run, tmp_path):
    runs = [make_run(f"r{i}", f"{i:04d}" + "ef" * 18, i, {("a", 16): 1.0 if i < 6 else 1.3}, seed=i) for i in range(10)]
    db = tmp_path / "h.sqlite"
    assert cli.main(["history", "add", *map(str, runs), "--db", str(db)]) == 0
    assert cli.main(["history", "report", "--db", str(db), "-o", str(tmp_path / "dash")]) == 0
    shot = tmp_path / "shot.png"
    page = (tmp_path / "dash" / "index.html").as_uri()
    base = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,700"]
    dom = subprocess.run([*base, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=True).stdout
    assert dom.count("<svg") == 1 and 'class="step regression"' in dom and "Detected steps (1)" in dom
    subprocess.run([*base, f"--screenshot={shot}", page], capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 10_000
