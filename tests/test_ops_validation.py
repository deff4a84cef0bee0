"""Bad input to wkvbench.bi_wkv7 raises ValueError/TypeError naming the argument."""

import pytest
import torch

import wkvbench
from wkvbench.inputs import bi_wkv7_inputs


@pytest.fixture
def x():
    return bi_wkv7_inputs(1, 6, 2, 64, seed=0)


def call(x, **over):
    args = {**x, **over}
    return wkvbench.bi_wkv7(**args, impl="torch_loop")


def test_ok(x):
    assert torch.isfinite(call(x)).all()


@pytest.mark.parametrize("name", list("rwkvab"))
def test_shape_mismatch_names_argument(x, name):
    bad = x[name][:, :-1] if name != "r" else x[name][..., :32]
    with pytest.raises(ValueError, match=rf"^{name}: |^r: |^w: "):
        call(x, **{name: bad})


def test_rank(x):
    with pytest.raises(ValueError, match="^r: expected 4 dimensions"):
        call(x, r=x["r"][0])


@pytest.mark.parametrize("name", list("wkvab") + ["g"])
def test_dtype_mismatch(x, name):
    with pytest.raises(TypeError, match=f"^{name}: dtype"):
        call(x, **{name: x[name].to(torch.float16)})


def test_integer_and_non_tensor(x):
    with pytest.raises(TypeError, match="^k: expected a floating-point"):
        call(x, k=x["k"].to(torch.int32))
    with pytest.raises(TypeError, match="^v: expected a torch.Tensor"):
        call(x, v=x["v"].numpy())


def test_device_mismatch(x):
    with pytest.raises(ValueError, match="^a: on meta"):
        call(x, a=x["a"].to("meta"))


def test_gate_shape(x):
    with pytest.raises(ValueError, match="^g: expected"):
        call(x, g=x["g"][..., None])
    with pytest.raises(ValueError, match="^g: expected shape"):
        call(x, g=x["g"][:, :3])
    with pytest.raises(ValueError, match="^g: gate values"):
        call(x, g=x["g"] + 1)


def test_w_domain(x):
    with pytest.raises(ValueError, match="^w: .*outside the RWKV-7 domain"):
        call(x, w=x["w"] + 1.0)
    w = x["w"].clone()
    w[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="^w: contains NaN"):
        call(x, w=w)
    w[0, 0, 0, 0] = -float("inf")
    with pytest.raises(ValueError, match="^w: contains NaN or Inf"):
        call(x, w=w)


def test_validate_false_skips_value_checks_only(x):
    y = wkvbench.bi_wkv7(**{**x, "w": x["w"] - 0.01}, impl="torch_loop", validate=False)
    assert torch.isfinite(y).all()
    wkvbench.bi_wkv7(**{**x, "w": x["w"] + 0.2}, impl="torch_loop", validate=False)  # no value check
    with pytest.raises(ValueError, match="^k: expected shape"):
        wkvbench.bi_wkv7(**{**x, "k": x["k"][:, :2]}, impl="torch_loop", validate=False)


def test_non_contiguous_input_is_accepted(x):
    r = x["r"].transpose(2, 3).contiguous().transpose(2, 3)
    assert not r.is_contiguous()
    torch.testing.assert_close(call(x, r=r), call(x), rtol=0, atol=0)
