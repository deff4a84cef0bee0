"""Bi-WKV7 in Triton: ``triton_recurrent``, ``triton_chunked``, ``triton_chunked_tf32``, ``triton_chunked_tc``.

Each registered implementation of the ``bi_wkv7`` op (docs/spec.md section 1) is one launch that
runs both scan directions and fuses the gate merge; ``triton_recurrent`` is the per-token
recurrence with the state in registers, the chunked two the WY / DPLR chunked form on tensor
cores (``triton_chunked_tf32``: float32 inputs on TF32; ``triton_chunked_tc``: 3xTF32 split dots, float32
accuracy, in the float32 forward and every backward). With grad on they train through
``train.py`` (forward ``fwd.py``, backwards ``bwd.py`` and ``chunked_bwd.py``, helpers
``common.py``). Design, configs, precision and compiler evidence: docs/notes/triton_bi_wkv7.md.
"""

from __future__ import annotations

import functools

import torch

from wkvbench.impls import _compile, _gpu
from wkvbench.impls.bi_wkv7_triton import bwd, chunked_bwd, fwd
from wkvbench.impls.bi_wkv7_triton.common import _IMPORT_ERROR, HAS_TRITON, HEAD_SIZES
from wkvbench.impls.bi_wkv7_triton.fwd import (
    CHUNK_LENS,
    CHUNKED_BLOCKS,
    RECURRENT_BLOCKS,
    bi_wkv7_chunked,
    bi_wkv7_recurrent,
    chunked_blocks,
    chunked_config,
    recurrent_config,
)
from wkvbench.impls.bi_wkv7_triton.train import bi_wkv7_train, saved_bytes, set_backward, train_or_none
from wkvbench.registry import ALL_DTYPES, register_impl

IMPLS = ("triton_recurrent", "triton_chunked", "triton_chunked_tf32", "triton_chunked_tc")
__all__ = [
    "CHUNK_LENS", "CHUNKED_BLOCKS", "HAS_TRITON", "HEAD_SIZES", "IMPLS", "RECURRENT_BLOCKS", "bi_wkv7_chunked",
    "bi_wkv7_recurrent", "bi_wkv7_train", "chunked_blocks", "chunked_config", "compile_report", "kernel_variants",
    "recurrent_config", "saved_bytes", "set_backward", "triton_chunked", "triton_chunked_tc", "triton_chunked_tf32",
    "triton_recurrent"
]  # fmt: skip


def _check(device: torch.device) -> tuple[bool, str]:
    return _gpu.triton_check(HAS_TRITON, device)


def _call(kind: str, launch, r, w, k, v, a, b, g, out, **options):
    """The training path of ``kind`` when autograd needs it, else the inference ``launch``."""
    y = train_or_none(kind, r, w, k, v, a, b, g, out)
    return y if y is not None else launch(r, w, k, v, a, b, g, out=out, **options)


# The registrations share everything but name, dtypes, priority and the TF32 flag.
_register = functools.partial(
    register_impl, "bi_wkv7", backend="triton", devices=("cuda", "cpu"), head_sizes=HEAD_SIZES, check=_check,
    backward=True,
)  # fmt: skip


@_register(
    name="triton_recurrent", dtypes=ALL_DTYPES, priority=20,
    description="recurrent Triton kernel: [BV, 64] state blocks in registers, both directions interleaved, fused merge",
)  # fmt: skip
def triton_recurrent(r, w, k, v, a, b, g=None, *, out=None):
    """Recurrent Triton kernel: per-token recurrence with the state in registers, both directions in one launch."""
    return _call("recurrent", bi_wkv7_recurrent, r, w, k, v, a, b, g, out)


@_register(
    name="triton_chunked", dtypes=ALL_DTYPES, priority=30,
    description="chunked Triton kernel on tensor cores (L=16 chunks, in-kernel solve), fused merge",
)  # fmt: skip
def triton_chunked(r, w, k, v, a, b, g=None, *, out=None):
    """Chunked Triton kernel: tensor-core chunks, exact float32 dots for float32 inputs."""
    return _call("chunked", bi_wkv7_chunked, r, w, k, v, a, b, g, out)


@_register(
    name="triton_chunked_tf32", dtypes=(torch.float32,), priority=25, tf32=True,
    description="chunked Triton kernel, float32 inputs on TF32 tensor cores (bfloat16 accuracy bar)",
)  # fmt: skip
def triton_chunked_tf32(r, w, k, v, a, b, g=None, *, out=None):
    """Chunked Triton kernel with float32 inputs computed on TF32 tensor cores."""
    return _call("chunked_tf32", bi_wkv7_chunked, r, w, k, v, a, b, g, out, tf32=True)


@_register(
    name="triton_chunked_tc", dtypes=ALL_DTYPES, priority=28,
    description="chunked Triton kernel, 3xTF32 tensor-core dots (fp32 accuracy) in the fp32 forward and the backward",
)  # fmt: skip
def triton_chunked_tc(r, w, k, v, a, b, g=None, *, out=None):
    """Chunked Triton kernel with 3xTF32 split dots: float32 accuracy on tensor cores (training: backward too)."""
    return _call("chunked_tc", bi_wkv7_chunked, r, w, k, v, a, b, g, out, tc=True)


# ---------------------------------------------------------------------------------- compile report
def kernel_variants() -> list[dict]:
    """Every kernel specialisation the three implementations launch (inference and training forwards, the
    per-token backward), in ``_compile.triton_compile_rows`` form; the chunked backward's are ``chunked_bwd``'s."""
    return fwd.kernel_variants() + bwd.kernel_variants()


def compile_report(cc: int = 90) -> list[dict]:
    """Compile every kernel variant for ``sm_{cc}`` without a GPU; registers, shared memory, spills.

    Call it without ``TRITON_INTERPRET`` set (``wkvbench kernels`` and the tests run it in a clean
    subprocess). Pointer arguments get the 16-byte alignment hint a real launch gives them.
    Without triton the rows say ``skipped`` and which extra brings it.
    """
    if not HAS_TRITON:
        return _compile.skipped_rows(IMPLS, _compile.ToolMissing.extra("triton", _IMPORT_ERROR))
    rows = _compile.report_or_skip(IMPLS, lambda: _compile.triton_compile_rows(kernel_variants(), cc))
    return rows + chunked_bwd.compile_report(cc)
