"""DRAM bytes of one call read by Nsight Compute (``wkvbench count --ncu``, GPU only).

A child Python process makes the op's inputs on the GPU, calls the implementation once untimed
(compilation), then once more between ``cudaProfilerStart``/``cudaProfilerStop``; ``ncu
--profile-from-start off`` profiles only that call's kernels and reports
``dram__bytes_read.sum`` and ``dram__bytes_write.sum`` per kernel (``--csv --print-units base``),
which :func:`parse_csv` sums.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys

METRICS = ("dram__bytes_read.sum", "dram__bytes_write.sum")

_CHILD = """
import json, sys, torch
from wkvbench.opspec import get_op
from wkvbench.registry import get_impl
op, impl, shape, dtype = json.loads(sys.argv[1])
spec, rec = get_op(op), get_impl(op, impl)
x = spec.make_inputs(shape, getattr(torch, dtype), torch.device("cuda"), 0)
with torch.no_grad():
    rec.fn(**x)
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    rec.fn(**x)
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()
"""

_UNITS = {"byte": 1, "kbyte": 1e3, "mbyte": 1e6, "gbyte": 1e9, "tbyte": 1e12}


def parse_csv(text: str) -> dict:
    """Sum the DRAM read and write bytes over the kernels of ``ncu --csv`` output."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if start is None:
        raise ValueError("ncu: no metrics table in its output (did the call launch any kernel?)")
    out = {"dram_read_bytes": 0.0, "dram_write_bytes": 0.0, "kernels": 0}
    ids = set()
    for row in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
        name = row.get("Metric Name")
        if name not in METRICS:
            continue
        unit = _UNITS.get((row.get("Metric Unit") or "byte").lower())
        if unit is None:
            raise ValueError(f"ncu: unexpected unit {row.get('Metric Unit')!r} for {name}")
        value = float((row.get("Metric Value") or "0").replace(",", "")) * unit
        out["dram_read_bytes" if name == METRICS[0] else "dram_write_bytes"] += value
        ids.add(row.get("ID"))
    out["kernels"] = len(ids)
    out["dram_bytes"] = out["dram_read_bytes"] + out["dram_write_bytes"]
    return out


def dram_bytes(op: str, impl: str, shape: dict, dtype: str = "float32", ncu: str = "ncu", timeout: float = 600) -> dict:
    """DRAM bytes of one call of ``impl`` (a dict from :func:`parse_csv`); RuntimeError if ncu cannot run."""
    exe = shutil.which(ncu)
    if exe is None:
        raise RuntimeError(f"ncu: {ncu!r} not found (Nsight Compute is needed for --ncu)")
    cmd = [exe, "--profile-from-start", "off", "--metrics", ",".join(METRICS), "--csv", "--print-units", "base"]
    cmd += [sys.executable, "-c", _CHILD, json.dumps([op, impl, shape, dtype])]
    # the counting side runs kernels interpreted on the CPU; the profiled child must compile them
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "NUMBA_ENABLE_CUDASIM")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"ncu: exit {proc.returncode}: {' | '.join(tail)}")
    return parse_csv(proc.stdout)
