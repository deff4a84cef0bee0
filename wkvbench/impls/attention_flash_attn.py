"""Peer attention kernel: the ``flash-attn`` package's FlashAttention-2 (``flash_attn``).

``flash_attn.flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False)``
(Dao, "FlashAttention-2", arXiv 2307.08691; github.com/Dao-AILab/flash-attention) takes
``[B, T, H, D]`` tensors; the op's layout is ``[B, H, T, D]`` (docs/spec.md section 2). The
adapter hands it ``x.transpose(1, 2)`` views: the package only needs the head dimension to be
contiguous (stride 1), which those views are, so no copy is made on the way in. The output,
``[B, T, H, D]`` in memory, is returned as its ``transpose(1, 2)`` view -- the same memory
layout torch's own SDPA flash backend returns. ``softmax_scale=None`` is ``D ** -0.5``.

Always registered, so ``wkvbench list`` says why it cannot run: a CUDA, float16/bfloat16 peer
(``peer=True``) whose availability check imports the package and its compiled extension and
asks for an sm80+ GPU. FlashAttention-3 (the Hopper build, ``flash_attn_interface``) is a separate package
and not covered here.
"""

from __future__ import annotations

import torch

from wkvbench.impls import _gpu
from wkvbench.impls._register import peer_impl

_HALF = (torch.float16, torch.bfloat16)


def _load() -> None:
    from flash_attn import flash_attn_func  # noqa: F401  (imports the CUDA extension)


def _check(device: torch.device) -> tuple[bool, str]:
    ok, why = _gpu.import_check("flash_attn", "flash-attn not installed (pip install flash-attn)", _load)
    if not ok:
        return ok, why
    import flash_attn

    major, minor = torch.cuda.get_device_capability(device)
    if major < 8:
        return False, f"flash-attn {flash_attn.__version__} needs an sm80+ GPU, this is sm{major}{minor}"
    return True, "ok"


def flash_attn(q, k, v):
    """flash-attn's FlashAttention-2 on ``[B, T, H, D]`` views of the ``[B, H, T, D]`` inputs."""
    from flash_attn import flash_attn_func

    o = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), dropout_p=0.0, causal=False)
    return o.transpose(1, 2)


peer_impl(
    "attention",
    name="flash_attn",
    backend="flash_attn",
    dtypes=_HALF,
    priority=32,
    backward=True,
    check=_check,
    description="flash-attn package FlashAttention-2 (peer; CUDA, fp16/bf16, sm80+)",
)(flash_attn)
