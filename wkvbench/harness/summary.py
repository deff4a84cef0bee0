"""The table ``wkvbench run`` prints at the end: statuses per implementation and mode, and the
geometric-mean speed-up over the op's naive implementation (its record's ``naive_for(model)``).
Network rows are named by network: one line per network and mixer, "A-RWKV-T (torch_chunked)",
and per precision and activation checkpointing where a run has several."""

from __future__ import annotations

import math
from collections import defaultdict

from wkvbench import ops, opspec
from wkvbench.harness.suite import case_id_of
from wkvbench.presets import network_label
from wkvbench.schema import STATUSES


def _ok_ms(row: dict) -> float | None:
    """The median of an ``ok`` (typed) row with a positive timing, else None."""
    ms = row.get("median_ms")
    return ms if row.get("status") == "ok" and ms is not None and ms > 0 else None


def _name(row: dict) -> str:
    """The implementation column: the mixer named by its network for a network row."""
    spec = opspec.OPS.get(row["op"])
    if spec is not None and spec.prepare is not None:
        return network_label(str(row["model"]), row["impl"])
    return row["impl"]


def _mode(row: dict) -> str:
    mode = row.get("mode") or ops.DEFAULT_MODE
    precision = row.get("precision") or "pure"
    checkpoint = row.get("checkpoint") or "none"
    mode = mode if precision == "pure" else f"{mode} {precision}"
    return mode if checkpoint == "none" else f"{mode} checkpoint={checkpoint}"


def summary_table(rows: list[dict]) -> str:
    """Counts per status, and per (op, impl, mode) the geometric-mean speed-up over the op's naive
    implementation (its record's ``naive_for(model)``) in the cases where both are ``ok``.

    ``rows`` are typed rows (``RunStore.get``)."""
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    naive: dict[tuple, float] = {}
    for r in rows:
        groups[(r["op"], _name(r), _mode(r))].append(r)
        if r["op"] in opspec.OPS and r["impl"] == ops.get_op(r["op"]).naive_for(r["model"]) and _ok_ms(r):
            naive[case_id_of(r)] = _ok_ms(r)
    head = ["op", "impl", "mode", *STATUSES, "geomean vs naive", "best tok/s"]
    lines = [head]
    for (op, impl, mode), rs in groups.items():
        counts = [str(sum(1 for r in rs if r["status"] == s) or "") for s in STATUSES]
        sp = [naive[case_id_of(r)] / _ok_ms(r) for r in rs if _ok_ms(r) and case_id_of(r) in naive]
        gm = f"{math.exp(sum(map(math.log, sp)) / len(sp)):.3g}x" if sp else ""
        tps = [r["tokens_per_s"] for r in rs if r.get("tokens_per_s")]
        lines.append([op, impl, mode, *counts, gm, f"{max(tps):.4g}" if tps else ""])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
