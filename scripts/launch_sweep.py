"""Time every launch configuration of the Bi-WKV7 kernels with the harness timer.

The kernels pick their launch shape from a model of the GPU (``recurrent_config``,
``chunked_config``, ``pick_split``, ``choose_rows_per_block``): at batch 8 and A-RWKV-B width,
``B * H * 2`` = 192 programs at one per SM leave 60 of an H100's 132 SMs without a second wave's
work, and CuPy's ``SPLIT = 1`` gives 96 blocks. This measures instead of predicting: for each
implementation's launch parameter (Triton ``block_v``, CuPy ``split``, Numba ``rows_per_block``)
every allowed value is run at the same inputs, checked against the float64 reference at the
dtype's accuracy bar (:func:`wkvbench.accuracy.compare`: rel. L2 within ``tolerance(dtype)``; the
reference is computed once per batch, so every configuration, the default included, can fail),
and timed with :class:`wkvbench.harness.timing.Timer` (per-call samples with the L2
flushed, and ``gpu_ms``, back-to-back). One CSV row per configuration, written as it finishes:

    impl, param, value, default, batch, tokens, heads, dtype, device, status, note,
    median_ms, p20_ms, p80_ms, gpu_ms, n_samples, rel_err, tol

Usage: ``python scripts/launch_sweep.py --out sweep.csv [--device cuda] [--batch 1,8]
[--tokens 16384] [--heads 12] [--dtype bfloat16] [--budget-s 0.3] [--impls ...] [--min-samples 3]``.
On a CPU it runs the interpreted kernels (``TRITON_INTERPRET=1``, ``NUMBA_ENABLE_CUDASIM=1``) at whatever small sizes
it is given; the CuPy rows say ``skipped``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import math
import sys
import time
from pathlib import Path

import torch

from wkvbench import accuracy, ops
from wkvbench.harness import timing
from wkvbench.impls import _gpu
from wkvbench.inputs import bi_wkv7_inputs

FIELDS = (
    "impl", "param", "value", "default", "batch", "tokens", "heads", "dtype", "device", "status", "note",
    "median_ms", "p20_ms", "p80_ms", "gpu_ms", "n_samples", "rel_err", "tol",
)  # fmt: skip


def configs(device: torch.device, B: int, H: int) -> list[tuple[str, str, list, object, object]]:
    """``(impl, param, values, default value, call(x, value) or a skip reason)`` per kernel."""
    from wkvbench.impls import bi_wkv7_cupy as cu
    from wkvbench.impls import bi_wkv7_numba as nb
    from wkvbench.impls import bi_wkv7_triton as tr

    sms = _gpu.sm_count(device) if device.type == "cuda" else _gpu.DEFAULT_SMS
    out = []
    ok, why = tr._check(device)
    out.append(
        (
            "triton_recurrent", "block_v", list(tr.RECURRENT_BLOCKS), tr.recurrent_config(B, H, sms)["BV"],
            (lambda x, val: tr.bi_wkv7_recurrent(**x, block_v=val)) if ok else why,
        )
    )  # fmt: skip
    out.append(
        (
            "triton_chunked", "block_v", list(tr.CHUNKED_BLOCKS), tr.chunked_config(B, H, sms)["BV"],
            (lambda x, val: tr.bi_wkv7_chunked(**x, block_v=val)) if ok else why,
        )
    )  # fmt: skip
    ok, why = cu._check(device) if device.type == "cuda" else (False, "CuPy needs a CUDA device")
    out.append(
        (
            "cupy_cuda", "split", list(cu.SPLITS), cu.pick_split(B * H, sms),
            (lambda x, val: cu.cupy_cuda(**x, split=val)) if ok else why,
        )
    )  # fmt: skip
    ok, why = nb._check(device)
    out.append(
        (
            "numba_cuda", "rows_per_block", list(nb.ROWS_CHOICES), nb.choose_rows_per_block(B * H, sms),
            (lambda x, val: nb.numba_cuda(**x, rows_per_block=val)) if ok else why,
        )
    )  # fmt: skip
    return out


def sweep(device, batches, tokens, heads, dtype, budget_s, writer, log=print, impls=None, min_samples=3) -> int:
    """Run the sweep, one row per configuration through ``writer(row)``; returns the number of rows.

    ``impls`` limits it to those implementations (default: all four).
    """
    timer = timing.Timer(device)
    n = 0
    for B in batches:
        x = bi_wkv7_inputs(B, tokens, heads, 64, dtype=dtype, device=device, seed=0)
        ref = None  # the float64 reference, computed when the first configuration runs
        for impl, param, values, default, call in configs(device, B, heads):
            if impls is not None and impl not in impls:
                continue
            base = {"impl": impl, "param": param, "default": default, "batch": B, "tokens": tokens, "heads": heads}
            base.update(dtype=str(dtype).replace("torch.", ""), device=device.type)
            for val in sorted(values, key=lambda v: v != default):  # the default first
                row = {**base, "value": val}
                if isinstance(call, str):
                    writer({**row, "status": "skipped", "note": call})
                    n += 1
                    continue
                fn = functools.partial(call, x, val)
                try:
                    y, _ = timer.first_call(fn)
                    if ref is None:
                        ref = ops.reference_output("bi_wkv7", x)
                    acc = accuracy.compare(y, ref, dtype)
                    del y
                    est = timer.warmup(fn, min(0.05, budget_s / 4))
                    k = max(min_samples, min(200, math.ceil(budget_s * 1e3 / max(est, 1e-3))))
                    st = timing.summarize(timer.samples(fn, k))
                    gpu = timer.gpu_ms(fn, est, repeats=min(3, min_samples))
                    bad = "" if acc.passed else f"rel. L2 {acc.rel_err:.2e} over the {acc.tol:.0e} bar vs float64"
                    row.update(
                        status="ok" if acc.passed else "wrong", note=bad if acc.finite else "non-finite output",
                        median_ms=st.median_ms, p20_ms=st.p20_ms, p80_ms=st.p80_ms, gpu_ms=gpu,
                        n_samples=st.n_samples, rel_err=acc.rel_err, tol=acc.tol,
                    )  # fmt: skip
                except torch.OutOfMemoryError as exc:
                    row.update(status="oom", note=str(exc).split("\n")[0][:200])
                except Exception as exc:  # one bad config must not stop the sweep
                    row.update(status="failed", note=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
                writer(row)
                n += 1
                ms = row.get("median_ms")
                log(f"{impl:18s} {param}={val!s:3s} B={B} T={tokens}: {row['status']} {f'{ms:.4g} ms' if ms else ''}")
    return n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--out", required=True, help="CSV file (appended, header once)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", default="1,8", help="comma list")
    p.add_argument("--tokens", type=int, default=16384)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    p.add_argument("--budget-s", type=float, default=0.3, help="sampling time per configuration")
    p.add_argument("--min-samples", type=int, default=3, help="fewest timed calls per configuration")
    p.add_argument("--impls", default="", help="comma list (default: all four kernels)")
    args = p.parse_args(argv)
    impls = [s for s in args.impls.split(",") if s] or None
    known = ("triton_recurrent", "triton_chunked", "cupy_cuda", "numba_cuda")
    if impls and set(impls) - set(known):
        p.error(f"--impls: unknown {sorted(set(impls) - set(known))}; known: {', '.join(known)}")
    if args.min_samples < 1:
        p.error("--min-samples must be >= 1")
    try:
        batches = [int(b) for b in args.batch.split(",") if b]
    except ValueError:
        p.error(f"--batch: expected a comma list of integers, got {args.batch!r}")
    if not batches or min(batches) < 1 or args.tokens < 1 or args.heads < 1:
        p.error("--batch, --tokens and --heads must be positive")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.exists() or out.stat().st_size == 0
    t0 = time.perf_counter()
    with out.open("a", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
            fh.flush()

        def write(row):
            w.writerow(row)
            fh.flush()

        n = sweep(torch.device(args.device), batches, args.tokens, args.heads, getattr(torch, args.dtype),
                  args.budget_s, write, log=lambda s: print(s, file=sys.stderr, flush=True),
                  impls=impls, min_samples=args.min_samples)  # fmt: skip
    print(f"launch sweep: {n} configuration(s) in {time.perf_counter() - t0:.1f} s -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
