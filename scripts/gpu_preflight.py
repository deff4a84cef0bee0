"""The GPU check's preflight: what this machine has, before anything is timed (a few seconds).

Writes a Markdown section (``summary.md`` puts it first): package versions; the device, its
SMs, free and total memory; SM and memory clocks now and at most (NVML); whether numba-cuda finds
libNVVM and whether compute-sanitizer is present; every registered implementation, available
or not and why. Beside it, ``fla.available`` holds ``ok`` or the reason ``fla_chunk`` cannot
run, which decides whether the check runs its fla stage.

Usage: ``python scripts/gpu_preflight.py --out preflight.md [--device cuda]``.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import os
import platform
import sys
from pathlib import Path

PACKAGES = ("torch", "triton", "cupy-cuda13x", "cupy-cuda12x", "numba", "numba-cuda", "numpy", "fla-core", "pandas")


def versions() -> list[str]:
    out = [f"python {platform.python_version()}"]
    for name in PACKAGES:
        try:
            out.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            if not name.startswith("cupy-"):
                out.append(f"{name} absent")
    return out


def device_lines(device: str) -> list[str]:
    import torch

    if device != "cuda":
        return [f"device: {device} (no GPU); torch {torch.__version__}"]
    if not torch.cuda.is_available():
        return ["device: cuda requested but torch.cuda.is_available() is False"]
    p = torch.cuda.get_device_properties(0)
    free, total = torch.cuda.mem_get_info(0)
    lines = [
        f"device: {p.name}, sm_{p.major}{p.minor}, {p.multi_processor_count} SMs; torch CUDA {torch.version.cuda}",
        f"GPU memory: {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB",
    ]
    from wkvbench.harness import nvml

    h = nvml.handle(index=0)
    snap = nvml.snapshot(h) if h is not None else None
    if snap is None:
        lines.append("clocks: NVML not available")
    else:
        mx = (nvml.static_info(h) or {}).get("max_clocks_mhz") or {}
        c = snap["clocks_mhz"]
        lines.append(
            f"clocks now: SM {c.get('sm')} MHz, memory {c.get('mem')} MHz (max SM {mx.get('sm')}, memory "
            f"{mx.get('mem')}); {snap.get('temperature_c')} C, {snap.get('power_w')} W; "
            f"clock-event reasons: {', '.join(snap.get('throttle_reasons') or []) or 'none'}"
        )
    return lines


def tool_lines() -> list[str]:
    from wkvbench.impls import _gpu

    ok, why = _gpu.nvvm_status()
    spec = importlib.util.spec_from_file_location("gpu_concurrency", Path(__file__).with_name("gpu_concurrency.py"))
    conc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conc)
    tool, where = conc.find_sanitizer()
    return [
        f"libNVVM (numba-cuda): {'found' if ok else 'not found: ' + why}"
        + (" (the CUDA simulator is on)" if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else ""),
        f"compute-sanitizer: {tool or 'not found (' + where + ')'}",
    ]


def impl_lines(device: str) -> tuple[list[str], str]:
    """One line per op listing available implementations and the reason for each absent one."""
    from wkvbench import opspec
    from wkvbench.registry import list_impls

    lines, fla = [], "fla_chunk is not registered"
    for op in opspec.OPS:
        recs = list_impls(op)
        if not recs:
            continue
        have, absent = [], []
        for rec in recs:
            ok, why = rec.available(device)
            (have if ok else absent).append(rec.name if ok else f"{rec.name} ({why})")
            if op == "bi_wkv7" and rec.name == "fla_chunk":
                fla = "ok" if ok else f"fla_chunk unavailable: {why}"
        gone = f"; absent: {'; '.join(absent)}" if absent else ""
        lines.append(f"- {op}: available {', '.join(have) or 'none'}{gone}")
    return lines, fla


def preflight(device: str) -> tuple[str, str]:
    """The Markdown section and the fla verdict (``ok`` or the reason)."""
    lines = ["## Preflight", "", "- " + ", ".join(versions())]
    for part in (device_lines, lambda d: tool_lines()):
        try:
            lines += [f"- {s}" for s in part(device)]
        except Exception as exc:  # the preflight reports, it never stops the check
            lines.append(f"- {getattr(part, '__name__', 'tools')}: {type(exc).__name__}: {exc}")
    impls, fla = impl_lines(device)
    lines += ["", "Implementations:", *impls, ""]
    return "\n".join(lines) + "\n", fla


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--out", required=True, help="Markdown file; fla.available is written beside it")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = p.parse_args(argv)
    text, fla = preflight(args.device)
    out = Path(args.out)
    out.write_text(text, encoding="utf-8")
    (out.parent / "fla.available").write_text(fla + "\n", encoding="utf-8")
    print(text, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
