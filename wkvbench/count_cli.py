"""``wkvbench count``: counted FLOPs and bytes of one CPU call against the op record's formulas.

Prints, per implementation, the formula's FLOPs and minimum bytes beside the counted ones
(:mod:`wkvbench.counting`) and bytes per (token, head) against the minimum. CUDA C implementations
are counted in the host emulation and need g++: without one, their line gives the reason instead of
a row. ``--mode fwd_bwd`` counts a training step (forward and backward) instead of a forward call.
``--ncu`` adds, on a GPU with Nsight Compute, the DRAM bytes of one call (:mod:`wkvbench.ncu`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from wkvbench.counting import COUNT_MODES, count_call
from wkvbench.hostemu import count as host_count
from wkvbench.hostemu.build import NoCompiler


def _dim(text: str) -> tuple[str, int]:
    name, _, value = text.partition("=")
    if not name or not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"--dim: expected NAME=POSITIVE_INT (e.g. H=1), got {text!r}")
    return name, int(value)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--op", required=True, help="op name (bi_wkv7, attention, bi_selective_scan)")
    parser.add_argument(
        "--impl", action="append", help="implementation (repeat or comma-separate; default: all that run on this CPU)"
    )
    parser.add_argument("--tokens", type=int, required=True, help="sequence length T")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--model", default=None, help="preset giving heads and head size (default: the op's)")
    parser.add_argument("--dim", type=_dim, action="append", default=[], help="override one shape dim, e.g. H=1")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument(
        "--mode",
        default="fwd",
        choices=COUNT_MODES,
        help="fwd: one forward call; fwd_bwd: a training step (forward and backward; no byte minimum)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per implementation")
    parser.add_argument("--ncu", action="store_true", help="also DRAM bytes of one GPU call (Nsight Compute, GPU)")


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, float) and not x.is_integer():
        return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.4g}"
    return f"{int(x):,}" if abs(x) < 1e7 else f"{float(x):.4g}"


def table(rows: list[dict]) -> str:
    """counted against formula, and bytes per (token, head) against the minimum, one line per impl."""
    cols = (
        ("impl", "impl"),
        ("backend", "backend"),
        ("formula_flops", "FLOPs formula"),
        ("counted_flops", "FLOPs counted"),
        ("formula_bytes", "bytes min"),
        ("counted_bytes", "bytes counted"),
        ("io_distinct_bytes", "I/O distinct"),
        ("min_bytes_per_token_head", "B/tok-head min"),
        ("bytes_per_token_head", "B/tok-head"),
        ("distinct_bytes_per_token_head", "distinct B/tok-head"),
    )
    if any("ncu_dram_bytes" in r for r in rows):
        cols += (("ncu_dram_bytes", "ncu DRAM bytes"),)
    cells = [[h for _, h in cols]] + [[r["impl"] if k == "impl" else _fmt(r.get(k)) for k, _ in cols] for r in rows]
    width = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, width, strict=True)))
        for row in cells
    ]
    return "\n".join(lines)


def _ncu(op: str, impl: str, shape: dict, dtype: str):
    """DRAM bytes of one GPU call, or the reason there is none (printed in the column)."""
    from wkvbench import ncu

    if not torch.cuda.is_available():
        return "no GPU"
    try:
        return ncu.dram_bytes(op, impl, shape, dtype)["dram_bytes"]
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"{impl}: {exc}")
        return "failed"


def main(args) -> int:
    # Counting runs on the CPU: Triton kernels in the interpreter, Numba in the simulator.
    os.environ.setdefault("TRITON_INTERPRET", "1")
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
    from wkvbench.opspec import get_op
    from wkvbench.presets import get_preset
    from wkvbench.registry import list_impls

    spec = get_op(args.op)
    if args.ncu and args.mode != "fwd":
        raise ValueError("ncu: --ncu reads the DRAM bytes of a forward call; leave out --mode or give --mode fwd")
    if args.tokens < 1 or args.batch < 1:
        raise ValueError("tokens: --tokens and --batch must be >= 1")
    shape = dict(spec.shape_for(get_preset(args.model or spec.default_model), args.batch, args.tokens))
    for name, value in args.dim:
        if name not in shape:
            raise ValueError(f"dim: {name!r} is not a dimension of {args.op} ({', '.join(shape)})")
        shape[name] = value
    dtype = getattr(torch, args.dtype)
    names = [n for a in args.impl or () for n in a.split(",") if n] or [
        r.name
        for r in list_impls(args.op)
        if (
            (r.available("cpu")[0] and r.backend in ("torch", "triton", "numba"))
            or (r.name in host_count.DRIVERS and r.supports(dtype, spec.head_size(shape))[0])
        )
        and (args.mode == "fwd" or r.backward)
    ]
    rows, refused = [], 0
    for name in names:
        try:
            row = count_call(args.op, name, shape, dtype, mode=args.mode)
        except NoCompiler as exc:  # a CUDA C impl without a g++ able to build the host emulation
            print(f"{name}: not counted: {str(exc).splitlines()[0]}")
            continue
        except (TypeError, ValueError) as exc:  # this impl cannot be counted on this case (exit 2)
            print(f"{name}: not counted: {exc}", file=sys.stderr)
            refused += 1
            continue
        if args.ncu:
            row["ncu_dram_bytes"] = _ncu(args.op, name, shape, args.dtype)
        rows.append(row)
        if args.json:
            print(json.dumps(row, default=str))
    if not args.json:
        print(
            f"{args.op} {shape} {args.dtype} {args.mode}: counted work of one CPU call "
            "(Triton interpreted, Numba simulated, CUDA C host-emulated)"
        )
        print(table(rows))
        print(
            "bytes counted: torch = every op's reads and writes (eager traffic); triton = every tl.load/tl.store, "
            "masked lanes excluded; numba = every global element read or written; cupy = every load and store "
            "of the CUDA C kernels' threads in the tensors they receive (atomics twice), plus the PyTorch ops "
            "around them.\n"
            "I/O distinct: distinct bytes of the inputs and output the kernels touched "
            "(equal to 'bytes min' when each is read or written at least once)."
        )
        if args.mode != "fwd":
            print(
                f"{args.mode}: forward and backward of one training step (dy seeded); FLOPs formula = forward x "
                f"(1 + bwd_flops_factor); no byte minimum is defined; I/O distinct covers the inputs only."
            )
    return 2 if refused else 0
