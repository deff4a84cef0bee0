"""Building a network by preset and duration, and the facts about it the harness needs.

docs/spec.md sections 6 and 8. ``build(preset, seconds, impl, dtype, device, seed)`` returns a
randomly initialised network (no weights are downloaded) for one duration: the positional
embedding and the token grid follow ``frames = round(seconds * 100)``, so every duration builds
its own network. Weights are drawn on the CPU in float32 from ``seed`` (the global random state is
left alone), then moved to ``device`` and ``dtype``: the same seed gives the same network on every
device, rounded to the dtype.
"""

from __future__ import annotations

import torch

from wkvbench.models.arwkv import ARWKV
from wkvbench.models.ast_vit import AST
from wkvbench.models.aum import AuM
from wkvbench.models.common import SpectrogramNet, check_impl, parameter_count
from wkvbench.presets import PRESETS, Preset, frames_for_seconds, get_preset

NETWORKS = {"a-rwkv": ARWKV, "ast": AST, "aum": AuM}
DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
MIN_FRAMES = 16  # one 16x16 patch


def presets() -> list[str]:
    """Names of every buildable preset."""
    return list(PRESETS)


def op_for(preset: str | Preset) -> str:
    """The op of the preset's token mixer: ``bi_wkv7``, ``attention`` or ``bi_selective_scan``."""
    return get_preset(preset).family_record.mixer_op


def frames_for(seconds: float) -> int:
    """Spectrogram frames for ``seconds``; ValueError naming ``seconds`` if too short or not positive."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ValueError(f"seconds: must be a positive number, got {seconds!r}")
    frames = frames_for_seconds(seconds)
    if frames < MIN_FRAMES:
        raise ValueError(f"seconds: {seconds} s gives {frames} frames, fewer than one 16-frame patch (0.16 s)")
    return frames


def _construct(model: Preset, seconds: float, impl: str, init: bool) -> SpectrogramNet:
    return NETWORKS[model.family](model, seconds, frames_for(seconds), impl, init=init)


def build(
    preset: str | Preset,
    seconds: float,
    impl: str = "auto",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> SpectrogramNet:
    """The network ``preset`` for ``seconds`` of audio: ``[B, frames, 128]`` -> logits ``[B, 527]``.

    ``impl``: a registered implementation of the network's op (``op_for(preset)``), ``"auto"``,
    or ``"reference"`` (the float64 reference function). The module is in eval mode.
    """
    model = get_preset(preset)
    frames_for(seconds)
    if dtype not in DTYPES:
        raise TypeError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device} requested, but CUDA is not available here")
    check_impl(model.family_record.mixer_op, impl, device, dtype, model.head_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = _construct(model, seconds, impl, init=True)
    return net.to(device=device, dtype=dtype).eval()


def param_count(preset: str | Preset, seconds: float = 10.24) -> int:
    """Parameters of the network for ``seconds`` (the positional embedding grows with duration)."""
    with torch.device("meta"):
        net = _construct(get_preset(preset), seconds, "auto", init=False)
    return parameter_count(net)


def tokens_for(preset: str | Preset, seconds: float) -> int:
    """Tokens the network's mixer sees for ``seconds`` (special tokens included), from its real grid."""
    with torch.device("meta"):
        net = _construct(get_preset(preset), seconds, "auto", init=False)
    return net.tokens
