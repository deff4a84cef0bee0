"""Fault drill: small pooled runs killed at random moments, then ``--resume``; every planned cell
must end up in results.csv exactly once, with a row that parses.

Each round starts ``wkvbench run`` (CPU, 2 workers, a few cells) into a fresh directory, waits
until it holds the run directory's lock, then after a random delay sends one of: SIGKILL to the
parent, SIGKILL to one of its workers, SIGINT to the parent. When the parent has ended, the same
command with ``--resume`` completes the run. The round checks the results against ``plan.json``
and counts rows, duplicated cells and lost cells.

    python scripts/fault_drill.py --rounds 50 --out /tmp/drill
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

FLAGS = ["--device", "cpu", "--op", "bi_wkv7", "--impl", "torch_chunked,torch_loop", "--model", "A-RWKV-T"]
FAST = ["--budget-s", "0.05", "--warmup-s", "0", "--rounds", "2", "--min-samples", "2", "--no-progress"]
ACTIONS = ("kill-parent", "kill-worker", "sigint-parent")


def _wkvbench(*args) -> list[str]:
    return [sys.executable, "-P", "-m", "wkvbench.cli", *map(str, args)]


def _default_sigint() -> None:
    """In the run's process: SIGINT as a terminal gives it (a drill started in the background
    would otherwise hand its children an ignored SIGINT, and Python would never see Ctrl-C)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _workers_of(pid: int) -> list[int]:
    """Worker processes whose parent is ``pid`` (read from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"wkvbench.harness.worker" in cmd:
            out.append(int(d.name))
    return out


def one_round(out: Path, rng: random.Random, tokens: str, max_delay: float, log) -> dict:
    from wkvbench.harness import rundir
    from wkvbench.schema import key_of

    cmd = _wkvbench("run", *FLAGS, *FAST, "--tokens", tokens, "--workers", "2", "--out", out)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_default_sigint)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not rundir.in_progress(out):
        time.sleep(0.02)
    action = rng.choice(ACTIONS)
    time.sleep(rng.uniform(0, max_delay))
    if proc.poll() is None:
        if action == "kill-parent":
            proc.kill()
        elif action == "sigint-parent":
            proc.send_signal(signal.SIGINT)
        else:
            workers = _workers_of(proc.pid)
            if workers:
                os.kill(rng.choice(workers), signal.SIGKILL)
            else:
                action += " (no worker yet)"
    rc1 = proc.wait(timeout=600)
    sigint_bad = int(action == "sigint-parent" and rc1 not in (0, 130))
    rc2 = subprocess.run([*cmd, "--resume"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=900)
    table = rundir.read_table(out / rundir.RESULTS_FILE)
    rows = rundir.read_results(out)  # every row parses
    keys = [key_of(r) for r in rows]
    planned = rundir.planned_keys(out) or set()
    res = {
        "action": action,
        "rc_first": rc1,
        "rc_resume": rc2.returncode,
        "rows": len(table.rows),
        "duplicates": len(keys) - len(set(keys)),
        "lost": len(planned - set(keys)),
        "unplanned": len(set(keys) - planned),
        "planned": len(planned),
        "sigint_not_130": sigint_bad,
    }
    if rc2.returncode != 0:
        res["error"] = rc2.stderr.strip().splitlines()[-1:] if rc2.stderr else ""
    log(res)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/fault-drill", help="folder for the rounds' run directories")
    ap.add_argument("--tokens", default="16,32,48", help="--tokens of each run (2 impls per T)")
    ap.add_argument("--max-delay", type=float, default=8.0, help="latest kill, seconds after the run starts")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error(f"--rounds: expected a positive number, got {args.rounds}")
    rng = random.Random(args.seed)
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    total = {"rounds": 0, "rows": 0, "duplicates": 0, "lost": 0, "unplanned": 0, "failed_resumes": 0, "sigint": 0}
    for i in range(args.rounds):
        res = one_round(root / f"round-{i:03d}", rng, args.tokens, args.max_delay, lambda r, i=i: print(i, r))
        total["rounds"] += 1
        total["rows"] += res["rows"]
        total["duplicates"] += res["duplicates"]
        total["lost"] += res["lost"] + (0 if res["planned"] else 1)
        total["unplanned"] += res["unplanned"]
        total["failed_resumes"] += res["rc_resume"] != 0
        total["sigint"] += res["sigint_not_130"]
    print(
        f"fault drill: {total['rounds']} rounds, {total['rows']} rows, {total['duplicates']} duplicated, "
        f"{total['lost']} lost, {total['unplanned']} unplanned, {total['failed_resumes']} resumes failed, "
        f"{total['sigint']} SIGINTs not exit 130"
    )
    bad = total["duplicates"] or total["lost"] or total["unplanned"] or total["failed_resumes"] or total["sigint"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
