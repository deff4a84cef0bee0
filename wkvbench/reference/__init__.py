"""The truth: float64 references for every op wkvbench measures.

Short per-token loops and plain matmuls, computed in float64 from the inputs as given (after
their rounding to the I/O dtype), on the inputs' device, returning float64. Every
implementation, the peers included, is judged against these (docs/spec.md sections 1-5).
"""

from wkvbench.reference.attention import attention
from wkvbench.reference.selective_scan import bi_selective_scan, selective_scan
from wkvbench.reference.wkv7 import bi_wkv7, wkv7

__all__ = ["attention", "bi_selective_scan", "bi_wkv7", "selective_scan", "wkv7"]
