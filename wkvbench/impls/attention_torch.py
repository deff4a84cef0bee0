"""Attention in PyTorch: AST's eager form (``torch_eager``) and the four SDPA backends.

The ``attention`` op (docs/spec.md section 2) is the Audio Spectrogram Transformer's token mixer:
non-causal softmax attention over ``[B, H, T, D]`` with scale ``D ** -0.5``.

``torch_eager`` is the baseline, computed the way AST computes it (timm's ViT ``Attention``
block, which AST builds on; Gong et al., arXiv 2104.01778): ``scores = q @ k^T * scale``,
``softmax`` over keys, ``probs @ v``, materialising the ``[B, H, T, T]`` score matrix. Under
mixed precision (``torch.autocast``, how AST is trained and run in float16/bfloat16) the two
matmuls run in the I/O dtype and the softmax in float32 (softmax is on autocast's float32
list); this function does exactly that explicitly, so the float16 numbers are the ones AST
gets. AST runs in float32 or float16 autocast, and those (plus float64) are the dtypes
registered: in bfloat16 the same computation rounds the logits to 8 significant bits and lands at
about 4.2e-3 to 4.5e-3 relative L2 error (T = 200 to 1214) -- over the bfloat16 bar of 4e-3 by
construction -- so ``torch_eager`` is not offered for bfloat16 rather than failing verification
(computing bfloat16 logits in float32 instead would fix the accuracy but double the traffic on
the ``[T, T]`` scores, an unfairly slow baseline).

``sdpa_flash``, ``sdpa_efficient``, ``sdpa_cudnn`` and ``sdpa_math`` call
``torch.nn.functional.scaled_dot_product_attention`` pinned to one backend with
``torch.nn.attention.sdpa_kernel(SDPBackend.X)``: FlashAttention-2 (Dao, arXiv 2307.08691),
the memory-efficient kernel (Rabe & Staats, arXiv 2112.05682, xFormers' CUTLASS kernel),
cuDNN's fused attention, and the unfused math path. When the pinned backend cannot run the
inputs, torch raises instead of silently falling back, so a row is always the named kernel.

Which backend runs where, and why ``dtypes`` are what they are:

* ``sdpa_math``: CPU and CUDA, every dtype (the CPU auto choice).
* ``sdpa_flash``: CUDA, float16/bfloat16 only (FlashAttention-2 has no float32 path), sm80+.
  torch also has a CPU kernel under the same ``FLASH_ATTENTION`` enum; it is a different
  kernel (vectorised C++, any dtype) and is not what this name measures, so it is not
  registered for CPU.
* ``sdpa_efficient``: CUDA, float32/float16/bfloat16 (float32 on CUDA cores, no TF32).
* ``sdpa_cudnn``: CUDA, float16/bfloat16 (cuDNN's fused attention has no float32 path).

Whether a CUDA backend can run on this GPU/build is decided by a probe: a tiny call pinned to
that backend on the device; its error (and torch's warning saying why) becomes the
unavailability reason. Probes are cached per device.
"""

from __future__ import annotations

import threading
import warnings

import torch
import torch.nn.functional as F

from wkvbench.impls import _gpu
from wkvbench.registry import ALL_DTYPES, register_impl

try:  # torch >= 2.3
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:  # pragma: no cover - older torch
    SDPBackend = None
    sdpa_kernel = None

_DTYPES = (*ALL_DTYPES, torch.float64)
_HALF = (torch.float16, torch.bfloat16)


# ----------------------------------------------------------------------------- torch_eager
@register_impl(
    "attention",
    name="torch_eager",
    backend="torch",
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float16, torch.float64),
    priority=0,
    backward=True,
    description="scores, softmax (float32), weighted sum: AST's eager attention (the baseline)",
)
def torch_eager(q, k, v, *, out=None):
    """AST's eager attention: ``softmax(q k^T * D**-0.5) v``, the ``[B, H, T, T]`` scores materialised."""
    scale = q.shape[-1] ** -0.5
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    # autocast computes softmax in float32 and hands float32 probabilities to the next matmul,
    # which autocast then casts back to the I/O dtype.
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32 if q.dtype in _HALF else None).to(v.dtype)
    if out is None:
        return torch.matmul(probs, v)
    if torch.is_grad_enabled() and probs.requires_grad:  # out= is not differentiable; copy_ is
        return out.copy_(torch.matmul(probs, v))
    return torch.matmul(probs, v, out=out)


