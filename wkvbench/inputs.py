"""Realistic kernel inputs, in one place: every test, verification and benchmark draws from here.

``bi_wkv7`` inputs are built the way RWKV-7 models build them (docs/spec.md section 1):

* ``w = -softplus(-x) - 0.5`` (so ``w < -0.5`` and the decay ``exp(-exp(w))`` is in (0.545, 1));
* ``a = -kappa`` and ``b = kappa * alpha`` with ``kappa`` L2-normalised per head over N and
  ``alpha = sigmoid(.)`` in (0, 1);
* ``r, k, v`` about unit scale; the merge gate ``g = sigmoid(.)`` in (0, 1).

Variants stress the numerics: ``strong_decay`` puts every decay at the strong edge (w -> -0.5,
d -> 0.545, the largest cumulative decay a chunked kernel must factor), ``weak_decay`` puts them
near 1 (long memory, state grows), ``mixed`` alternates the two per key channel.

Attention inputs are unit normals; selective-scan inputs follow Mamba's initialisation
(``A = -[1..N]``, ``dt`` in [1e-3, 1e-1] through ``delta_bias``).
All generators are seeded and draw on the CPU in float32 (so the same seed gives the same
numbers on every device), then move and round to the requested dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

WKV7_VARIANTS = ("realistic", "strong_decay", "weak_decay", "mixed")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _finish(tensors: dict[str, Tensor], dtype: torch.dtype, device) -> dict[str, Tensor]:
    return {k: v.to(device=device, dtype=dtype).contiguous() for k, v in tensors.items()}


def bi_wkv7_inputs(
    B: int,
    T: int,
    H: int,
    N: int = 64,
    *,
    dtype: torch.dtype = torch.float32,
    device="cpu",
    seed: int = 0,
    variant: str = "realistic",
    gate: bool = True,
) -> dict[str, Tensor]:
    """``{r, w, k, v, a, b, g}`` for Bi-WKV7, each ``[B, T, H, N]`` (``g``: ``[B, T, H]``)."""
    if variant not in WKV7_VARIANTS:
        raise ValueError(f"variant: unknown {variant!r}; expected one of {WKV7_VARIANTS}")
    for name, val in (("B", B), ("T", T), ("H", H), ("N", N)):
        if not isinstance(val, int) or val < 1:
            raise ValueError(f"{name}: must be a positive int, got {val!r}")
    gen = _gen(seed)
    shape = (B, T, H, N)

    def randn(*s):
        return torch.randn(*s, generator=gen)

    if variant == "realistic":
        x = randn(*shape) * 1.5 - 0.5
    elif variant == "strong_decay":
        x = 8.0 + randn(*shape).abs()  # w -> -0.5 from below
    elif variant == "weak_decay":
        x = -9.0 - randn(*shape).abs()  # d -> 1
    else:  # mixed: strong and weak decays interleaved over key channels
        x = torch.where(torch.arange(N) % 2 == 0, 8.0, -9.0).expand(shape) + randn(*shape) * 0.5
    w = -F.softplus(-x) - 0.5
    kappa = F.normalize(randn(*shape), dim=-1)
    alpha = torch.sigmoid(randn(*shape))
    out = {
        "r": randn(*shape),
        "w": w,
        "k": randn(*shape) * (1.0 / math.sqrt(2.0)),
        "v": randn(*shape),
        "a": -kappa,
        "b": kappa * alpha,
    }
    if gate:
        out["g"] = torch.sigmoid(randn(B, T, H))
    res = _finish(out, dtype, device)
    # Rounding w to a low-precision dtype may land exactly on -0.5: still in the domain.
    return res


def attention_inputs(
    B: int, H: int, T: int, D: int = 64, *, dtype=torch.float32, device="cpu", seed: int = 0
) -> dict[str, Tensor]:
    """``{q, k, v}``, each ``[B, H, T, D]``, unit normal."""
    gen = _gen(seed)
    shape = (B, H, T, D)
    return _finish({n: torch.randn(*shape, generator=gen) for n in ("q", "k", "v")}, dtype, device)


def bi_selective_scan_inputs(
    B: int,
    D: int,
    T: int,
    N: int = 16,
    *,
    dtype=torch.float32,
    device="cpu",
    seed: int = 0,
    with_z: bool = True,
) -> dict[str, Tensor]:
    """Inputs of Audio Mamba's bidirectional scan, Mamba-initialised.

    ``A, A_b = -[1..N]`` per channel (S4D-real init, jittered), ``delta_bias`` the inverse
    softplus of ``dt`` drawn log-uniformly in [1e-3, 1e-1], ``Dskip = 1``. ``A``, ``A_b``,
    ``Dskip`` and ``delta_bias`` stay float32 (mamba_ssm keeps its parameters in float32).
    """
    gen = _gen(seed)
    A = -torch.arange(1, N + 1, dtype=torch.float32).repeat(D, 1)
    A = A * (1 + 0.1 * torch.rand(D, N, generator=gen))
    A_b = -torch.arange(1, N + 1, dtype=torch.float32).repeat(D, 1)
    dt = torch.exp(torch.rand(D, generator=gen) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    delta_bias = dt + torch.log(-torch.expm1(-dt))  # inverse softplus
    acts = {
        "u": torch.randn(B, D, T, generator=gen),
        "delta": torch.randn(B, D, T, generator=gen) * 0.5,
        "Bm": torch.randn(B, N, T, generator=gen),
        "Cm": torch.randn(B, N, T, generator=gen),
    }
    if with_z:
        acts["z"] = torch.randn(B, D, T, generator=gen)
    res = _finish(acts, dtype, device)
    params = {"A": A, "A_b": A_b, "Dskip": torch.ones(D), "delta_bias": delta_bias}
    res.update({k: v.to(device=device).contiguous() for k, v in params.items()})
    return res
