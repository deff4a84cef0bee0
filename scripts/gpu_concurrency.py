"""Concurrency checks only a real GPU can make: the Triton merge's wait path, compute-sanitizer.

The CPU emulations (Triton interpreter, Numba simulator, the host builds of the CUDA C) run
programs and blocks one at a time, so they never see two programs in flight at once. This
writes verify-style rows (``wkvbench.verify.Check`` fields; ``check`` names the case) to a CSV:

* ``ticket_wait``: the chunked Triton forward (``triton_chunked``) with ``hold > 0``, which
  makes each tile's first ticket holder spin before it releases, so the partner program --
  either direction -- arrives meanwhile and takes the wait path (``bi_wkv7_chunked``). The
  output is checked against the float64 reference and the tiles that waited are counted; on a
  GPU a case where no tile waited did not test the path and is ``failed``. On a CPU (the
  interpreter runs programs in turn) no tile can wait: the rows check the hold path's output.
* ``memcheck`` / ``racecheck``: ``compute-sanitizer`` (one run per tool) over a tiny forward and
  backward of the CUDA C kernels (``cupy_cuda``, ``audiorwkv_catflip``), only their kernels
  instrumented; ``skipped`` with the tool's reason when it is absent or refuses the device.

Usage: ``python scripts/gpu_concurrency.py --out concurrency.csv [--device cuda] [--budget-s 30]``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

#: Spins of the first ticket holder (about 1 us each on a GPU; the interpreter makes a few).
HOLD = {"cuda": 20000, "cpu": 2}
#: Tiny CUDA C forward + backward run under compute-sanitizer (kernels from the named impls).
SANITIZED = ("cupy_cuda", "audiorwkv_catflip")
_CHILD = """
import sys, torch
from wkvbench.inputs import bi_wkv7_inputs
from wkvbench.registry import get_impl
for name in sys.argv[1:]:
    x = bi_wkv7_inputs(1, 37, 1, 64, dtype=torch.bfloat16, device="cuda", seed=3)
    x = {k: v.detach().requires_grad_(v.is_floating_point()) for k, v in x.items()}
    y = get_impl("bi_wkv7", name).fn(**x)
    y.float().square().sum().backward()
    torch.cuda.synchronize()
    print("sanitized", name, "ok", flush=True)
