"""Crash isolation for ``wkvbench verify``: one child process per implementation.

A kernel that hits an illegal address, aborts or hangs takes its process down (or poisons its
CUDA context). So ``wkvbench verify`` runs each implementation's checks -- forward, and the
gradients with ``--grad`` -- in a child (``python -m wkvbench.verify_child SPEC``) that prints
one JSON row per finished check on a private copy of its stdout (file descriptor 1 goes to
stderr, so prints from kernels cannot corrupt the rows). The parent forwards each row as it
arrives; when the child dies it adds one ``failed`` row naming the signal and the tail of the
child's stderr, and when the implementation's time limit passes it kills the child and adds a
``timeout`` row. The rows already received stay. The child finds ``wkvbench`` where the parent
imported it from and loads the same plugins.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time

import torch

from wkvbench.harness.client import import_root as _import_root
from wkvbench.harness.client import signal_name as _signal_name
from wkvbench.registry import Impl


def importable(rec: Impl, plugins: tuple[str, ...]) -> bool:
    """Whether a child process can register ``rec`` too: a built-in, or from one of ``plugins``."""
    mod = rec.module or ""
    return mod.startswith("wkvbench.") or mod.startswith("wkvbench_plugin_") or mod in plugins


def run_isolated(op, rec: Impl, dtypes, device, long, seed, grad, timeout_s, plugins, emit) -> None:
    """Run ``rec``'s checks in a child; ``emit(Check)`` for each row as it arrives."""
    from wkvbench.verify import Check

    spec = {
        "op": op,
        "impl": rec.name,
        "dtypes": [str(d).replace("torch.", "") for d in dtypes],
        "device": str(device),
        "long": bool(long),
        "seed": int(seed),
        "grad": bool(grad),
        "plugins": list(plugins),
    }
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_import_root(), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONFAULTHANDLER", "1")
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wkvbench.verify_child", json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
            start_new_session=True,
        )
        lines: queue.Queue = queue.Queue()

        def reader() -> None:
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=reader, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        last = "-"

        def tail_row(status: str, note: str) -> Check:
            where = "-" if last == "-" else f"after {last}"  # the shape it was on is not known exactly
            return Check(op, rec.name, rec.backend, where, "-", torch.device(device).type, status, note=note)

        while True:
            remaining = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                proc.kill()
                proc.wait()
                emit(tail_row("timeout", f"checks exceeded --timeout {timeout_s:g} s; child killed"))
                return
            if line is None:
                rc = proc.wait()
                if rc != 0:
                    err.seek(0)
                    text = err.read()[-200_000:]
                    emit(tail_row("failed", f"child {_signal_name(rc)}: {_crash_summary(text)}"))
                return
            try:
                row = json.loads(line)
            except ValueError:
                continue
            last = row.get("shape", last)
            emit(Check(**row))


def _crash_summary(stderr: str, limit: int = 400) -> str:
    """The useful lines of a dead child's stderr: faulthandler's error and innermost frame, or the
    last lines (a Python traceback's tail)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.startswith("Fatal Python error")]
    frames = [ln for ln in lines if ln.startswith("File ")]
    keep = fatal[-1:] + frames[:1] if fatal else lines[-3:]
    text = " | ".join(keep)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv: list[str]) -> int:
    """The child: run one implementation's checks, one JSON row per line on the private stdout."""
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import dataclasses
    import faulthandler

    from wkvbench import registry, verify

    faulthandler.enable()
    spec = json.loads(argv[0])
    for p in spec["plugins"]:
        registry.load_plugin(p)
    rec = registry.get_impl(spec["op"], spec["impl"])
    device = torch.device(spec["device"])
    dtypes = [verify.DTYPES[d] for d in spec["dtypes"]]
    refs = verify._RefCache(device, spec["seed"])
    for c in verify.checks_of(spec["op"], rec, dtypes, device, spec["long"], refs, spec["grad"]):
        proto.write(json.dumps(dataclasses.asdict(c), default=str) + "\n")
        proto.flush()
    proto.close()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown: a poisoned CUDA context can hang it


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
