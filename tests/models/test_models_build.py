"""Networks: sizes, token grids, what the mixer is fed, the input, bad input (docs/spec.md sections 6, 8)."""

from __future__ import annotations

import math

import pytest
import torch

import wkvbench
import wkvbench.models as wm
from wkvbench import registry
from wkvbench.models.common import _mel_filterbank, depthwise_grid_shift
from wkvbench.presets import tokens_for_seconds

PUBLISHED = {"AST-B": 87e6, "AuM-B": 92.1e6, "A-RWKV-S": 22e6}  # at 10.24 s (1024 frames)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_parameter_count_within_10_percent_of_published(preset):
    n = wm.param_count(preset, 10.24)
    assert abs(n - PUBLISHED[preset]) <= 0.10 * PUBLISHED[preset], n


def test_parameter_count_is_the_built_module_and_grows_with_duration():
    net = wm.build("AuM-T", 0.64)
    assert wm.param_count("AuM-T", 0.64) == sum(p.numel() for p in net.parameters())
    # only the positional embedding depends on the duration: one width-C row per token
    extra = wm.param_count("A-RWKV-T", 20.48) - wm.param_count("A-RWKV-T", 10.24)
    assert extra == (1024 - 512) * 192


@pytest.mark.parametrize("preset", wm.presets())
@pytest.mark.parametrize("seconds", [10.24, 327.68, 1.0])
def test_tokens_match_spec_section_6(preset, seconds):
    family = wm.get_preset(preset).family
    want = tokens_for_seconds(seconds, family)
    assert wm.tokens_for(preset, seconds) == want
    if seconds == 10.24:
        assert want == {"a-rwkv": 512, "ast": 1214, "aum": 513}[family]
    with torch.device("meta"):  # the positional embedding the network builds covers every token
        net = wm.factory._construct(wm.get_preset(preset), seconds, "auto", init=False)
    assert net.pos_embed.shape[1] == want


class Recorder:
    """A plugin implementation of every op that records its inputs and runs the float64 reference."""

    name = "zz_models_recorder"

    def __init__(self):
        self.calls = []
        for op in ("bi_wkv7", "attention", "bi_selective_scan"):
            wkvbench.register_impl(op, name=self.name, backend="torch", devices=("cpu",), backward=True)(self._fn(op))

    def _fn(self, op):
        def fn(**kw):
            kw = {k: v for k, v in kw.items() if k != "out"}
            self.calls.append((op, kw))
            return getattr(wkvbench.reference, op)(**kw).to(next(iter(kw.values())).dtype)

        return fn

    def close(self):
        for op in ("bi_wkv7", "attention", "bi_selective_scan"):
            registry.unregister_impl(op, self.name)


@pytest.fixture
def recorder():
    rec = Recorder()
    yield rec
    rec.close()


def test_a_rwkv_feeds_bi_wkv7_the_rwkv7_domain(recorder):
    net = wm.build("A-RWKV-T", 0.64, impl=recorder.name)
    out = net(wm.spectrogram(2, 0.64))
    assert out.shape == (2, 527) and torch.isfinite(out).all()
    assert len(recorder.calls) == 12 and all(op == "bi_wkv7" for op, _ in recorder.calls)
    for _, x in recorder.calls:
        assert x["r"].shape == (2, net.tokens, 3, 64) == (2, 4 * 8, 3, 64)
        assert (x["w"] < -0.5).all()  # w = -softplus(.) - 0.5
        assert torch.allclose(x["a"].norm(dim=-1), torch.ones(()), atol=1e-5)  # a = -kk, unit per head
        alpha = x["b"] / -x["a"]  # b = kk * alpha, alpha in (0, 1)
        assert ((alpha > 0) & (alpha < 1)).all()
        assert x["g"].shape == (2, net.tokens, 3) and ((x["g"] > 0) & (x["g"] < 1)).all()
    v_first = recorder.calls[0][1]["v"]  # value residual: later layers mix in layer 0's v
    assert not torch.equal(recorder.calls[1][1]["v"], v_first)


def test_ast_feeds_attention_bhtd_with_its_token_grid(recorder):
    net = wm.build("AST-B", 0.5, impl=recorder.name)
    frames = 50
    t_cols = (frames - 16) // 10 + 1
    net(wm.spectrogram(1, 0.5))
    assert len(recorder.calls) == 12
    for op, x in recorder.calls:
        assert op == "attention"
        assert x["q"].shape == x["k"].shape == x["v"].shape == (1, 12, 12 * t_cols + 2, 64)


def test_aum_feeds_the_scan_its_parameters(recorder):
    net = wm.build("AuM-T", 0.64, impl=recorder.name)
    net(wm.spectrogram(1, 0.64))
    assert len(recorder.calls) == 24
    layer = net.layers[5].mixer
    x = recorder.calls[5][1]
    T = 8 * 4 + 1
    assert x["u"].shape == x["delta"].shape == x["z"].shape == (1, 384, T)
    assert x["Bm"].shape == x["Cm"].shape == (1, 16, T)
    assert torch.equal(x["A"], -torch.exp(layer.A_log)) and torch.equal(x["A_b"], -torch.exp(layer.A_b_log))
    assert torch.equal(x["Dskip"], layer.D) and torch.equal(x["delta_bias"], layer.dt_proj.bias)
    assert x["delta_softplus"] is True
    # u is the SiLU of a causal conv: changing the last token's input leaves earlier u untouched
    h = torch.randn(1, T, 192)
    h2 = h.clone()
    h2[:, -1] += 1.0
    recorder.calls.clear()
    layer(h)
    layer(h2)
    u1, u2 = recorder.calls[0][1]["u"], recorder.calls[1][1]["u"]
    assert torch.equal(u1[..., :-1], u2[..., :-1]) and not torch.equal(u1[..., -1], u2[..., -1])


