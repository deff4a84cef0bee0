"""How implementations look in every figure, and how numbers are written in every table.

Each implementation keeps one colour, one marker and one line style across all figures, so a
reader learns the legend once. Colours come from colour-blind-safe palettes (Okabe-Ito, Paul
Tol's "muted"); the *line style* encodes the op (solid Bi-WKV7, dashed attention, dash-dot Mamba
scan) and the *marker* the implementation within its op, so the figures stay readable in
black-and-white print. Names not listed here (plugins, new ``triton_*`` kernels) get a
deterministic style from a CRC32 of ``op/name``: the same name looks the same in every run.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

from wkvbench.opspec import OPS
from wkvbench.registry import list_impls

OP_LINESTYLE = {"bi_wkv7": "-", "attention": "--", "bi_selective_scan": "-."}

#: (colour, marker) per (op, impl name).
_FIXED = {
    ("bi_wkv7", "torch_loop"): ("#56B4E9", "o"),
    ("bi_wkv7", "torch_chunked"): ("#0072B2", "s"),
    ("bi_wkv7", "triton_chunked"): ("#009E73", "^"),
    ("bi_wkv7", "triton_recurrent"): ("#117733", "v"),
    ("bi_wkv7", "triton_chunked_tf32"): ("#66C2A4", "<"),
    ("bi_wkv7", "triton_chunked_tc"): ("#999933", "d"),
    ("bi_wkv7", "cupy_cuda"): ("#E69F00", "D"),
    ("bi_wkv7", "numba_cuda"): ("#CC79A7", "P"),
    ("bi_wkv7", "fla_chunk"): ("#332288", "*"),
    ("bi_wkv7", "fla_recurrent"): ("#44AA99", "h"),
    ("attention", "torch_eager"): ("#D55E00", "X"),
    ("attention", "sdpa_flash"): ("#882255", "d"),
    ("attention", "sdpa_efficient"): ("#CC6677", "p"),
    ("attention", "sdpa_cudnn"): ("#AA4499", "H"),
    ("attention", "sdpa_math"): ("#999933", "8"),
    ("attention", "flash_attn"): ("#000000", "*"),
    ("bi_selective_scan", "torch_loop"): ("#8E8E8E", "o"),
    ("bi_selective_scan", "torch_chunked"): ("#7A5C00", "s"),
    ("bi_selective_scan", "triton"): ("#555555", "^"),
    ("bi_selective_scan", "mamba_ssm"): ("#5D3A9B", "D"),
}
#: Families for names not in the table: a prefix keeps related kernels in related colours.
_PREFIX_COLOURS = {
    ("bi_wkv7", "triton"): ("#009E73", "#117733", "#2CA25F", "#006D2C", "#66C2A4"),
    ("attention", "sdpa"): ("#882255", "#CC6677", "#AA4499", "#7B2D4F"),
}
_FALLBACK_COLOURS = ("#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#777777", "#994F00")
_FALLBACK_MARKERS = ("o", "s", "^", "v", "<", ">", "D", "P", "X", "*", "h", "p")

#: How a cell that has no valid timing is written on the figures.
STATUS_LABEL = {"wrong": "wrong", "failed": "failed", "oom": "OOM", "timeout": "timeout", "skipped": "skipped"}


@dataclass(frozen=True)
class Style:
    colour: str
    marker: str
    linestyle: str

    def kwargs(self) -> dict:
        return {"color": self.colour, "marker": self.marker, "linestyle": self.linestyle}


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def style_for(op: str, impl: str) -> Style:
    """The fixed style of ``impl`` of ``op`` (deterministic for names not in the table)."""
    linestyle = OP_LINESTYLE.get(op, ":")
    if (op, impl) in _FIXED:
        colour, marker = _FIXED[(op, impl)]
        return Style(colour, marker, linestyle)
    h = _crc(f"{op}/{impl}")
    prefix = impl.split("_", 1)[0]
    colours = _PREFIX_COLOURS.get((op, prefix), _FALLBACK_COLOURS)
    return Style(colours[h % len(colours)], _FALLBACK_MARKERS[(h // 7) % len(_FALLBACK_MARKERS)], linestyle)


def op_label(op: str) -> str:
    """The op record's label (``Bi-WKV7``, ``Mamba scan``); an op this package does not know, by name."""
    return OPS[op].label if op in OPS else op


def impl_label(op: str, impl: str) -> str:
    """Legend text: the label ``impl`` was registered with, else ``<op label> <name>`` (``Bi-WKV7 torch_chunked``)."""
    rec = next((r for r in list_impls(op) if r.name == impl), None) if op in OPS else None
    return rec.label if rec is not None and rec.label else f"{op_label(op)} {impl}"


def op_sort_key(op: str) -> tuple[int, str]:
    """Ops in the order of their records (:data:`wkvbench.opspec.OPS`), unknown ones after, by name."""
    order = list(OPS)
    return (order.index(op) if op in order else len(order), op)


# ----------------------------------------------------------------------------- number formats
def _finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def fmt_ms(x) -> str:
    """Milliseconds to three significant figures without exponents: 0.0123, 1.23, 12.3, 1,234."""
    if not _finite(x):
        return "-"
    x = float(x)
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def fmt_speedup(x) -> str:
    """A ratio: ``13.3x``, ``2.41x``, ``0.87x``."""
    if not _finite(x):
        return "-"
    x = float(x)
    return f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"


def fmt_sci(x) -> str:
    """Small errors: ``3.1e-06``."""
    return f"{float(x):.1e}" if _finite(x) else "-"


def _scaled(x, steps, plain: str) -> str:
    """``x`` in the largest unit of ``steps`` ((divisor, suffix), largest first) it reaches."""
    if not _finite(x):
        return "-"
    x = float(x)
    for div, unit in steps:
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return plain.format(x)


def fmt_rate(x) -> str:
    """Throughputs: ``1.23M``, ``45.6k``, ``789``."""
    return _scaled(x, ((1e9, "G"), (1e6, "M"), (1e3, "k")), "{:.3g}")


def fmt_bytes(x) -> str:
    """Memory: ``1.5 GiB``, ``12 MiB``, ``512 B``."""
    return _scaled(x, ((2**30, " GiB"), (2**20, " MiB"), (2**10, " KiB")), "{:.0f} B")


def fmt_seconds(x) -> str:
    """Audio durations: ``10.24 s``, ``328 s``."""
    if not _finite(x):
        return "-"
    x = float(x)
    return f"{x:g} s" if x == round(x, 2) else f"{x:.2f} s"
