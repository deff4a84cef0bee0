"""Model-size presets and the mapping from seconds of audio to tokens (docs/spec.md section 6).

Sweeps can be expressed in tokens (the kernel's view) or in seconds of audio (the model's view):
at equal duration AST sees about 2.4x more tokens than A-RWKV, which is the comparison
AudioRWKV (arXiv 2509.02167) makes. 128 mel bins at a 10 ms hop give ``round(seconds * 100)``
frames; A-RWKV and Audio Mamba cut 16x16 patches at stride 16, AST at stride 10.
"""

from __future__ import annotations

from dataclasses import dataclass

FAMILIES = ("a-rwkv", "ast", "aum")


@dataclass(frozen=True)
class Model:
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

    def tokens(self, seconds: float) -> int:
        """Tokens this model's front end makes from ``seconds`` of audio."""
        return tokens_for_seconds(seconds, self.family)


MODELS: dict[str, Model] = {
    m.name: m
    for m in (
        Model("A-RWKV-T", "a-rwkv", 192, 3, 64, 12),
        Model("A-RWKV-S", "a-rwkv", 384, 6, 64, 12),
        Model("A-RWKV-B", "a-rwkv", 768, 12, 64, 12),
        Model("AST-B", "ast", 768, 12, 64, 12),
        Model("AuM-T", "aum", 192, 3, 64, 24),
        Model("AuM-S", "aum", 384, 6, 64, 24),
        Model("AuM-B", "aum", 768, 12, 64, 24),
    )
}


def get_model(name: str) -> Model:
    """The preset called ``name`` (case-insensitive); ValueError naming it if unknown."""
    for key, model in MODELS.items():
        if key.lower() == str(name).lower():
            return model
    raise ValueError(f"model: unknown preset {name!r}; known: {', '.join(MODELS)}")


def frames_for_seconds(seconds: float) -> int:
    """Spectrogram frames at a 10 ms hop."""
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ValueError(f"seconds: must be a positive number, got {seconds!r}")
    return int(round(seconds * 100))


def tokens_for_seconds(seconds: float, family: str) -> int:
    """Tokens of ``seconds`` of audio for a model family (``a-rwkv``, ``ast`` or ``aum``)."""
    frames = frames_for_seconds(seconds)
    if family == "a-rwkv":
        return 8 * (frames // 16)
    if family == "aum":
        return 8 * (frames // 16) + 1  # + class token
    if family == "ast":
        if frames < 16:
            raise ValueError(f"seconds: {seconds} s is shorter than one AST patch (0.16 s)")
        return 12 * ((frames - 16) // 10 + 1) + 2
    raise ValueError(f"family: unknown model family {family!r}; expected one of {FAMILIES}")


def seconds_for_tokens(tokens: int, family: str) -> float:
    """Approximate seconds of audio that give ``tokens`` tokens (inverse of the above)."""
    if family in ("a-rwkv", "aum"):
        return (tokens - (1 if family == "aum" else 0)) / 8 * 16 / 100
    if family == "ast":
        return (((tokens - 2) / 12 - 1) * 10 + 16) / 100
    raise ValueError(f"family: unknown model family {family!r}; expected one of {FAMILIES}")
