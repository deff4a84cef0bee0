"""Helpers of ``scripts/gpu_check.sh``: the suites it runs, the verify table, the summary.

``python scripts/gpu_check.py split-suite SRC MAIN FLA [--rehearse]``
    Write ``SRC`` (a suite TOML) as two suites: ``MAIN`` without the fla implementations and
    ``FLA`` with only them (:func:`split`: the longest duration, its own ``max_cell_s``; fla
    autotunes for minutes on a first call, so it runs last, in a stage of its own). With
    ``--rehearse`` both are scaled down for a CPU (:func:`rehearse`).

``python scripts/gpu_check.py merge-verify OUT IN...``
    Concatenate verify tables (``wkvbench verify --out``, ``scripts/gpu_concurrency.py``) into
    ``OUT``; a header-only table when none has a row yet, so ``verify.csv`` always reads.

``python scripts/gpu_check.py merge-csv OUT IN...``
    Concatenate CSV tables with the same header into ``OUT`` (exit 1 when there is none).

``python scripts/gpu_check.py summary WORK OUT_MD``
    ``summary.md`` from whatever ``WORK`` holds (``scripts/gpu_check_summary.py``).

``python scripts/gpu_check.py headline SUMMARY_MD``
    Print the headline table of a ``summary.md`` (the check's last lines).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check_summary import headline_rows, headline_section, summary, training_lines  # noqa: E402

__all__ = ["headline_rows", "summary", "training_lines"]

#: Durations are divided by this in a rehearsal (327.68 s -> 5.12 s: 256 A-RWKV tokens; 10.24 s -> 0.16 s: 8).
REHEARSE_SECONDS_DIVISOR = 64
#: Batch sizes in a rehearsal: 8 becomes 2 (batch 1 stays).
REHEARSE_MAX_BATCH = 2
REHEARSE_RUN = {
    "device": "cpu",
    "budget_s": 0.02,
    "warmup_s": 0.005,
    "rounds": 1,
    "min_samples": 1,
    "max_samples": 20,
    "max_cell_s": 120,
    "check_max_tokens": 0,
    "energy_s": 0,
}
#: Implementations that run interpreted on a CPU (Triton interpreter, Numba simulator), per op.
INTERPRETED = {
    "bi_wkv7": ("triton_chunked", "triton_chunked_tf32", "triton_chunked_tc", "triton_recurrent", "numba_cuda"),
    "bi_selective_scan": ("triton",),
}
#: The interpreted kernels a rehearsal runs (at :data:`REHEARSE_TINY`): one Triton, one Numba (tens of
#: seconds each there; the other Triton kernels share triton_chunked's plumbing).
REHEARSE_INTERPRETED = ("triton_chunked", "numba_cuda")
#: Where a rehearsal runs interpreted kernels and training: the narrowest A-RWKV, batch 1, 4 tokens.
REHEARSE_TINY = {"models": ["A-RWKV-T"], "batch": [1], "tokens": [4]}
#: The implementations that go to the fla stage, and that stage's limit per cell (its first call autotunes).
FLA_IMPLS = ("fla_chunk", "fla_recurrent")
FLA_MAX_CELL_S = 40


def _groups(data: dict) -> list[dict]:
    if not isinstance(data.get("group"), list):
        raise ValueError("suite: expected [[group]] tables")
    return [dict(g) for g in data["group"]]


def _training(g: dict) -> bool:
    return any(m != "fwd" for m in g.get("modes", ["fwd"]))


def rehearse(data: dict) -> dict:
    """A parsed suite scaled down for a CPU rehearsal, interpreted kernels kept at tiny sizes.

    Durations divided by :data:`REHEARSE_SECONDS_DIVISOR`, batch capped at
    :data:`REHEARSE_MAX_BATCH`, short sampling budgets, accuracy checked at full size. The
    interpreted kernels leave the scaled groups (seconds per call there); the training groups
    run :data:`REHEARSE_INTERPRETED` (and the GPU-only names, skipped) at :data:`REHEARSE_TINY`,
    so ok rows of a Triton and a Numba kernel reach the suite and the training table.
    """
    groups = _groups(data)
    out = dict(data)
    out["name"] = f"{data.get('name', 'suite')}-rehearsal"
    out["description"] = f"{data.get('description', '')} (CPU rehearsal: sizes scaled down)".strip()
    out["run"] = {**data.get("run", {}), **REHEARSE_RUN}
    slow = {op: tuple(n for n in names if n not in REHEARSE_INTERPRETED) for op, names in INTERPRETED.items()}
    new = []
    for g in groups:
        op = g.get("op", "")
        if _training(g):
            g = {k: v for k, v in g.items() if k != "seconds"} | REHEARSE_TINY
            g["impls"] = [i for i in g.get("impls", ["*"]) if i not in slow.get(op, ())]
            new.append(g)
            continue
        if "seconds" in g:
            g["seconds"] = [round(s / REHEARSE_SECONDS_DIVISOR, 6) for s in g["seconds"]]
        if "tokens" in g:
            g["tokens"] = [max(1, t // REHEARSE_SECONDS_DIVISOR) for t in g["tokens"]]
        if "batch" in g:
            g["batch"] = sorted({min(b, REHEARSE_MAX_BATCH) for b in g["batch"]})
        if INTERPRETED.get(op):
            g["impls"] = [i for i in g.get("impls", ["*"]) if i not in INTERPRETED[op]]
            if "*" in g["impls"]:
                g["exclude"] = list(dict.fromkeys([*g.get("exclude", []), *INTERPRETED[op]]))
        if g.get("impls"):
            new.append(g)
    out["group"] = new
    return out


def split(data: dict) -> tuple[dict, dict | None]:
    """``(main suite, fla suite or None)``: the fla implementations moved to a suite of their own.

    The fla suite keeps each group's longest duration (where the headline reads it), the
    inference groups before the training ones, and ``max_cell_s`` = :data:`FLA_MAX_CELL_S`.
    """
    main, fla = [], []
    for g in _groups(data):
        names = g.get("impls", ["*"])
        mine = [i for i in names if i in FLA_IMPLS]
        rest = [i for i in names if i not in FLA_IMPLS]
        if rest:
            main.append({**g, "impls": rest})
        if mine:
            f = {k: v for k, v in g.items() if k != "exclude"} | {"impls": mine}
            for axis in ("seconds", "tokens"):
                if axis in f:
                    f[axis] = [max(f[axis])]
            fla.append(f)
    fla.sort(key=_training)
    out = {**data, "group": main}
    if not fla:
        return out, None
    run = {**data.get("run", {}), "max_cell_s": FLA_MAX_CELL_S}
    name = f"{data.get('name', 'suite')}-fla"
    return out, {**data, "name": name, "description": "fla-core alone (it autotunes on first calls)", "run": run,
                 "group": fla}  # fmt: skip


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"suite value: cannot write {type(v).__name__} as TOML")


def to_toml(data: dict) -> str:
    """A suite dict (top-level scalars, ``[run]``, ``[[group]]``) as TOML text."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if k not in ("run", "group")]
    if "run" in data:
        lines += ["", "[run]", *(f"{k} = {_toml_value(v)}" for k, v in data["run"].items())]
    for g in data.get("group", []):
        lines += ["", "[[group]]", *(f"{k} = {_toml_value(v)}" for k, v in g.items())]
    return "\n".join(lines) + "\n"