# ----------------------------------------------------------------------------- SDPA backends
def _backend(name: str):
    return None if SDPBackend is None else getattr(SDPBackend, name, None)


def _sdpa(backend_name: str, q, k, v):
    with sdpa_kernel(_backend(backend_name)):
        return F.scaled_dot_product_attention(q, k, v)


_PROBE_LOCK = threading.Lock()
_PROBES: dict[tuple[str, str, int | None], tuple[bool, str]] = {}


def _probe(backend_name: str, device: torch.device, dtype: torch.dtype) -> tuple[bool, str]:
    """Run a tiny pinned SDPA call on ``device``; (ok, reason), cached per device."""
    if sdpa_kernel is None:
        return False, f"torch {torch.__version__} has no torch.nn.attention.sdpa_kernel (needs torch >= 2.3)"
    if _backend(backend_name) is None:
        return False, f"torch {torch.__version__} has no SDPBackend.{backend_name}"
    if device.type == "cuda" and not torch.cuda.is_available():
        return False, "no CUDA device"
    if device.type == "cuda" and _gpu.device_probes_deferred():
        return True, "ok (probed in the worker, before the first call)"
    index = device.index if device.type != "cuda" or device.index is not None else torch.cuda.current_device()
    key = (backend_name, device.type, index)
    with _PROBE_LOCK:
        if key in _PROBES:
            return _PROBES[key]
        dev = torch.device(device.type, index) if device.type == "cuda" else device
        x = torch.randn(1, 1, 16, 64, device=dev).to(dtype)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                _sdpa(backend_name, x, x, x)
                res = (True, "ok")
            except RuntimeError as exc:
                why = [str(w.message).strip().split("\n")[0] for w in caught]
                detail = "; ".join(why[:2]) or str(exc).strip().split("\n")[0]
                res = (False, f"SDPBackend.{backend_name} cannot run on {dev}: {detail}")
        _PROBES[key] = res
        return res


def _check(backend_name: str, probe_dtype: torch.dtype):
    def check(device: torch.device) -> tuple[bool, str]:
        return _probe(backend_name, device, probe_dtype)

    return check


def _register_sdpa(name: str, backend_name: str, devices, dtypes, priority: int, probe_dtype, description: str):
    def fn(q, k, v):
        return _sdpa(backend_name, q, k, v)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"scaled_dot_product_attention pinned to SDPBackend.{backend_name}."
    register_impl(
        "attention",
        name=name,
        backend="torch",
        devices=devices,
        dtypes=dtypes,
        priority=priority,
        backward=True,
        check=_check(backend_name, probe_dtype),
        description=description,
    )(fn)
    return fn


sdpa_flash = _register_sdpa(
    "sdpa_flash",
    "FLASH_ATTENTION",
    ("cuda",),
    _HALF,
    30,
    torch.float16,
    "SDPA pinned to FlashAttention-2 (CUDA, fp16/bf16, sm80+)",
)
sdpa_cudnn = _register_sdpa(
    "sdpa_cudnn",
    "CUDNN_ATTENTION",
    ("cuda",),
    _HALF,
    28,
    torch.float16,
    "SDPA pinned to cuDNN fused attention (CUDA, fp16/bf16)",
)
sdpa_efficient = _register_sdpa(
    "sdpa_efficient",
    "EFFICIENT_ATTENTION",
    ("cuda",),
    ALL_DTYPES,
    25,
    torch.float32,
    "SDPA pinned to the memory-efficient (xFormers/CUTLASS) kernel (CUDA)",
)
sdpa_math = _register_sdpa(
    "sdpa_math",
    "MATH",
    ("cpu", "cuda"),
    _DTYPES,
    5,
    torch.float32,
    "SDPA pinned to the unfused math backend (CPU and CUDA)",
)
