"""What the three networks share: the registry glue for the token mixer, the spectrogram front end.

docs/spec.md section 8: each network calls its token mixer through the registry, so any
registered implementation of the op -- a built-in one or a plugin added with
``wkvbench.register_impl`` -- runs inside a whole network by name. :class:`Mixer` is that glue:
``impl`` is a registered name, ``"auto"`` (the op's own choice per call) or ``"reference"`` (the
op's float64 reference function, used by the float64 truth network of the accuracy gate).

:class:`SpectrogramNet` is the common base: the preset, the duration it was built for (its token
grid and positional embedding follow the duration, docs/spec.md section 6), the input check
(``mel`` must be ``[B, frames, 128]`` in the network's dtype and device) and ``set_impl``.

:func:`spectrogram` makes a realistic network input: a synthetic sound (harmonic tones with
onsets and decays over coloured noise) turned into 128-bin log-mel frames the way AST calls Kaldi's
fbank (25 ms Hann window, 10 ms hop, DC removal, pre-emphasis 0.97, power spectrum, HTK mel scale
from 20 Hz, natural log, no dither), normalised with AST's
AudioSet statistics (YuanGongND/ast: ``(fbank + 4.27) / (4.57 * 2)``). The layout is Kaldi's,
``[batch, frames, 128]``, time first.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils import checkpoint as _checkpoint

from wkvbench import ops, reference, registry
from wkvbench.presets import MEL_BINS, Preset, frames_for_seconds

#: ``impl`` value meaning the op's float64 reference function (``wkvbench.reference``).
REFERENCE = "reference"
SAMPLE_RATE = 16000
_WIN, _HOP, _NFFT = 400, 160, 512  # 25 ms window, 10 ms hop at 16 kHz (Kaldi fbank defaults)
_AUDIOSET_MEAN, _AUDIOSET_STD = -4.2677393, 4.5689974  # AST's normalisation of AudioSet fbanks


# ----------------------------------------------------------------------------- registry glue
def check_impl(
    op: str,
    impl: str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    head_size: int | None = None,
) -> None:
    """ValueError naming ``impl`` unless it is ``"auto"``, ``"reference"`` or a runnable impl of ``op``."""
    if not isinstance(impl, str):
        raise TypeError(f"impl: expected an implementation name, 'auto' or 'reference', got {type(impl).__name__}")
    if impl in ("auto", REFERENCE):
        return
    records = {rec.name: rec for rec in registry.list_impls(op)}
    rec = records.get(impl)
    if rec is None:
        others = sorted({r.op for r in registry.list_impls() if r.name == impl})
        if others:
            raise ValueError(f"impl: {impl!r} implements {', '.join(others)}, not {op} (the op of this network)")
        raise ValueError(f"impl: unknown implementation {impl!r} of {op}; known: auto, reference, {', '.join(records)}")
    ok, why = rec.can_run(registry.Need(device, dtype, head_size))
    if not ok:
        raise ValueError(f"impl: {impl!r} cannot run {op} here: {why}")


class Mixer:
    """Calls op ``op`` with implementation ``impl`` (a registered name, ``"auto"`` or ``"reference"``)."""

    def __init__(self, op: str, impl: str) -> None:
        self.op = op
        self.impl = impl
        self.validate = True  # the op's value checks (the network gate turns them off: NaN reaches the logits)

    def __call__(self, **tensors: Tensor) -> Tensor:
        first = next(x for x in tensors.values() if isinstance(x, Tensor))
        if torch.is_autocast_enabled(first.device.type):  # autocast: the mixer runs in the autocast dtype
            dtype = torch.get_autocast_dtype(first.device.type)
            tensors = {k: x.to(dtype) if isinstance(x, Tensor) and x.is_floating_point() else x
                       for k, x in tensors.items()}  # fmt: skip
            with torch.autocast(first.device.type, enabled=False):
                return self._call(tensors)
        return self._call(tensors)

    def _call(self, tensors: dict) -> Tensor:
        if self.impl == REFERENCE:
            first = next(x for x in tensors.values() if isinstance(x, Tensor))
            return getattr(reference, self.op)(**tensors).to(first.dtype)
        return ops.call(self.op, impl=self.impl, validate=self.validate, **tensors)

    def __repr__(self) -> str:
        return f"Mixer(op={self.op!r}, impl={self.impl!r})"


# ----------------------------------------------------------------------------- the base network
class SpectrogramNet(nn.Module):
    """A classifier of ``[B, frames, 128]`` log-mel spectrograms into 527 AudioSet logits."""

    def __init__(self, preset: Preset, seconds: float, frames: int, impl: str) -> None:
        super().__init__()
        self.preset = preset
        self.seconds = float(seconds)
        self.frames = int(frames)
        self.family_record = preset.family_record  # mixer op and patch geometry
        self.mixer = Mixer(self.family_record.mixer_op, impl)
        self.checkpoint_blocks = False  # activation checkpointing: each block recomputed in the backward

    def run_block(self, block: nn.Module, *args):
        """``block(*args)``; with :attr:`checkpoint_blocks` set and grad enabled, through
        ``torch.utils.checkpoint`` (non-reentrant): the block keeps only its inputs for the backward and
        runs its forward again there."""
        if self.checkpoint_blocks and torch.is_grad_enabled():
            return _checkpoint.checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    @property
    def op(self) -> str:
        """The op of this network's token mixer."""
        return self.mixer.op

    @property
    def impl(self) -> str:
        """The implementation the token mixer calls."""
        return self.mixer.impl

    @property
    def special_tokens(self) -> int:
        """Tokens the sequence carries besides one per patch (class or distillation tokens)."""
        return self.family_record.special_tokens

    def patch_conv(self, width: int) -> nn.Conv2d:
        """The family's patch embedding: a one-channel conv of its patch size and stride to ``width``."""
        fam = self.family_record
        return nn.Conv2d(1, width, fam.patch, stride=fam.stride)

    @property
    def tokens(self) -> int:
        """Sequence length: one token per cell of the patch grid ``self.grid`` plus the special tokens."""
        return self.grid[0] * self.grid[1] + self.special_tokens

    def frequency_major_patches(self, mel: Tensor) -> Tensor:
        """``[B, rows * cols, C]`` tokens of ``self.patch_embed`` over ``mel`` read as a ``[B, 1, 128, frames]``
        image (frequency rows, time columns), frequency-major."""
        return self.patch_embed(mel.unsqueeze(1).transpose(2, 3)).flatten(2).transpose(1, 2)

    def set_impl(self, impl: str) -> SpectrogramNet:
        """Switch the token mixer to ``impl`` (checked for this network's op, device and dtype)."""
        p = next(self.parameters())
        check_impl(self.op, impl, p.device, p.dtype, self.preset.head_size)
        self.mixer.impl = impl
        return self

    def check_mel(self, mel: Tensor) -> None:
        """TypeError/ValueError naming ``mel`` unless it is ``[B, frames, 128]`` in our dtype and device."""
        if not isinstance(mel, Tensor):
            raise TypeError(f"mel: expected a torch.Tensor, got {type(mel).__name__}")
        p = next(self.parameters())
        if mel.dtype != p.dtype:
            raise TypeError(f"mel: dtype {mel.dtype}, but the network was built in {p.dtype}")
        if mel.dim() != 3 or mel.shape[0] < 1 or tuple(mel.shape[1:]) != (self.frames, MEL_BINS):
            raise ValueError(
                f"mel: expected [B, {self.frames}, {MEL_BINS}] (the {self.seconds:g} s this network was built "
                f"for), got {tuple(mel.shape)}"
            )
        if mel.device != p.device:
            raise ValueError(f"mel: on {mel.device}, but the network is on {p.device}")

    def extra_repr(self) -> str:
        return f"preset={self.preset.name}, seconds={self.seconds:g}, tokens={self.tokens}, mixer={self.mixer!r}"


