"""Bad input to wkvbench.attention and wkvbench.bi_selective_scan raises ValueError/TypeError naming the argument."""

import pytest
import torch

import wkvbench
from wkvbench.inputs import attention_inputs, bi_selective_scan_inputs


def _entry(fn, default_impl):
    """``fn`` called on the inputs ``x`` with some of them replaced (``over``)."""

    def call(x, impl=default_impl, **over):
        return fn(**{**x, **over}, impl=impl)

    return call


att = _entry(wkvbench.attention, "sdpa_math")
scan = _entry(wkvbench.bi_selective_scan, "torch_loop")

# per entry point: small valid inputs, the call, a cut of an activation's token axis at ``stop``, and the
# activations (the first one named in rank errors) with their number of dimensions
ENTRIES = {
    "attention": (
        lambda: attention_inputs(1, 2, 5, 16, seed=0),
        att,
        lambda t, stop: t[:, :, :stop],
        ("q", "k", "v"),
        4,
    ),
    "bi_selective_scan": (
        lambda: bi_selective_scan_inputs(1, 4, 6, 16, seed=0),
        scan,
        lambda t, stop: t[..., :stop],
        ("u", "delta", "Bm", "Cm", "z"),
        3,
    ),
}


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_valid_input_is_accepted(entry):
    make, call, *_ = ENTRIES[entry]
    assert torch.isfinite(call(make())).all()


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_rank_and_empty(entry):
    make, call, cut, names, ndim = ENTRIES[entry]
    x = make()
    with pytest.raises(ValueError, match=f"^{names[0]}: expected {ndim} dimensions"):
        call(x, **{names[0]: x[names[0]][0]})
    with pytest.raises(ValueError, match=f"^{names[0]}: every dimension"):
        call(x, **{n: cut(x[n], 0) for n in names})


@pytest.mark.parametrize(
    "entry,name", [("attention", "k"), ("attention", "v"), ("bi_selective_scan", "delta"), ("bi_selective_scan", "z")]
)
def test_activation_shape_dtype_device_mismatch(entry, name):
    make, call, cut, *_ = ENTRIES[entry]
    x = make()
    with pytest.raises(ValueError, match=f"^{name}: expected shape"):
        call(x, **{name: cut(x[name], -1)})
    with pytest.raises(TypeError, match=f"^{name}: dtype"):
        call(x, **{name: x[name].to(torch.float16)})
    with pytest.raises(ValueError, match=f"^{name}: on meta"):
        call(x, **{name: x[name].to("meta")})


# ----------------------------------------------------------------------------- attention
@pytest.fixture
def qkv():
    return ENTRIES["attention"][0]()


def test_attention_types(qkv):
    with pytest.raises(TypeError, match="^q: expected a torch.Tensor"):
        att(qkv, q=qkv["q"].numpy())
    with pytest.raises(TypeError, match="^k: expected a floating-point"):
        att(qkv, k=qkv["k"].to(torch.int64))


def test_attention_impl_errors(qkv):
    with pytest.raises(ValueError, match="^impl: unknown implementation 'nope'"):
        att(qkv, impl="nope")
    with pytest.raises(TypeError, match="^impl: "):
        att(qkv, impl=3)
    with pytest.raises(ValueError, match="^impl: 'sdpa_flash' cannot run attention here"):
        att(qkv, impl="sdpa_flash")
    bf16 = {n: t.to(torch.bfloat16) for n, t in qkv.items()}
    with pytest.raises(ValueError, match="^impl: 'torch_eager' cannot run .*bfloat16"):
        att(bf16, impl="torch_eager")


def test_attention_non_contiguous_input_is_accepted(qkv):
    q = qkv["q"].transpose(2, 3).contiguous().transpose(2, 3)  # same values, other strides
    y = att(qkv, q=q, impl="torch_eager")
    assert torch.allclose(y, att(qkv, impl="torch_eager"))


# ----------------------------------------------------------------------------- bi_selective_scan
@pytest.fixture
def sx():
    return ENTRIES["bi_selective_scan"][0]()


@pytest.mark.parametrize("name", ["Bm", "Cm"])
def test_scan_state_inputs_shape(sx, name):
    with pytest.raises(ValueError, match=f"^{name}: expected shape"):
        scan(sx, **{name: sx[name][:, :8]})  # N = 8 but A says 16
    with pytest.raises(ValueError, match=f"^{name}: expected shape"):
        scan(sx, **{name: sx[name][..., :3]})  # T mismatch
    with pytest.raises(ValueError, match=f"^{name}: expected 3 dimensions"):
        scan(sx, **{name: sx[name][0]})


def test_scan_A_shapes_and_values(sx):
    with pytest.raises(ValueError, match="^A: expected shape"):
        scan(sx, A=sx["A"][:3])
    with pytest.raises(ValueError, match="^A_b: expected shape"):
        scan(sx, A_b=sx["A_b"][:, :8])
    with pytest.raises(ValueError, match="^A: must be finite and negative"):
        scan(sx, A=-sx["A"])
    bad = sx["A_b"].clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="^A_b: must be finite and negative"):
        scan(sx, A_b=bad)
    with pytest.raises(TypeError, match="^A: expected a floating-point"):
        scan(sx, A=sx["A"].to(torch.int32))


@pytest.mark.parametrize("name", ["Dskip", "delta_bias"])
def test_scan_per_channel_vectors(sx, name):
    with pytest.raises(ValueError, match=f"^{name}: expected shape"):
        scan(sx, **{name: sx[name][:3]})
    with pytest.raises(ValueError, match=f"^{name}: expected 1 dimensions"):
        scan(sx, **{name: sx[name][None]})


def test_scan_types_and_flags(sx):
    with pytest.raises(TypeError, match="^u: expected a torch.Tensor"):
        scan(sx, u=sx["u"].tolist())
    with pytest.raises(TypeError, match="^delta_softplus: expected bool"):
        scan(sx, delta_softplus=1)
    with pytest.raises(ValueError, match="^impl: unknown implementation"):
        scan(sx, impl="selective_scan_cuda")
    with pytest.raises(ValueError, match="^impl: 'mamba_ssm' cannot run bi_selective_scan here"):
        scan(sx, impl="mamba_ssm")


def test_scan_optional_arguments_may_be_omitted(sx):
    y = scan(sx, Dskip=None, z=None, delta_bias=None)
    assert torch.isfinite(y).all()
