"""Preset presets and the seconds-of-audio -> tokens mapping (docs/spec.md section 6)."""

import pytest

from wkvbench import ops
from wkvbench.presets import (
    FAMILIES,
    PRESETS,
    frames_for_seconds,
    get_family,
    get_preset,
    seconds_for_tokens,
    tokens_for_seconds,
)


def test_contract_examples():
    assert frames_for_seconds(10.24) == 1024
    assert tokens_for_seconds(10.24, "a-rwkv") == 512
    assert tokens_for_seconds(10.24, "ast") == 1214
    assert tokens_for_seconds(328, "a-rwkv") == 16_400  # the paper's "~5 min 28 s"
    assert tokens_for_seconds(328, "aum") == 16_401  # + class token
    assert tokens_for_seconds(10.24, "aum") == 513


def test_hand_expanded_formulas():
    # 5 s = 500 frames: A-RWKV 8 * (500 // 16) = 8 * 31; AST 12 * ((500 - 16) // 10 + 1) + 2 = 12 * 49 + 2
    assert tokens_for_seconds(5, "a-rwkv") == 248
    assert tokens_for_seconds(5, "ast") == 590
    # the shortest AST input is one 16-frame patch column: 12 patches + 2 class tokens
    assert tokens_for_seconds(0.16, "ast") == 14
    with pytest.raises(ValueError, match="^seconds"):
        tokens_for_seconds(0.15, "ast")


def test_ast_sees_about_2_4x_more_tokens():
    ratio = tokens_for_seconds(10.24, "ast") / tokens_for_seconds(10.24, "a-rwkv")
    assert 2.3 < ratio < 2.4


@pytest.mark.parametrize("family", ["a-rwkv", "aum", "ast"])
@pytest.mark.parametrize("seconds", [1.28, 10.24, 60.0, 328.0])
def test_seconds_for_tokens_inverts(family, seconds):
    tokens = tokens_for_seconds(seconds, family)
    assert tokens_for_seconds(seconds_for_tokens(tokens, family), family) == tokens


@pytest.mark.parametrize(
    "name, family, width, heads, depth",
    [
        ("A-RWKV-T", "a-rwkv", 192, 3, 12),
        ("A-RWKV-S", "a-rwkv", 384, 6, 12),
        ("A-RWKV-B", "a-rwkv", 768, 12, 12),
        ("AST-B", "ast", 768, 12, 12),
        ("AuM-T", "aum", 192, None, 24),
        ("AuM-S", "aum", 384, None, 24),
        ("AuM-B", "aum", 768, None, 24),
    ],
)
def test_preset_dims(name, family, width, heads, depth):
    m = get_preset(name)
    assert (m.name, m.family, m.width, m.depth) == (name, family, width, depth)
    if heads is not None:  # A-RWKV and AST: heads x 64 = width
        assert (m.heads, m.head_size) == (heads, 64) and m.heads * m.head_size == width
    if family == "aum":  # scan width D = 2 x width, state N = 16
        assert (m.d_inner, m.d_state) == (2 * width, 16)


def test_presets_are_exactly_the_contract_set_and_case_insensitive():
    assert set(PRESETS) == {"A-RWKV-T", "A-RWKV-S", "A-RWKV-B", "AST-B", "AuM-T", "AuM-S", "AuM-B"}
    assert get_preset("ast-b") is PRESETS["AST-B"]
    with pytest.raises(ValueError, match="^preset: unknown preset"):
        get_preset("AST-L")


def test_bad_seconds_and_family():
    for bad in (0, -1.0, "10"):
        with pytest.raises(ValueError, match="^seconds"):
            tokens_for_seconds(bad, "a-rwkv")
    with pytest.raises(ValueError, match="^family"):
        tokens_for_seconds(10.24, "vit")


def test_op_shapes_follow_presets():
    assert ops.get_op("bi_wkv7").shape_for(get_preset("A-RWKV-B"), 2, 512) == {"B": 2, "T": 512, "H": 12, "N": 64}
    assert ops.get_op("attention").shape_for(get_preset("AST-B"), 1, 1214) == {"B": 1, "H": 12, "T": 1214, "D": 64}
    assert ops.get_op("bi_selective_scan").shape_for(get_preset("AuM-S"), 1, 513) == {
        "B": 1,
        "D": 768,
        "T": 513,
        "N": 16,
    }


@pytest.mark.parametrize("family", ["a-rwkv", "aum", "ast"])
def test_family_record_geometry_is_consistent(family):
    fam = FAMILIES[family]
    assert fam.freq_cells == {"a-rwkv": 8, "aum": 8, "ast": 12}[family]
    assert fam.mixer_op == {"a-rwkv": "bi_wkv7", "aum": "bi_selective_scan", "ast": "attention"}[family]
    assert ops.get_op(fam.mixer_op).naive_impl == fam.naive_mixer  # the op records take it from here
    for frames in (16, 17, 100, 1024, 32800):
        tokens = fam.tokens_for_frames(frames)
        back = fam.frames_for_tokens(tokens)  # the fewest frames giving the same grid
        assert back <= frames and fam.tokens_for_frames(back) == tokens
        assert back == fam.patch or fam.tokens_for_frames(back - 1) < tokens


def test_gate_baseline_is_the_naive_mixer_unless_it_lacks_the_dtype():
    import torch

    assert FAMILIES["ast"].gate_baseline(torch.bfloat16) == "sdpa_math"
    assert FAMILIES["ast"].gate_baseline(torch.float16) == FAMILIES["ast"].gate_baseline("float32") == "torch_eager"
    assert FAMILIES["a-rwkv"].gate_baseline(torch.bfloat16) == "torch_loop"
    with pytest.raises(ValueError, match="^family"):
        get_family("vit")
