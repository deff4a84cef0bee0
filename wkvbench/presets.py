"""Model-size presets, their network families, and the mapping from seconds of audio to tokens.

docs/spec.md section 6. Sweeps can be expressed in tokens (the kernel's view) or in seconds of
audio (the model's view): at equal duration AST sees about 2.4x more tokens than A-RWKV, the
comparison AudioRWKV (arXiv 2509.02167) makes. 128 mel bins at a 10 ms hop give
``round(seconds * 100)`` frames; each :class:`Family` record says how its front end cuts them
into tokens, which op mixes the tokens, and which implementation of that op is its naive one.
"""

from __future__ import annotations

from dataclasses import dataclass

MEL_BINS = 128
FRAMES_PER_SECOND = 100  # a 10 ms hop


@dataclass(frozen=True)
class Family:
    """One network family: its token mixer, its patch geometry, its naive mixer and gate baseline.

    Patches are ``patch x patch`` cells of the ``[frames, 128]`` spectrogram cut at ``stride`` on
    both axes; the sequence is one token per patch plus ``special_tokens`` (class/distillation).
    """

    name: str
    mixer_op: str  # the op of the token mixer (an op record's name)
    patch: int
    stride: int
    special_tokens: int
    naive_mixer: str  # the mixer op's naive implementation: speed-ups "vs naive", the gate's baseline
    # (dtype name, implementation): the gate's baseline where the naive mixer does not take that dtype
    gate_baselines: tuple[tuple[str, str], ...] = ()

    @property
    def freq_cells(self) -> int:
        """Patches across the 128 mel bins."""
        return (MEL_BINS - self.patch) // self.stride + 1

    def time_cells(self, frames: int) -> int:
        """Patches along ``frames`` spectrogram frames; ValueError naming ``seconds`` below one patch."""
        if frames < self.patch:
            raise ValueError(
                f"seconds: {frames / FRAMES_PER_SECOND:g} s is shorter than one {self.name} patch "
                f"({self.patch / FRAMES_PER_SECOND:g} s)"
            )
        return (frames - self.patch) // self.stride + 1

    def tokens_for_frames(self, frames: int) -> int:
        """The sequence length of ``frames`` frames: one token per patch plus the special tokens."""
        return self.freq_cells * self.time_cells(frames) + self.special_tokens

    def frames_for_tokens(self, tokens: int) -> int:
        """The fewest frames whose patch grid gives ``tokens`` tokens (a count between two grids: the
        smaller grid; at least one patch column)."""
        steps = max(1, (int(tokens) - self.special_tokens) // self.freq_cells)
        return self.patch + self.stride * (steps - 1)

    def seconds_for_tokens(self, tokens: int) -> float:
        """Approximate seconds of audio that give ``tokens`` tokens (inverse of :meth:`tokens_for_frames`)."""
        columns = (tokens - self.special_tokens) / self.freq_cells
        return ((columns - 1) * self.stride + self.patch) / FRAMES_PER_SECOND

    def gate_baseline(self, dtype) -> str:
        """The network gate's baseline mixer in ``dtype`` (a torch dtype or its name)."""
        name = str(dtype).replace("torch.", "")
        return dict(self.gate_baselines).get(name, self.naive_mixer)


#: The network families by name. AST's naive attention (``torch_eager``) takes float32/float16
#: only, so its gate uses ``sdpa_math`` in bfloat16.
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("a-rwkv", "bi_wkv7", patch=16, stride=16, special_tokens=0, naive_mixer="torch_loop"),
        Family(
            "ast",
            "attention",
            patch=16,
            stride=10,
            special_tokens=2,
            naive_mixer="torch_eager",
            gate_baselines=(("bfloat16", "sdpa_math"),),
        ),
        Family("aum", "bi_selective_scan", patch=16, stride=16, special_tokens=1, naive_mixer="torch_loop"),
    )
}


def get_family(name: str) -> Family:
    """The family record ``name``; ValueError naming ``family`` if unknown."""
    if name not in FAMILIES:
        raise ValueError(f"family: unknown model family {name!r}; expected one of {tuple(FAMILIES)}")
    return FAMILIES[name]


@dataclass(frozen=True)
class Preset:
    """One model size. ``heads x head_size`` feeds bi_wkv7 and attention, ``d_inner``/``d_state`` the scan."""

    name: str
    family: str
    width: int
    heads: int
    head_size: int
    depth: int
    d_state: int = 16

    @property
    def d_inner(self) -> int:
        """Audio Mamba's scan width: twice the model width."""
        return 2 * self.width

    @property
    def family_record(self) -> Family:
        """This preset's network family (its mixer op and token geometry)."""
        return FAMILIES[self.family]

    def tokens(self, seconds: float) -> int:
        """Tokens this model's front end makes from ``seconds`` of audio."""
        return tokens_for_seconds(seconds, self.family)


PRESETS: dict[str, Preset] = {
    m.name: m
    for m in (
        Preset("A-RWKV-T", "a-rwkv", 192, 3, 64, 12),
        Preset("A-RWKV-S", "a-rwkv", 384, 6, 64, 12),
        Preset("A-RWKV-B", "a-rwkv", 768, 12, 64, 12),
        Preset("AST-B", "ast", 768, 12, 64, 12),
        Preset("AuM-T", "aum", 192, 3, 64, 24),
        Preset("AuM-S", "aum", 384, 6, 64, 24),
        Preset("AuM-B", "aum", 768, 12, 64, 24),
    )
}


def find_preset(name: str) -> Preset | None:
    """The preset called ``name`` (case-insensitive), or None."""
    for key, preset in PRESETS.items():
        if key.lower() == str(name).lower():
            return preset
    return None


def get_preset(preset: str | Preset) -> Preset:
    """The preset record of a name (case-insensitive) or a record; ValueError naming ``preset`` if unknown.

    The one getter: a preset is looked up by name here and nowhere else.
    """
    if isinstance(preset, Preset):
        return preset
    if not isinstance(preset, str):
        raise ValueError(f"preset: expected a preset name, got {preset!r}")
    found = find_preset(preset)
    if found is None:
        raise ValueError(f"preset: unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    return found


def network_label(preset: str, impl: str) -> str:
    """How a network row is named in summaries, tables and legends: ``"A-RWKV-S (triton_chunked)"``
    (the network, then its token mixer)."""
    found = find_preset(preset)
    return f"{found.name if found else preset} ({impl})"


def frames_for_seconds(seconds: float) -> int:
    """Spectrogram frames at a 10 ms hop."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ValueError(f"seconds: must be a positive number, got {seconds!r}")
    return int(round(seconds * FRAMES_PER_SECOND))


def tokens_for_seconds(seconds: float, family: str) -> int:
    """Tokens of ``seconds`` of audio for a model family (``a-rwkv``, ``ast`` or ``aum``)."""
    fam = get_family(family)
    return fam.tokens_for_frames(frames_for_seconds(seconds))


def seconds_for_tokens(tokens: int, family: str) -> float:
    """Approximate seconds of audio that give ``tokens`` tokens (inverse of the above)."""
    return get_family(family).seconds_for_tokens(tokens)
