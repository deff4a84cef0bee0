"""The results schema shared by the harness (writer) and the report (reader).

``results.csv`` is one tidy table: a row per (case, implementation), appended and flushed as
each cell finishes (docs/spec.md section 7). :data:`KEY` identifies a cell: a re-run or
``--resume`` replaces or skips rows by it, never duplicates them. Raw timing samples go to
``samples.jsonl`` beside it, one JSON object per cell: the key fields plus ``samples_ms``.

This module is the one place that

* builds a cell's key: :func:`key` (from fields) and :func:`key_of` (from a row or a samples
  record, typed or as read from CSV); adding a key column is one entry in :data:`KEY` (plus its
  value for older files in :data:`KEY_DEFAULTS`);
* types a row read back from CSV: :func:`parse_row` (``INTEGER_COLUMNS`` as int,
  ``NUMERIC_COLUMNS`` as float, empty cells as None, the rest as text);
* derives a row's rates from its measured columns: :func:`derive`.
"""

from __future__ import annotations

import math

#: 2: the ``baseline_impl`` and ``speedup`` columns are gone (speed-ups are the report's business).
#: 3: the ``mode`` key column (fwd, bwd, fwd_bwd) and ``grad_rel_err``, ``grad_worst``, ``grad_tol``.
#: 4: ``saved_bytes`` (training modes: what the forward keeps for the backward, beyond the inputs).
#: 5: appended ``graph_ms``, ``graph_note``, ``rel_ci``, ``throttled_frac``, ``counted_flops``, ``counted_bytes``;
#:    the key column ``precision`` (``pure`` when absent: older rows read as pure).
#: 6: the key column ``checkpoint`` (``none`` when absent: older rows read as none).
SCHEMA_VERSION = 6

RESULTS_FILE = "results.csv"
SAMPLES_FILE = "samples.jsonl"
ENV_FILE = "env.json"

STATUSES = ("ok", "wrong", "failed", "oom", "timeout", "skipped")
#: Timing modes (docs/spec.md section 1): inference, backward only, forward + backward.
MODES = ("fwd", "bwd", "fwd_bwd")
#: The modes that run a backward (gated by the gradient bars).
TRAINING_MODES = ("bwd", "fwd_bwd")

#: Columns that identify a cell, in key order.
KEY = ("op", "impl", "model", "batch", "tokens", "dtype", "device", "variant", "mode", "precision", "checkpoint")
#: Value of a key column in rows written before that column existed (or left empty).
KEY_DEFAULTS = {"variant": "realistic", "mode": "fwd", "precision": "pure", "checkpoint": "none"}
#: Precisions of a cell (docs/spec.md section 8): the dtype throughout, or float32 weights under autocast.
PRECISIONS = ("pure", "autocast")
#: Activation checkpointing of a network training cell (docs/spec.md section 8): none, or each block
#: recomputed in the backward (``torch.utils.checkpoint``).
CHECKPOINTS = ("none", "blocks")

#: Every column of results.csv, in order: the key first.
COLUMNS = (
    "schema_version",
    "timestamp",  # ISO 8601, UTC, when the row was written
    *KEY,  # op, impl, model (preset name, e.g. A-RWKV-B), batch, tokens, dtype, device, variant, mode
    "backend",
    "family",  # a-rwkv | ast | aum
    "seconds",  # seconds of audio this token count stands for (model's front end)
    "shape",  # JSON of the op's shape dict, e.g. {"B": 1, "T": 512, "H": 12, "N": 64}
    "status",  # one of STATUSES
    "note",  # reason for a non-ok status, or remarks
    "median_ms",
    "p20_ms",
    "p80_ms",
    "min_ms",
    "mean_ms",
    "iqr_ms",
    "cv",  # coefficient of variation of the samples
    "n_samples",
    "gpu_ms",  # per-call time of back-to-back calls (no host launch gap, L2 warm between them)
    "first_call_ms",  # the implementation's first call in its worker process, timed separately
    "compiled",  # 1: that first call compiled or loaded kernels (backend caches grew); 0: it did not; empty: unknown
    "tokens_per_s",  # derived: batch * tokens / median
    "audio_s_per_s",  # derived: batch * seconds / median
    "bytes_moved",  # minimum bytes the op must read and write
    "gbs",  # derived: bytes_moved / median
    "pct_copy_bw",  # derived: 100 * gbs / copy bandwidth measured at the start of the run (percent)
    "flops",  # of the timed mode: forward, backward (record's bwd_flops_factor x forward) or both
    "tflops",  # derived: flops / median
    "peak_mem_bytes",  # torch.cuda.max_memory_allocated during the cell (reset per cell; training: activations too)
    "energy_j_per_1k_tokens",  # derived from the NVML energy counter, where the GPU has one
    "rel_err",  # relative L2 against the float64 reference (docs/spec.md section 5)
    "max_abs_err",
    "tol",
    "grad_rel_err",  # bwd / fwd_bwd: the worst gradient's relative L2 against float64 autograd
    "grad_worst",  # its name, e.g. dw
    "grad_tol",
    "saved_bytes",  # bwd / fwd_bwd: bytes the forward saves for the backward beyond the inputs (any device)
    "gpu",  # GPU name, or the CPU model for device=cpu
    "commit",  # git commit of wkvbench
    "wkvbench_version",
    # schema 5 (wkvbench.harness.measure): appended, so older files keep their column order
    "graph_ms",  # median of CUDA-graph replays, L2 flushed before each (empty on CPU)
    "graph_note",  # why graph_ms is empty on a GPU (capture failed: ...)
    "rel_ci",  # bootstrap 95% half-width of the median / median
    "throttled_frac",  # share of samples taken while NVML reported power or thermal throttling
    "counted_flops",  # FLOPs of one timed call, counted (PyTorch implementations)
    "counted_bytes",  # bytes of one timed call, counted (PyTorch op traffic; Triton in the interpreter)
)