def test_aum_class_token_sits_in_the_middle():
    net = wm.build("AuM-T", 0.64)
    assert net.cls_position == (8 * 4) // 2


def test_a_rwkv_convshift_is_time_major_on_an_8_wide_grid():
    # kernel taking the upper neighbour (previous time row) vs the left one (lower frequency band)
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
    x = torch.arange(1.0, 4 * 8 + 1).view(1, 32, 1)  # token t*8 + f carries its index + 1
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 1] = 1.0  # row above
        up = depthwise_grid_shift(conv, x, (4, 8)) + x
        conv.weight.zero_()
        conv.weight[0, 0, 1, 0] = 1.0  # column to the left
        left = depthwise_grid_shift(conv, x, (4, 8)) + x
    idx = torch.arange(32)
    assert torch.equal(up.view(32), torch.where(idx >= 8, idx + 1 - 8, 0).float())
    assert torch.equal(left.view(32), torch.where(idx % 8 > 0, idx, 0).float())


def test_same_seed_same_network_other_seed_other():
    a, b, c = wm.build("A-RWKV-T", 0.32, seed=3), wm.build("A-RWKV-T", 0.32, seed=3), wm.build("A-RWKV-T", 0.32)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["blocks.0.att.receptance.weight"], sc["blocks.0.att.receptance.weight"])
    state = torch.random.get_rng_state()
    wm.build("AuM-T", 0.32, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())  # the global random state is left alone


def test_spectrogram_is_kaldi_layout_deterministic_and_realistic():
    x = wm.spectrogram(2, 1.0, seed=1)
    assert x.shape == (2, 100, 128) and x.dtype == torch.float32
    assert torch.equal(x, wm.spectrogram(2, 1.0, seed=1))
    assert not torch.equal(x, wm.spectrogram(2, 1.0, seed=2))
    assert not torch.equal(x[0], x[1])
    assert -1.0 < float(x.mean()) < 1.0 and 0.1 < float(x.std()) < 1.5  # AST-normalised range
    assert wm.spectrogram(1, 0.5, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_mel_filterbank_puts_a_tone_in_its_mel_band():
    fb = _mel_filterbank(512, 16000, 128)
    assert fb.shape == (257, 128) and (fb >= 0).all() and float(fb.max()) <= 1.0
    for f in (500.0, 1000.0, 4000.0):
        k = round(f * 512 / 16000)
        lo, hi = 1127 * math.log(1 + 20 / 700), 1127 * math.log(1 + 8000 / 700)
        want = (1127 * math.log(1 + k * 16000 / 512 / 700) - lo) / ((hi - lo) / 129) - 1
        assert abs(int(fb[k].argmax()) - want) <= 1


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("preset", ["A-RWKV-X", "ast", 3, None])
def test_build_rejects_unknown_preset(preset):
    if preset == "ast":  # case-insensitive names are fine, families are not presets
        preset = "AST"
    with pytest.raises(ValueError, match="preset"):
        wm.build(preset, 1.0)


@pytest.mark.parametrize("seconds", [0, -1.0, 0.1, float("nan"), "10"])
def test_build_rejects_bad_seconds(seconds):
    with pytest.raises(ValueError, match="seconds"):
        wm.build("A-RWKV-T", seconds)


@pytest.mark.parametrize(
    "preset, impl",
    [("A-RWKV-T", "no_such_kernel"), ("A-RWKV-T", "torch_eager"), ("AST-B", "torch_loop"), ("AuM-T", "sdpa_math")],
)
def test_build_rejects_unknown_or_foreign_impl(preset, impl):
    with pytest.raises(ValueError, match="impl"):
        wm.build(preset, 0.32, impl=impl)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_build_rejects_cuda_without_cuda():
    with pytest.raises(ValueError, match="device"):
        wm.build("A-RWKV-T", 0.32, device="cuda")


def test_build_rejects_bad_dtype():
    with pytest.raises(TypeError, match="dtype"):
        wm.build("A-RWKV-T", 0.32, dtype=torch.int32)


def test_build_rejects_impl_that_cannot_run_here():
    with pytest.raises(ValueError, match="impl"):
        wm.build("AST-B", 0.32, impl="sdpa_flash")  # CUDA only


def test_forward_rejects_wrong_shape_dtype_and_device():
    net = wm.build("A-RWKV-T", 0.32, impl="torch_chunked")
    good = wm.spectrogram(1, 0.32)
    with pytest.raises(ValueError, match="mel"):
        net(wm.spectrogram(1, 0.64))  # other duration
    with pytest.raises(ValueError, match="mel"):
        net(good[0])  # no batch
    with pytest.raises(ValueError, match="mel"):
        net(good[..., :64])  # 64 mel bins
    with pytest.raises(TypeError, match="mel"):
        net(good.double())
    with pytest.raises(TypeError, match="mel"):
        net(good.numpy())
    with torch.no_grad():
        assert net(good).shape == (1, 527)


def test_set_impl_checks_like_build():
    net = wm.build("AuM-T", 0.32)
    with pytest.raises(ValueError, match="impl"):
        net.set_impl("torch_eager")
    assert net.set_impl("torch_chunked").impl == "torch_chunked"


def test_models_subcommand_lists_every_preset(capsys):
    from wkvbench.cli import main

    assert main(["models", "--seconds", "2.56"]) == 0
    out = capsys.readouterr().out
    for name in wm.presets():
        assert name in out
    assert "bi_selective_scan" in out and " 128" in out  # A-RWKV at 2.56 s: 8 * 16 tokens
    assert main(["models", "--seconds", "0.05"]) == 2