def cmd_split_suite(src: str, main: str, fla: str, *flags: str) -> int:
    if set(flags) - {"--rehearse"}:
        raise ValueError(f"split-suite: unknown flag(s) {sorted(set(flags) - {'--rehearse'})}")
    data = tomllib.loads(Path(src).read_text(encoding="utf-8"))
    for dst, suite in zip((main, fla), split(data), strict=True):
        if suite is None:
            Path(dst).unlink(missing_ok=True)
            continue
        Path(dst).write_text(to_toml(rehearse(suite) if "--rehearse" in flags else suite), encoding="utf-8")
    return 0


#: verify.csv's columns (``wkvbench.verify.Check``'s fields; a test keeps them equal).
VERIFY_FIELDS = (
    "op", "impl", "backend", "shape", "dtype", "device", "status", "rel_err", "max_abs", "tol", "seconds",
    "note", "dims", "check", "grad_worst",
)  # fmt: skip


def cmd_merge_verify(out: str, *inputs: str) -> int:
    if cmd_merge_csv(out, *inputs) != 0:
        with open(out, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow(VERIFY_FIELDS)
    return 0


def cmd_merge_csv(out: str, *inputs: str) -> int:
    header, rows = None, []
    for path in inputs:
        p = Path(path)
        if not p.is_file() or p.stat().st_size == 0:
            continue
        with p.open(newline="", encoding="utf-8") as fh:
            r = csv.reader(fh)
            head = next(r, None)
            if head is None:
                continue
            if header is None:
                header = head
            elif head != header:
                raise ValueError(f"{path}: header differs from the first table's")
            rows.extend(r)
    if header is None:
        return 1
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return 0


def cmd_summary(work: str, out_md: str) -> int:
    Path(out_md).write_text(summary(Path(work)), encoding="utf-8")
    return 0


def cmd_headline(summary_md: str) -> int:
    p = Path(summary_md)
    print(headline_section(p.read_text(encoding="utf-8")) if p.is_file() else "summary.md was not written.")
    return 0


COMMANDS = {
    "split-suite": (cmd_split_suite, None),
    "merge-verify": (cmd_merge_verify, None),
    "merge-csv": (cmd_merge_csv, None),
    "summary": (cmd_summary, 2),
    "headline": (cmd_headline, 1),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: gpu_check.py {{{','.join(COMMANDS)}}} ARGS...", file=sys.stderr)
        return 2
    fn, nargs = COMMANDS[argv[0]]
    args = argv[1:]
    least = 3 if fn is cmd_split_suite else 2
    if (nargs is not None and len(args) != nargs) or (nargs is None and len(args) < least):
        print(f"gpu_check.py {argv[0]}: wrong number of arguments", file=sys.stderr)
        return 2
    return fn(*args)


if __name__ == "__main__":
    sys.exit(main())
