"""Peer selective scan: mamba_ssm's fused CUDA kernel, run the way Audio Mamba runs it (``mamba_ssm``).

``mamba_ssm.ops.selective_scan_interface.selective_scan_fn(u, delta, A, B, C, D, z,
delta_bias, delta_softplus)`` (Gu & Dao, arXiv 2312.00752; github.com/state-spaces/mamba) is the
fused forward kernel Mamba and Audio Mamba use: one CUDA block per (sequence, channel), the
time axis split into chunks scanned in parallel by the block's threads, the ``N`` states looped
inside. Its layouts are the op's (docs/spec.md section 3): ``u, delta, z [B, D, T]``, ``A [D, N]``,
``Bm, Cm [B, N, T]``; ``A``, ``Dskip`` and ``delta_bias`` must be float32 (cast here; the op's
inputs already are).

The Fo-Bi construction is Audio Mamba's (Erol et al., arXiv 2406.03344, after Vision Mamba's
bidirectional block): the kernel once forward, once on ``flip(-1)`` copies of ``u, delta, Bm,
Cm, z`` with ``A_b``, its output flipped back and added. The flips are real copies, as in the
model, and are part of the measured time. Each call rounds its output to the I/O dtype before
the sum, exactly as the model does.

Always registered (``peer=True``) so ``wkvbench list`` says why it cannot run: it needs the
package and its compiled extension (``selective_scan_cuda``) to import, and a CUDA device.
"""

from __future__ import annotations

import torch

from wkvbench.impls import _gpu
from wkvbench.impls._register import peer_impl


def _load() -> None:
    import selective_scan_cuda  # noqa: F401  (the compiled extension)
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401


def _check(device: torch.device) -> tuple[bool, str]:
    return _gpu.import_check("mamba_ssm", "mamba_ssm not installed (pip install mamba-ssm)", _load)


def _f32(x):
    return None if x is None else x.to(torch.float32).contiguous()


def bi_selective_scan_with(selective_scan_fn, u, delta, A, A_b, Bm, Cm, Dskip, z, delta_bias, delta_softplus, out=None):
    """Audio Mamba's Fo-Bi around any ``selective_scan_fn`` with mamba_ssm's signature."""
    A, A_b, Dskip, delta_bias = _f32(A), _f32(A_b), _f32(Dskip), _f32(delta_bias)

    def flip(x):
        return None if x is None else x.flip(-1)

    y_fwd = selective_scan_fn(u, delta, A, Bm, Cm, D=Dskip, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
    y_rev = selective_scan_fn(
        flip(u),
        flip(delta),
        A_b,
        flip(Bm),
        flip(Cm),
        D=Dskip,
        z=flip(z),
        delta_bias=delta_bias,
        delta_softplus=delta_softplus,
    )
    if out is None:
        return y_fwd + y_rev.flip(-1)
    if torch.is_grad_enabled() and y_fwd.requires_grad:  # out= is not differentiable; copy_ is
        return out.copy_(y_fwd + y_rev.flip(-1))
    return torch.add(y_fwd, y_rev.flip(-1), out=out)


@peer_impl(
    "bi_selective_scan",
    name="mamba_ssm",
    backend="mamba_ssm",
    priority=32,
    backward=True,
    check=_check,
    description="mamba_ssm selective_scan_fn, forward + flipped (Audio Mamba's Fo-Bi; peer, CUDA)",
)
def mamba_ssm(u, delta, A, A_b, Bm, Cm, Dskip=None, z=None, delta_bias=None, delta_softplus=True, *, out=None):
    """mamba_ssm's fused scan forward and on flipped copies, summed (Audio Mamba's Fo-Bi)."""
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    args = (u, delta, A, A_b, Bm, Cm, Dskip, z, delta_bias, delta_softplus)
    return bi_selective_scan_with(selective_scan_fn, *args, out)
