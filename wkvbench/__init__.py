"""wkvbench: a benchmarking suite for bidirectional RWKV-7 (Bi-WKV7) kernels.

Public API (docs/spec.md section 4)::

    wkvbench.bi_wkv7(r, w, k, v, a, b, g=None, impl="auto") -> y
    wkvbench.attention(q, k, v, impl="auto") -> o
    wkvbench.bi_selective_scan(u, delta, A, A_b, Bm, Cm, Dskip=None, z=None,
                               delta_bias=None, delta_softplus=True, impl="auto") -> y
    wkvbench.list_impls(op=None), wkvbench.register_impl(op, name=..., backend=..., ...)
    wkvbench.reference.wkv7 / bi_wkv7 / attention / selective_scan / bi_selective_scan

Layout: ``reference/`` (float64 truth), ``impls/`` (one module per op and backend),
``opspec`` (the op records, one per op: docs/adding-an-op.md), ``ops`` (dispatch), ``registry``
(implementation records), ``inputs`` (realistic inputs), ``accuracy`` (the bar), ``schema``
(results columns, cell key, derived columns), ``verify`` (the correctness gate), ``harness/``
(timing, sweeps, results), ``report/`` (figures, report, compare), ``cli`` (the ``wkvbench``
command).
"""

from wkvbench import models, reference  # models registers the network op (wkvbench.models.network_op)
from wkvbench.ops import attention, bi_selective_scan, bi_wkv7
from wkvbench.registry import Impl, list_impls, register_impl

__version__ = "0.1.0"

__all__ = [
    "Impl",
    "__version__",
    "attention",
    "bi_selective_scan",
    "bi_wkv7",
    "list_impls",
    "models",
    "reference",
    "register_impl",
]