def depthwise_grid_shift(conv: nn.Conv2d, x: Tensor, grid: tuple[int, int]) -> Tensor:
    """AudioRWKV's 2-D ConvShift: ``conv(x on its token grid) - x``; ``x`` is ``[B, T, C]``."""
    B, T, C = x.shape
    img = x.transpose(1, 2).reshape(B, C, grid[0], grid[1])
    return conv(img).reshape(B, C, T).transpose(1, 2) - x


def parameter_count(module: nn.Module) -> int:
    """Number of parameter elements."""
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- the input
def _mel_filterbank(n_fft: int, sample_rate: int, bins: int) -> Tensor:
    """Triangular filters on the HTK mel scale (Kaldi's), 20 Hz to Nyquist: ``[n_fft//2 + 1, bins]``."""

    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)

    lo, hi = mel(20.0), mel(sample_rate / 2)
    edges = torch.linspace(lo, hi, bins + 2, dtype=torch.float64)
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    mels = 1127.0 * torch.log1p(freqs / 700.0)
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    up = (mels[:, None] - left) / (centre - left)
    down = (right - mels[:, None]) / (right - centre)
    return torch.clamp(torch.minimum(up, down), min=0.0)


def _synthetic_audio(samples: int, generator: torch.Generator) -> Tensor:
    """A few harmonic tones with random onsets and decays over brown-ish noise, float64."""
    t = torch.arange(samples, dtype=torch.float64) / SAMPLE_RATE
    noise = torch.randn(samples, generator=generator, dtype=torch.float64)
    audio = 0.05 * torch.cumsum(noise, 0) / math.sqrt(max(samples, 1)) + 0.01 * noise
    n_events = max(1, int(samples / SAMPLE_RATE * 2))
    for _ in range(n_events):
        f0 = 80.0 * 2 ** (5 * float(torch.rand((), generator=generator, dtype=torch.float64)))
        start = int(float(torch.rand((), generator=generator, dtype=torch.float64)) * samples)
        decay = 0.05 + 0.5 * float(torch.rand((), generator=generator, dtype=torch.float64))
        stop = min(samples, start + int(10 * decay * SAMPLE_RATE))  # the envelope is < e^-10 beyond
        phase = 2 * math.pi * f0 * t[start:stop]
        env = torch.exp(-(t[start:stop] - t[start]) / decay)
        s_prev, s_h, two_cos = torch.zeros_like(phase), torch.sin(phase), 2 * torch.cos(phase)
        for h in range(1, 6):  # harmonics by sin((h+1)x) = 2 cos(x) sin(hx) - sin((h-1)x)
            if f0 * h < SAMPLE_RATE / 2:
                audio[start:stop] += env * s_h / h
            s_prev, s_h = s_h, two_cos * s_h - s_prev
    return audio


