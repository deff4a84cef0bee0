"""The GPU check cut off mid-stage: what it leaves, and that no process of it is left.

The one command on the GPU machine may be stopped at any point (``timeout -s INT``). Each case
runs the rehearsal's script with only the stages it needs (``GPU_CHECK_STAGES``), sends SIGINT
to it a few seconds into the stage, and checks that summary.md, verify.csv and run.tar.gz exist
and read, that stages.tsv says the stage was cut off, and that no process carrying the run's tag
(``WKVBENCH_GPU_CHECK_RUN``) survives. Slow (about a minute in all): run it in its own process.
"""

import csv
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _tagged(work: Path) -> list[int]:
    """Processes whose environment carries this run's tag."""
    want = f"WKVBENCH_GPU_CHECK_RUN={work}".encode()
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if want in (p / "environ").read_bytes().split(b"\0"):
                    pids.append(int(p.name))
            except OSError:
                continue
    return pids


def _cut(tmp_path: Path, stages: str, stage: str, delay: float):
    out, work = tmp_path / "out", tmp_path / "work"
    work.mkdir(exist_ok=True)
    env = {**os.environ, "REHEARSE": "1", "OUT": str(out), "WORK": str(work), "PYTHON": sys.executable,
           "GPU_CHECK_STAGES": stages}  # fmt: skip
    for k in ("TRITON_INTERPRET", "NUMBA_ENABLE_CUDASIM", "WKVBENCH_REF_CACHE"):
        env.pop(k, None)
    proc = subprocess.Popen(["bash", str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = threading.Event()
    err: list[str] = []

    def read():
        for line in proc.stderr:
            err.append(line)
            if line.startswith(f"== {stage} "):
                started.set()

    threading.Thread(target=read, daemon=True).start()
    assert started.wait(120), "".join(err)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=90)
    stdout = proc.stdout.read()
    time.sleep(0.5)
    return out, work, proc.returncode, stdout + "".join(err)


def _check_left(out: Path, work: Path, stage: str, rc: int, log: str):
    assert rc != 0, log[-2000:]
    text = (out / "summary.md").read_text()
    assert text.startswith("# wkvbench GPU check"), text
    with open(out / "verify.csv", newline="") as fh:
        r = csv.reader(fh)
        assert next(r)[:2] == ["op", "impl"]
        list(r)
    with tarfile.open(out / "run.tar.gz") as tar:
        assert "./stages.tsv" in tar.getnames()
    last = (work / "stages.tsv").read_text().splitlines()[-1].split("\t")
    assert last[0] == stage and last[3] == "cut off", last
    assert _tagged(work) == [], log[-2000:]


def test_cut_off_during_verify(tmp_path):
    out, work, rc, log = _cut(tmp_path, "verify", "verify", 6)
    _check_left(out, work, "verify", rc, log)


def test_cut_off_during_the_suite(tmp_path):
    out, work, rc, log = _cut(tmp_path, "suite", "suite", 10)
    _check_left(out, work, "suite", rc, log)
    assert "Stages" in (out / "summary.md").read_text()


def test_cut_off_during_the_report(tmp_path):
    work = tmp_path / "work"
    run = [sys.executable, "-m", "wkvbench.cli", "run", "--op", "bi_wkv7", "--impl", "torch_chunked", "--model",
           "A-RWKV-T", "--tokens", "8", "--batch", "1", "--device", "cpu", "--budget-s", "0.01", "--out",
           str(work / "run"), "--no-progress"]  # fmt: skip
    subprocess.run(run, check=True, capture_output=True, timeout=300)
    out, work, rc, log = _cut(tmp_path, "report", "report", 3)
    _check_left(out, work, "report", rc, log)
