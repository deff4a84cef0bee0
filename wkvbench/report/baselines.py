"""The report's speed-up policy, in one place: which op is measured, and against which baselines.

Every speed-up is a :data:`SUBJECT_OP` median over a :data:`BASELINES` entry's best ok median
at the same model size and slice; never against an op's naive loop (:func:`candidates`,
:func:`headline_subjects`). Nothing else in the report names a baseline. The policy and why:
docs/notes/report.md ("Rules").
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

#: The op whose implementations are compared with the baselines.
SUBJECT_OP = "bi_wkv7"


@dataclass(frozen=True)
class Baseline:
    """What a Bi-WKV7 speed-up is measured against."""

    name: str
    label: str
    op: str
    prefix: str  # impl names it may use ("" = any)
    family: str  # preferred model family at a size
    short: str  # in the headline sentence
    column: str  # in the headline table
    exact: str = ""  # one impl name only
    dtype: str = ""  # taken at this dtype whatever the subject's ("as run"); "" = the subject's dtype

    def accepts(self, impl: str) -> bool:
        if self.exact:
            return impl == self.exact
        return impl.startswith(self.prefix) and impl != naive_impl(self.op)


#: AST attention as written, the fastest SDPA backend, the fastest Mamba bidirectional scan.
BASELINES = (
    Baseline(
        "attention_eager",
        "AST attention (torch_eager, float16)",
        "attention",
        "",
        "ast",
        "AST attention",
        "AST eager",
        exact="torch_eager",
        dtype="float16",
    ),
    Baseline("attention_sdpa", "attention (best SDPA)", "attention", "sdpa_", "ast", "best SDPA attention", "SDPA"),
    Baseline("scan", "Mamba scan (best)", "bi_selective_scan", "", "aum", "best Mamba scan", "Mamba"),
)


def naive_impl(op: str) -> str:
    """The op's naive implementation (never a headline baseline nor the headline's best), or ''."""
    from wkvbench.ops import get_op

    try:
        return get_op(op).naive_impl
    except ValueError:
        return ""


def candidates(df: pd.DataFrame, baseline: Baseline) -> pd.DataFrame:
    """The rows a baseline may use: its op, the impls it accepts, and, with :attr:`Baseline.dtype`,
    that dtype's rows restated once per dtype (and precision, where the table has one) the subject was
    measured in (so they match any slice: the baseline as run)."""
    rows = df[(df["op"] == baseline.op) & df["impl"].map(baseline.accepts).astype(bool)]
    if not baseline.dtype:
        return rows
    rows = rows[rows["dtype"] == baseline.dtype]
    cols = ["dtype", "precision"] if "precision" in df.columns else ["dtype"]
    seen = df.loc[df["op"] == SUBJECT_OP, cols].drop_duplicates()
    if rows.empty or seen.empty:
        return rows
    return pd.concat([rows.assign(**dict(zip(cols, v, strict=True))) for v in seen.itertuples(index=False)],
                     ignore_index=True)  # fmt: skip


def headline_subjects(rows: pd.DataFrame) -> pd.DataFrame:
    """The subject's rows that may be the headline's "best": all but the naive implementation."""
    return rows[rows["impl"] != naive_impl(SUBJECT_OP)]
