"""The ``wkvbench`` command and its subcommands (``wkvbench --help`` lists them).

Each subcommand lives in the module that owns its work and exposes ``configure(parser)`` and
``main(args) -> int``; this file only wires them up, importing a module when its subcommand runs.
``--interpret`` (before the subcommand) sets ``TRITON_INTERPRET=1`` and ``NUMBA_ENABLE_CUDASIM=1``
so that Triton and Numba kernels run on CPU tensors (slow; for checking, not timing).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

SUBCOMMANDS = {
    "list": ("wkvbench.listing", "ops and implementations, and whether each can run here"),
    "env": ("wkvbench.envinfo", "the machine, versions and GPU as JSON (valid without a GPU)"),
    "verify": ("wkvbench.verify", "check every available implementation against float64"),
    "kernels": ("wkvbench.kernels", "compile every GPU kernel for a target (sm_90) and show registers/smem"),
    "run": ("wkvbench.harness.run_command", "sweep implementations over a suite or flags into a run dir"),
    "report": ("wkvbench.report.cli", "figures, report.html and report.md from a run dir"),
    "compare": ("wkvbench.report.compare", "compare two run dirs cell by cell"),
    "models": ("wkvbench.models.listing", "whole networks: op, parameter count and tokens per preset"),
    "submit": ("wkvbench.harness.cluster", "run a suite as a Slurm (or local) job array of shards via submitit"),
    "status": ("wkvbench.harness.status", "cells done, failed and pending in a run dir, per shard"),
    "merge": ("wkvbench.harness.merge", "union of run dirs (shards, machines, GPU models) into one"),
    "history": ("wkvbench.history.cli", "per-commit history of runs: add, show, report (HTML dashboard), check (CI)"),
}


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; Ctrl-C at any moment (while importing too) is exit 130, no traceback."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("\nwkvbench: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="wkvbench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--interpret",
        action="store_true",
        help="run Triton/Numba kernels on CPU (sets TRITON_INTERPRET=1, NUMBA_ENABLE_CUDASIM=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    # Configure only the chosen subcommand (its module may import heavy dependencies).
    chosen = next((a for a in argv if a in SUBCOMMANDS), None)
    for name, (module, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == chosen:
            importlib.import_module(module).configure(p)
    args = parser.parse_args(argv)
    if args.interpret:
        os.environ["TRITON_INTERPRET"] = "1"
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
