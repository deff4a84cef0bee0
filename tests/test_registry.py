"""The registry: registration, availability reasons, auto selection, plugins, unknown names."""

import textwrap

import pytest
import torch

import wkvbench
from wkvbench import ops, registry
from wkvbench.inputs import bi_wkv7_inputs


@pytest.fixture
def scratch_impls():
    added = []

    def add(name, **kw):
        added.append(name)
        return wkvbench.register_impl("bi_wkv7", name=name, **kw)

    yield add
    for name in added:
        registry.unregister_impl("bi_wkv7", name)


def test_builtins_listed_with_records():
    names = {r.name for r in wkvbench.list_impls("bi_wkv7")}
    assert {"torch_loop", "torch_chunked"} <= names
    rec = registry.get_impl("bi_wkv7", "torch_loop")
    assert rec.name == ops.get_op("bi_wkv7").naive_impl and rec.backend == "torch" and rec.accepts_out
    assert rec.available("cpu") == (True, "ok")


def test_register_user_impl_and_call_through_api(scratch_impls):
    @scratch_impls("my_kernel", backend="custom", devices=("cpu",), priority=-5)
    def my_kernel(r, w, k, v, a, b, g=None):
        return wkvbench.bi_wkv7(r, w, k, v, a, b, g, impl="torch_chunked")

    x = bi_wkv7_inputs(1, 5, 1, 64)
    y = wkvbench.bi_wkv7(**x, impl="my_kernel")
    torch.testing.assert_close(y, wkvbench.bi_wkv7(**x, impl="torch_chunked"))
    rec = registry.get_impl("bi_wkv7", "my_kernel")
    assert not rec.accepts_out and rec.module == __name__
    assert "my_kernel" in [r.name for r in wkvbench.list_impls()]


def test_availability_explains_itself(scratch_impls):
    scratch_impls("cuda_only", backend="x", devices=("cuda",))(lambda **kw: None)
    scratch_impls("no_backend", backend="x", check=lambda d: (False, "xyz not installed"))(lambda **kw: None)
    ok, why = registry.get_impl("bi_wkv7", "cuda_only").available("cpu")
    assert not ok and "cuda" in why
    ok, why = registry.get_impl("bi_wkv7", "no_backend").available("cpu")
    assert (ok, why) == (False, "xyz not installed")
    x = bi_wkv7_inputs(1, 2, 1, 64)
    with pytest.raises(ValueError, match="no_backend.*xyz not installed"):
        wkvbench.bi_wkv7(**x, impl="no_backend")


def test_auto_picks_highest_priority_runnable(scratch_impls):
    calls = []
    scratch_impls("best_but_broken", backend="x", priority=1000, check=lambda d: (False, "nope"))(lambda **kw: None)

    @scratch_impls("best", backend="x", priority=999)
    def best(r, w, k, v, a, b, g=None):
        calls.append(1)
        return torch.zeros_like(r)

    x = bi_wkv7_inputs(1, 2, 1, 64)
    wkvbench.bi_wkv7(**x)
    assert calls == [1]
    assert registry.select_impl("bi_wkv7", torch.device("cpu"), torch.float32, 64).name == "best"


def test_auto_respects_head_size_and_dtype(scratch_impls):
    scratch_impls("only_n32", backend="x", priority=999, head_sizes=(32,))(lambda **kw: None)
    scratch_impls("only_fp16", backend="x", priority=998, dtypes=(torch.float16,))(lambda **kw: None)
    assert registry.select_impl("bi_wkv7", torch.device("cpu"), torch.float32, 64).name not in ("only_n32", "only_fp16")
    assert registry.select_impl("bi_wkv7", torch.device("cpu"), torch.float16, 64).name == "only_fp16"


def test_can_run_is_the_one_answer(scratch_impls):
    scratch_impls("t_cuda", backend="t", devices=("cuda",))(lambda r, w, k, v, a, b, g=None: r)
    scratch_impls("t_f32", backend="t", dtypes=(torch.float32,), head_sizes=(64,))(lambda r, w, k, v, a, b, g=None: r)
    f32, cuda = registry.get_impl("bi_wkv7", "t_f32"), registry.get_impl("bi_wkv7", "t_cuda")
    assert f32.can_run(registry.Need("cpu", torch.float32, 64)) == (True, "ok")
    assert f32.can_run(registry.Need("cpu", "float32", 64)) == (True, "ok")  # a case's dtype name
    assert f32.can_run(registry.Need("cpu", torch.float16, 64)) == (False, "dtype float16 not supported")
    assert "head size 32 not supported" in f32.can_run(registry.Need("cpu", torch.float32, 32))[1]
    assert cuda.can_run(registry.Need("cpu", torch.float32)) == (False, "runs on cuda, not cpu")
    # training modes need a backward; the same reason the plan, the worker and dispatch give
    assert f32.can_run(registry.Need("cpu", torch.float32, 64, "bwd")) == (False, registry.no_backward("t_f32"))
    assert registry.get_impl("bi_wkv7", "torch_chunked").can_run(registry.Need("cpu", torch.float32, 64, "fwd_bwd"))[0]


def test_unknown_impl_names_itself():
    x = bi_wkv7_inputs(1, 2, 1, 64)
    with pytest.raises(ValueError, match="'nonexistent'"):
        wkvbench.bi_wkv7(**x, impl="nonexistent")
    with pytest.raises(TypeError, match="impl"):
        wkvbench.bi_wkv7(**x, impl=3)


def test_registration_is_validated(scratch_impls):
    with pytest.raises(ValueError, match="op"):
        wkvbench.register_impl("conv", name="x", backend="y")
    with pytest.raises(ValueError, match="name"):
        wkvbench.register_impl("bi_wkv7", name="bad name!", backend="y")
    with pytest.raises(ValueError, match="devices"):
        wkvbench.register_impl("bi_wkv7", name="x", backend="y", devices=("tpu",))
    with pytest.raises(TypeError, match="dtypes"):
        wkvbench.register_impl("bi_wkv7", name="x", backend="y", dtypes=("float32",))
    with pytest.raises(ValueError, match="already registered"):
        wkvbench.register_impl("bi_wkv7", name="torch_loop", backend="y")(lambda **kw: None)


def test_plugin_from_file(tmp_path):
    p = tmp_path / "myplug.py"
    p.write_text(
        textwrap.dedent(
            """
            import wkvbench
            @wkvbench.register_impl("attention", name="plugin_attn", backend="torch", devices=("cpu",))
            def plugin_attn(q, k, v):
                return wkvbench.reference.attention(q, k, v).to(q.dtype)
            """
        )
    )
    try:
        registry.load_plugin(str(p))
        assert registry.get_impl("attention", "plugin_attn").available("cpu")[0]
    finally:
        registry.unregister_impl("attention", "plugin_attn")
    with pytest.raises(ValueError, match="plugin"):
        registry.load_plugin(str(tmp_path / "missing.py"))
    with pytest.raises(ValueError, match="plugin"):
        registry.load_plugin("no_such_module_xyz")
