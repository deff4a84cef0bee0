"""The environment a run was measured in: ``wkvbench env`` and the run directory's ``env.json``.

``collect_env(argv=None, suite=None)`` returns a JSON-ready dict; it is valid on a machine
without a GPU (``"gpu": null``). ``gpu_snapshot(uuid=None)`` reads the GPU's clocks, temperature,
power and clock-event ("throttle") reasons through NVML without touching CUDA; the runner
takes one before and after every cell and stores them with the cell's samples in
``samples.jsonl`` (keys ``gpu_before`` / ``gpu_after``).

Keys of ``env.json`` (the report reads these)::

    schema_version      int, results schema version (wkvbench.schema.SCHEMA_VERSION)
    timestamp           ISO 8601 UTC
    hostname, platform, python
    cpu                 {model, logical_cores, torch_threads, machine}
    gpu                 null without a GPU, else {
                          index, name, uuid, cc ("9.0"), sm_count, l2_bytes, mem_bytes,
                          driver, cuda (torch's CUDA version),
                          clocks: {current: {sm, mem}, max: {sm, mem}}  (MHz),
                          power_limit_w, temperature_c, power_w, throttle_reasons: [names],
                          energy_counter (bool: NVML total-energy counter present) }
    packages            {distribution name: version or null}: torch, triton, numpy, numba,
                        numba-cuda, cupy-cuda13x, cuda-core, fla-core, flash-attn, mamba-ssm, ...
    torch               {version, cuda, cudnn, debug}
    interpret           {TRITON_INTERPRET, NUMBA_ENABLE_CUDASIM} as set in the environment
    git                 {commit, dirty} of the wkvbench checkout (nulls outside a git checkout)
    argv                the command line
    suite               the resolved suite (run settings and groups), or null
    copy_bandwidth_gbs  device copy bandwidth (read + write) measured at the start of the run,
                        null from ``wkvbench env`` (the runner fills it)
    gpu_start, gpu_end  snapshots (as ``gpu_snapshot``) at the start and end of the run (runner)
    throttle            GPU runs: {cells, cells_throttled, reasons: {name: cases}} -- clock-event
                        reasons other than gpu_idle seen before/after cases (per-cell snapshots
                        are in samples.jsonl as gpu_before / gpu_after)
    device, plugins, started, finished, worker_starts   (runner)
    previous_sessions   env records of earlier sessions of the same run directory (runner)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from wkvbench.harness import nvml
from wkvbench.schema import SCHEMA_VERSION

PACKAGES = (
    "wkvbench",
    "torch",
    "triton",
    "numpy",
    "numba",
    "numba-cuda",
    "cupy-cuda13x",
    "cupy-cuda12x",
    "cuda-core",
    "cuda-python",
    "nvidia-cuda-nvrtc",
    "fla-core",
    "flash-linear-attention",
    "flash-attn",
    "mamba-ssm",
    "causal-conv1d",
    "einops",
    "pandas",
    "matplotlib",
    "nvidia-ml-py",
    "pytest-benchmark",
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def git_info(root: str | os.PathLike | None = None) -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout holding wkvbench.

    Without ``root``: the git work tree this ``wkvbench`` package was imported from, and only if
    the package sits at its top (an installed copy inside some other repository has no commit).
    """
    package = Path(__file__).resolve().parent
    where = Path(root) if root else package

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        if root is None and Path(git("rev-parse", "--show-toplevel")).resolve() != package.parent:
            return {"commit": None, "dirty": None}
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def gpu_snapshot(uuid: str | None = None, index: int | None = None) -> dict | None:
    """Clocks, temperature, power, throttle reasons and energy counter now; None without NVML/GPU."""
    return nvml.snapshot(nvml.handle(uuid, index))


def gpu_record(index: int | None = None) -> dict | None:
    """Static and current facts of one GPU (torch's device ``index``), or None without a GPU."""
    import torch

    rec: dict = {}
    uuid = None
    if torch.cuda.is_available():
        idx = torch.cuda.current_device() if index is None else index
        props = torch.cuda.get_device_properties(idx)
        uuid = str(getattr(props, "uuid", "") or "") or None
        rec = {
            "index": idx,
            "name": props.name,
            "uuid": uuid,
            "cc": f"{props.major}.{props.minor}",
            "sm_count": props.multi_processor_count,
            "l2_bytes": int(getattr(props, "L2_cache_size", 0) or 0) or None,
            "mem_bytes": int(props.total_memory),
        }
    h = nvml.handle(uuid, index)
    if not rec and h is None:
        return None
    static = nvml.static_info(h)
    snap = nvml.snapshot(h) or {}
    for key in ("index", "name", "cc", "sm_count", "l2_bytes", "mem_bytes"):
        rec.setdefault(key, index if key == "index" else static.get(key))
    rec["uuid"] = static.get("uuid") or uuid  # NVML's "GPU-..." form when NVML is there
    rec.update(
        driver=nvml.driver_version(),
        cuda=torch.version.cuda,
        clocks={"current": snap.get("clocks_mhz"), "max": static.get("max_clocks_mhz")},
        power_limit_w=static.get("power_limit_w"),
        temperature_c=snap.get("temperature_c"),
        power_w=snap.get("power_w"),
        throttle_reasons=snap.get("throttle_reasons"),
        energy_counter=bool(static.get("energy_counter")),
    )
    return rec


def collect_env(argv: list[str] | None = None, suite: dict | None = None, gpu_index: int | None = None) -> dict:
    """The environment record described in this module's docstring (JSON-serialisable)."""
    import torch

    cudnn = None
    try:
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:
        cudnn = None
    return {
        "schema_version": SCHEMA_VERSION,
        "timestamp": _now(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": {
            "model": cpu_model(),
            "logical_cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
        "gpu": gpu_record(gpu_index),
        "packages": package_versions(),
        "torch": {
            "version": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": cudnn,
            "debug": torch.version.debug,
        },
        "interpret": {k: os.environ.get(k) for k in ("TRITON_INTERPRET", "NUMBA_ENABLE_CUDASIM")},
        "git": git_info(),
        "argv": list(sys.argv if argv is None else argv),
        "suite": suite,
        "copy_bandwidth_gbs": None,
    }


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpu-index", type=int, default=None, help="torch CUDA device index (default: current)")
    parser.add_argument("--snapshot", action="store_true", help="print only the GPU's clocks/power/throttle now")


def main(args: argparse.Namespace) -> int:
    if getattr(args, "snapshot", False):
        print(json.dumps(gpu_snapshot(index=args.gpu_index), indent=2))
        return 0
    print(json.dumps(collect_env(argv=sys.argv, gpu_index=getattr(args, "gpu_index", None)), indent=2))
    return 0
