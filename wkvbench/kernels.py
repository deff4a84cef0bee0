"""``wkvbench kernels``: compile every GPU kernel for a target and show its resource usage.

Each GPU implementation module exposes ``compile_report(cc=90) -> list[dict]`` (keys: impl,
kernel, config, registers, shared_bytes, local_bytes, compiler; Triton rows also ``mma``, ``ffma``
and ``tensor_core_pct``, the SASS share of multiply-add FLOPs on tensor cores,
``_compile.dot_mix``) that compiles its kernels
without a GPU: Triton through ``triton.compile`` for a ``GPUTarget``, CUDA C through NVRTC or
nvcc, Numba through ``compile_ptx``; the shared tooling is ``wkvbench.impls._compile``. Each module is
compiled in a clean subprocess, without ``TRITON_INTERPRET``/``NUMBA_ENABLE_CUDASIM`` (which
would replace the compilers), so a register spill or a type error shows up on a CPU-only
machine. A check whose tool is not installed here yields a row with ``skipped`` (e.g.
``needs pip install 'wkvbench[compile]'``) and is printed as such. Exits non-zero only if a
kernel that could be checked fails to compile or spills.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from wkvbench.registry import BUILTIN_MODULES

SIM_VARS = ("TRITON_INTERPRET", "NUMBA_ENABLE_CUDASIM")

_SNIPPET = """
import importlib, json, sys
mod = importlib.import_module(sys.argv[1])
fn = getattr(mod, "compile_report", None)
print("@@JSON@@" + json.dumps(None if fn is None else fn(cc=int(sys.argv[2]))))
"""


def clean_env() -> dict:
    """The current environment without the interpreter/simulator switches."""
    return {k: v for k, v in os.environ.items() if k not in SIM_VARS}


def report_module(module: str, cc: int = 90, timeout: float = 600) -> list[dict] | None:
    """``module.compile_report(cc)`` run in a clean subprocess; None if the module has none."""
    proc = subprocess.run(
        [sys.executable, "-c", _SNIPPET, module, str(cc)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("@@JSON@@"):
            return json.loads(line[len("@@JSON@@") :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return [{"impl": module, "kernel": "-", "config": "-", "error": " | ".join(tail) or f"exit {proc.returncode}"}]


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cc", type=int, default=90, help="compute capability (default 90: H100/H200)")
    p.add_argument("--module", action="append", default=None, help="only these implementation modules")
    p.add_argument("--json", action="store_true")


#: The table's text columns and their least widths.
_TEXT_COLUMNS = (("impl", 24), ("kernel", 28), ("config", 44))


def main(args: argparse.Namespace) -> int:
    modules = args.module or list(BUILTIN_MODULES)
    rows = []
    for mod in modules:
        rep = report_module(mod, args.cc)
        if rep:
            rows.extend(rep)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        # text columns as wide as their longest entry (at least 24 / 28 / 44), so names like
        # "triton_chunked_tc (backward)" keep the columns aligned
        wi, wk, wc = (max([w] + [len(str(r.get(key, ""))) for r in rows]) for key, w in _TEXT_COLUMNS)
        print(
            f"{'impl':<{wi}} {'kernel':<{wk}} {'config':<{wc}} {'regs':>5} {'smem':>7} {'local':>6} "
            f"{'tensor-core %':>13}  compiler"
        )
        for r in rows:
            if "skipped" in r:
                print(f"{r['impl']:<{wi}} skipped: {r['skipped']}")
                continue
            if "error" in r:
                print(f"{r['impl']:<{wi}} COMPILE ERROR: {r['error']}")
                continue
            print(
                f"{r['impl']:<{wi}} {r['kernel']:<{wk}} {str(r.get('config', '')):<{wc}} {r.get('registers', '?'):>5} "
                f"{r.get('shared_bytes', '?'):>7} {r.get('local_bytes', '?'):>6} {r.get('tensor_core_pct', '-'):>13}"
                f"  {r.get('compiler', '')}"
            )
    bad = [r for r in rows if "skipped" not in r and ("error" in r or (r.get("local_bytes") or 0) > 0)]
    skipped = sum("skipped" in r for r in rows)
    if skipped:
        print(f"\n{skipped} check(s) skipped: their compiler is not installed here", file=sys.stderr)
    if bad:
        print(f"\n{len(bad)} kernel(s) failed to compile or spill to local memory", file=sys.stderr)
    return 1 if bad else 0