"""


def _row(**kw) -> dict:
    from wkvbench.verify import Check

    return dataclasses.asdict(Check(**kw))


def ticket_wait_rows(device: torch.device) -> list[dict]:
    """The chunked forward with held tickets at 1-3 chunks, bfloat16 and float32 (see the module docstring)."""
    from wkvbench import accuracy, reference
    from wkvbench.impls import bi_wkv7_triton as tk
    from wkvbench.inputs import bi_wkv7_inputs

    rows = []
    ok, why = tk._check(device)
    if not ok:
        return [_row(op="bi_wkv7", impl="triton_chunked", backend="triton", shape="-", dtype="-",
                     device=device.type, status="skipped", note=why, check="ticket_wait")]  # fmt: skip
    hold = HOLD[device.type]
    for T, dtype in ((16, torch.bfloat16), (40, torch.bfloat16), (33, torch.float32)):
        B, H, N = 1, 2, 64
        BV = 32
        x = bi_wkv7_inputs(B, T, H, N, dtype=dtype, device=device, seed=T)
        C = -(-T // 16)
        tickets = torch.zeros(B * H * (N // BV) * C, dtype=torch.int32, device=device)
        row = dict(op="bi_wkv7", impl="triton_chunked", backend="triton", shape=f"B{B}xT{T}xH{H}xN{N}",
                   dtype=str(dtype)[6:], device=device.type, status="failed", check="ticket_wait",
                   dims={"B": B, "T": T, "H": H, "N": N})  # fmt: skip
        t0 = time.perf_counter()
        try:
            y = tk.bi_wkv7_chunked(**x, chunk_len=16, block_v=BV, hold=hold, tickets=tickets)
            if device.type == "cuda":
                torch.cuda.synchronize()
            acc = accuracy.compare(y, reference.bi_wkv7(**x), dtype)
            t = tickets.cpu()
            waited, done = int((t == 8).sum()), int(((t == 4) | (t == 8)).sum())
            row.update(rel_err=acc.rel_err, max_abs=acc.max_abs, tol=acc.tol)
            note = f"hold={hold}: {waited} of {t.numel()} tiles waited, {done} merged"
            if done != t.numel():
                row.update(status="wrong", note=note + "; some tile never merged")
            elif not acc.passed:
                row.update(status="wrong", note=note)
            elif device.type == "cuda" and waited == 0:
                row.update(status="failed", note=note + "; the wait path was not reached")
            else:
                cpu = "" if device.type == "cuda" else " (programs run in turn here: no tile can wait)"
                row.update(status="ok", note=note + cpu)
        except Exception as exc:
            row["note"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        row["seconds"] = time.perf_counter() - t0
        rows.append(_row(**row))
    return rows


def find_sanitizer() -> tuple[str | None, str]:
    """The compute-sanitizer binary and where it was looked for."""
    found = shutil.which("compute-sanitizer")
    places = ["PATH"]
    for root in filter(None, (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda")):
        places.append(f"{root}/bin")
        cand = f"{root}/bin/compute-sanitizer"
        found = found or (cand if os.access(cand, os.X_OK) else None)
    pattern = str(Path(sys.prefix) / "lib" / "python3*" / "site-packages" / "nvidia" / "*" / "**" / "compute-sanitizer")
    places.append("the nvidia pip packages")
    if not found:
        hits = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p) and os.access(p, os.X_OK)]
        found = hits[0] if hits else None
    return found, ", ".join(places)


def _tool_reason(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    keep = [ln for ln in lines if "error" in ln.lower() or "not supported" in ln.lower()] or lines[-2:]
    return " | ".join(keep[-2:])[:300] or "no output"


def classify(name: str, returncode: int, text: str) -> tuple[str, str]:
    """``(status, note)`` of one compute-sanitizer run of the child (``--error-exitcode 3``)."""
    summary = [ln.strip(" =") for ln in text.splitlines() if "SUMMARY" in ln]
    ran = f"sanitized {name} ok" in text
    if returncode == 0 and ran:
        return "ok", "; ".join(summary)[:300] or "no errors reported"
    if returncode == 3:
        return "wrong", _tool_reason(text)
    if not ran and not summary:
        return "skipped", f"compute-sanitizer refused (exit {returncode}): {_tool_reason(text)}"
    return "failed", f"exit {returncode}: {_tool_reason(text)}"


#: A kernel-name fragment of each sanitized implementation (to say whose kernel an error names).
KERNEL_MARK = {"cupy_cuda": "bi_wkv7", "audiorwkv_catflip": "catflip"}


def sanitizer_rows(device: torch.device, budget_s: float) -> list[dict]:
    """racecheck and memcheck (one run each, both CUDA C implementations' tiny forward + backward).

    Each run gets what is left of ``budget_s``; one row per (implementation, tool).
    """
    base = dict(op="bi_wkv7", backend="cuda", shape="B1xT37xH1xN64", dtype="bfloat16", device=device.type)
    tool, where = find_sanitizer()
    deadline = time.monotonic() + budget_s
    rows = []
    for kind in ("memcheck", "racecheck"):
        per = {name: dict(base, impl=name, check=kind, status="skipped") for name in SANITIZED}
        left = deadline - time.monotonic()
        if device.type != "cuda":
            note = "needs a CUDA device"
        elif tool is None:
            note = f"compute-sanitizer not found ({where})"
        elif left < 5:
            note = f"no time left of the {budget_s:g} s budget"
        else:
            note = None
        if note is not None:
            rows += [_row(**r, note=note) for r in per.values()]
            continue
        cmd = [tool, "--tool", kind, "--kernel-name", "kns=wkv7", "--error-exitcode", "3",
               "--print-limit", "20", sys.executable, "-c", _CHILD, *SANITIZED]  # fmt: skip
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=left, env=os.environ)
            text, rc = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired:
            rows += [_row(**r, status="timeout", note=f"over the {left:.0f} s left") for r in per.values()]
            continue
        named = [n for n in SANITIZED if KERNEL_MARK[n] in text.replace(f"sanitized {n} ok", "")]
        for name, r in per.items():
            status, note = classify(name, rc, text)
            if status == "wrong" and named and name not in named:  # the error names the other's kernel
                status, note = "ok", f"errors reported only in {', '.join(named)}'s kernels"
            r.update(status=status, note=note, seconds=time.perf_counter() - t0)
            rows.append(_row(**r))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--out", required=True, help="CSV file (verify's columns)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--budget-s", type=float, default=30.0, help="time for the sanitizer runs in all")
    p.add_argument("--no-sanitizer", action="store_true")
    args = p.parse_args(argv)
    if args.budget_s <= 0:
        p.error("--budget-s: must be > 0")
    from wkvbench.verify import Check

    device = torch.device(args.device)
    fields = [f.name for f in dataclasses.fields(Check)]
    with open(args.out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        fh.flush()
        parts = [ticket_wait_rows] + ([] if args.no_sanitizer else [lambda d: sanitizer_rows(d, args.budget_s)])
        for part in parts:
            for r in part(device):
                w.writerow({**r, "dims": json.dumps(r["dims"])})
                fh.flush()
                print(f"{r['check']:<11} {r['impl']:<18} {r['shape']:<16} {r['dtype']:<9} {r['status']:<7} {r['note']}",
                      file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
