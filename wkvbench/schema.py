"""The results schema shared by the harness (writer) and the report (reader).

``results.csv`` is one tidy table: a row per (case, implementation), appended and flushed as
each cell finishes (CONTRACT section 7). ``KEY`` identifies a cell: a re-run or ``--resume``
replaces or skips rows by it, never duplicates them. Raw timing samples go to
``samples.jsonl`` beside it, one JSON object per cell: the key fields plus ``samples_ms``.
"""

from __future__ import annotations

#: 2: the ``baseline_impl`` and ``speedup`` columns are gone (speed-ups are the report's business).
SCHEMA_VERSION = 2

RESULTS_FILE = "results.csv"
SAMPLES_FILE = "samples.jsonl"
ENV_FILE = "env.json"

STATUSES = ("ok", "wrong", "failed", "oom", "timeout", "skipped")

#: Columns that identify a cell.
KEY = ("op", "impl", "model", "batch", "tokens", "dtype", "device", "variant")

#: Every column of results.csv, in order.
COLUMNS = (
    "schema_version",
    "timestamp",  # ISO 8601, UTC, when the row was written
    "op",
    "impl",
    "backend",
    "model",  # preset name, e.g. A-RWKV-B
    "family",  # a-rwkv | ast | aum
    "batch",
    "tokens",
    "seconds",  # seconds of audio this token count stands for (model's front end)
    "dtype",  # float32 | bfloat16 | float16
    "device",  # cpu | cuda
    "variant",  # input variant (inputs.WKV7_VARIANTS), "realistic" by default
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
    "first_call_ms",  # the very first call (compile included), timed separately
    "tokens_per_s",  # batch * tokens / median
    "audio_s_per_s",  # batch * seconds / median
    "bytes_moved",  # minimum bytes the op must read and write
    "gbs",  # bytes_moved / median
    "pct_copy_bw",  # 100 * gbs / copy bandwidth measured at the start of the run (percent)
    "flops",
    "tflops",
    "peak_mem_bytes",  # torch.cuda.max_memory_allocated during the cell (reset per cell)
    "energy_j_per_1k_tokens",  # NVML energy counter, where the GPU has one
    "rel_err",  # relative L2 against the float64 reference (CONTRACT section 5)
    "max_abs_err",
    "tol",
    "gpu",  # GPU name, or the CPU model for device=cpu
    "commit",  # git commit of wkvbench
    "wkvbench_version",
)

#: Columns read back as text; ``INTEGER_COLUMNS`` as integers; every other column is a float.
TEXT_COLUMNS = (
    "timestamp",
    "op",
    "impl",
    "backend",
    "model",
    "family",
    "dtype",
    "device",
    "variant",
    "shape",
    "status",
    "note",
    "gpu",
    "commit",
    "wkvbench_version",
)
INTEGER_COLUMNS = ("batch", "tokens")
NUMERIC_COLUMNS = tuple(c for c in COLUMNS if c not in TEXT_COLUMNS and c not in INTEGER_COLUMNS)
