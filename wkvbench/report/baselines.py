"""The report's speed-up policy, in one place: which op is measured, and against which baselines.

Every speed-up the report shows (the headline, fig3, the headline table) is a median of a
:data:`SUBJECT_OP` implementation over the median of a :data:`BASELINES` entry's best ok
implementation at the same model size and slice (device, dtype, batch, variant), preferring
the baseline's model family when several models have that size. Nothing else in the report
names a baseline, and the report never reads the per-row ``speedup``/``baseline_impl`` columns
some runs carry (:data:`wkvbench.report.load.IGNORED_COLUMNS`).
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def accepts(self, impl: str) -> bool:
        return impl == self.exact if self.exact else impl.startswith(self.prefix)


#: AST attention as written, the fastest SDPA backend, the fastest Mamba bidirectional scan.
BASELINES = (
    Baseline(
        "attention_eager",
        "AST attention (torch_eager)",
        "attention",
        "",
        "ast",
        "AST attention",
        "AST eager",
        exact="torch_eager",
    ),
    Baseline("attention_sdpa", "attention (best SDPA)", "attention", "sdpa_", "ast", "best SDPA attention", "SDPA"),
    Baseline("scan", "Mamba scan (best)", "bi_selective_scan", "", "aum", "best Mamba scan", "Mamba"),
)