def spectrogram(
    batch: int,
    seconds: float,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> Tensor:
    """A realistic normalised log-mel input ``[batch, frames, 128]`` for ``seconds`` of audio.

    Deterministic for a seed (computed on the CPU in float64, then converted), independent of
    the global random state.
    """
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch: must be a positive integer, got {batch!r}")
    frames = frames_for_seconds(seconds)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating torch dtype, got {dtype!r}")
    gen = torch.Generator().manual_seed(int(seed))
    samples = (frames - 1) * _HOP + _WIN
    window = torch.hann_window(_WIN, periodic=False, dtype=torch.float64)  # Kaldi's "hanning"
    fbank = _mel_filterbank(_NFFT, SAMPLE_RATE, MEL_BINS)
    out = []
    for _ in range(batch):
        audio = _synthetic_audio(samples, gen)
        audio = 0.3 * audio / audio.abs().max().clamp(min=1e-9)  # peak 0.3 of full scale, as torchaudio loads it
        frames_ = audio.unfold(0, _WIN, _HOP)  # [frames, 400], snip_edges like Kaldi
        frames_ = frames_ - frames_.mean(dim=1, keepdim=True)
        frames_ = frames_ - 0.97 * torch.cat((frames_[:, :1], frames_[:, :-1]), dim=1)  # pre-emphasis
        power = torch.fft.rfft(frames_ * window, n=_NFFT).abs() ** 2
        logmel = torch.log(torch.clamp(power @ fbank, min=torch.finfo(torch.float32).eps))
        out.append((logmel - _AUDIOSET_MEAN) / (_AUDIOSET_STD * 2))
    return torch.stack(out).to(device=device, dtype=dtype)