#: Columns read back as integers; ``TEXT_COLUMNS`` as text; every other column as floats
#: (``NUMERIC_COLUMNS``). A new text column must be named in ``TEXT_COLUMNS``.
INTEGER_COLUMNS = ("batch", "tokens")
TEXT_COLUMNS = (
    "timestamp",
    *(c for c in KEY if c not in INTEGER_COLUMNS),
    "backend",
    "family",
    "shape",
    "status",
    "note",
    "grad_worst",
    "gpu",
    "commit",
    "wkvbench_version",
    "graph_note",
)
NUMERIC_COLUMNS = tuple(c for c in COLUMNS if c not in TEXT_COLUMNS and c not in INTEGER_COLUMNS)
#: Columns :func:`derive` computes.
DERIVED_COLUMNS = ("tokens_per_s", "audio_s_per_s", "gbs", "pct_copy_bw", "tflops", "energy_j_per_1k_tokens")


def _key_value(column: str, value):
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        value = KEY_DEFAULTS.get(column, "")
    if column in INTEGER_COLUMNS and value != "":
        try:
            return int(float(value))
        except (TypeError, ValueError):  # not a number: a key no valid row has
            return str(value)
    return str(value)


def key(**fields) -> tuple:
    """A cell's key from its fields (every :data:`KEY` column by name, nothing else).

    Integer columns come out as ``int`` and the rest as ``str``, whether the fields were typed
    or read from CSV, so keys built anywhere compare equal.
    """
    missing = [k for k in KEY if k not in fields and k not in KEY_DEFAULTS]
    extra = sorted(set(fields) - set(KEY))
    if missing or extra:
        raise ValueError(f"key: missing {missing}, unexpected {extra}; expected the columns {KEY}")
    return tuple(_key_value(k, fields.get(k)) for k in KEY)


def key_of(row) -> tuple:
    """The key of a results row or samples record (a dict, or anything with ``.get``)."""
    return tuple(_key_value(k, row.get(k)) for k in KEY)


def parse_row(raw: dict) -> dict:
    """A row as read from CSV (all strings) with the schema's types; empty cells become None."""
    out = {}
    for col, val in raw.items():
        if col in INTEGER_COLUMNS or col in NUMERIC_COLUMNS:
            if val is None or val == "":
                out[col] = None
                continue
            try:
                num = float(val)
            except ValueError:
                raise ValueError(f"row: column {col!r}: expected a number, got {val!r}") from None
            out[col] = int(num) if col in INTEGER_COLUMNS else num
        else:
            out[col] = "" if val is None else str(val)
    return out


def derive(row: dict, *, copy_bandwidth_gbs: float | None = None, joules_per_call: float | None = None) -> dict:
    """The derived columns of a row from its measured ones (all None unless ``ok`` and timed).

    Reads ``status``, ``median_ms``, ``batch``, ``tokens``, ``seconds``, ``bytes_moved`` and
    ``flops``; ``copy_bandwidth_gbs`` (the run's copy probe) gives ``pct_copy_bw`` and
    ``joules_per_call`` (NVML) gives ``energy_j_per_1k_tokens``.
    """
    out = dict.fromkeys(DERIVED_COLUMNS)
    ms = row.get("median_ms")
    if row.get("status") != "ok" or ms is None or ms == "" or not float(ms) > 0:
        return out
    sec = float(ms) / 1e3
    tokens = int(row["batch"]) * int(row["tokens"])
    out["tokens_per_s"] = tokens / sec
    if row.get("seconds") not in (None, ""):
        out["audio_s_per_s"] = int(row["batch"]) * float(row["seconds"]) / sec
    if row.get("bytes_moved") not in (None, ""):
        out["gbs"] = float(row["bytes_moved"]) / sec / 1e9
        if copy_bandwidth_gbs:
            out["pct_copy_bw"] = 100.0 * out["gbs"] / copy_bandwidth_gbs
    if row.get("flops") not in (None, ""):
        out["tflops"] = float(row["flops"]) / sec / 1e12
    if joules_per_call is not None:
        out["energy_j_per_1k_tokens"] = joules_per_call / tokens * 1e3
    return out
