"""``wkvbench list``: every op and implementation, and whether it can run here (and why not).

An op that runs another op's implementations (``OpSpec.impls_of``: the ``network`` op runs its
model's mixer) is listed with the op each model takes its implementations from.
"""

from __future__ import annotations

import argparse
import json

import torch

from wkvbench.opspec import OPS, get_op, impl_op
from wkvbench.presets import PRESETS
from wkvbench.registry import builtin_errors, list_impls, load_plugin


def rows(device: str | None = None) -> list[dict]:
    """One dict per implementation: name, op, backend, devices, dtypes, flags and availability."""
    devices = [device] if device else ["cpu", "cuda"]
    out = []
    for op in OPS:
        naive = get_op(op).naive_impl
        for rec in list_impls(op):
            row = {
                "op": op,
                "name": rec.name,
                "backend": rec.backend,
                "devices": ",".join(rec.devices),
                "dtypes": ",".join(str(d).replace("torch.", "").replace("float", "f") for d in rec.dtypes),
                "priority": rec.priority,
                "flags": ",".join(
                    f
                    for f, on in (
                        ("naive", rec.name == naive),
                        ("peer", rec.peer),
                        ("tf32", rec.tf32),
                        ("backward", rec.backward),
                    )
                    if on
                ),
                "description": rec.description,
            }
            for dev in devices:
                ok, why = rec.available(dev)
                row[dev] = "yes" if ok else f"no: {why}"
            out.append(row)
    return out


def borrowed() -> dict[str, dict[str, list[str]]]:
    """For each op that runs another op's implementations: {mixer op: [models]}."""
    out = {}
    for op in OPS:
        if get_op(op).impls_of is not None:
            by_op: dict[str, list[str]] = {}
            for name in PRESETS:
                by_op.setdefault(impl_op(op, name), []).append(name)
            out[op] = by_op
    return out


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--op", choices=OPS, default=None, help="only this op")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="availability on this device only")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--plugin", action="append", default=[], help="module or .py file registering impls")


def main(args: argparse.Namespace) -> int:
    for plugin in args.plugin:
        load_plugin(plugin)
    table = [r for r in rows(args.device) if args.op is None or r["op"] == args.op]
    errors = builtin_errors()
    if args.json:
        print(json.dumps({"impls": table, "import_errors": errors, "impls_of": borrowed()}, indent=1))
        return 0
    devices = [args.device] if args.device else ["cpu", "cuda"]
    print(f"CUDA available: {torch.cuda.is_available()}")
    for op in OPS:
        sel = [r for r in table if r["op"] == op]
        if not sel:
            continue
        print(f"\n{op}")
        for r in sel:
            avail = "  ".join(f"{d}: {r[d]}" for d in devices)
            flags = f" [{r['flags']}]" if r["flags"] else ""
            print(f"  {r['name']:<22} {r['backend']:<8} {r['dtypes']:<14} {avail}{flags}")
    for op, by_op in borrowed().items():
        if args.op in (None, op):
            print(f"\n{op} (implementations: the model's mixer, any listed under its op)")
            for mixer, models in by_op.items():
                print(f"  {', '.join(models):<32} -> {mixer}")
    if errors:
        print("\nmodules that failed to import:")
        for mod, err in errors.items():
            print(f"  {mod}: {err}")
    return 0
