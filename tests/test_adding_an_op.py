"""docs/adding-an-op.md is true: an op is its record, a reference and implementations, nothing else.

A toy op (``y = 2 x``) is added for the test's duration by inserting its :class:`OpSpec` into
``wkvbench.opspec.OPS`` and registering one implementation (what a module
``wkvbench/impls/toy_double_torch.py`` would do on import). Registry, dispatch, listing, verify,
suite planning, the worker's check and timing, and the results schema then handle it with no
other change.
"""

import pytest
import torch

from wkvbench import listing, ops, opspec, registry, schema, verify
from wkvbench.harness import plan as P
from wkvbench.harness import suite as S
from wkvbench.harness.worker import Session


def _validate(x, check_values=True):
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise TypeError("x: expected a [B, T, D] tensor")


TOY = opspec.OpSpec(
    name="toy_double",
    label="toy",
    family="a-rwkv",
    default_model="A-RWKV-T",
    args=("x",),
    grad_args=("x",),
    shape_for=lambda model, batch, tokens: {"B": batch, "T": tokens, "D": model.width},
    shape_of=lambda inputs: dict(zip("BTD", inputs["x"].shape, strict=True)),
    make_inputs=lambda shape, dtype, device, seed=0, variant="realistic": {
        "x": torch.randn(shape["B"], shape["T"], shape["D"], generator=torch.Generator().manual_seed(seed)).to(
            device=device, dtype=dtype
        )
    },
    reference=lambda x: 2 * x.double(),
    validate=_validate,
    out_shape=lambda inputs: tuple(inputs["x"].shape),
    bytes_moved=lambda s, es: 2 * es * s["B"] * s["T"] * s["D"],
    flops=lambda s: s["B"] * s["T"] * s["D"],
    naive_impl="torch",
    check_shapes=(opspec.CheckShape({"B": 1, "T": 5, "D": 8}, tiny=True), opspec.CheckShape({"B": 2, "T": 9, "D": 4})),
)


@pytest.fixture
def toy_op(monkeypatch):
    monkeypatch.setitem(opspec.OPS, TOY.name, TOY)

    @registry.register_impl("toy_double", name="torch", backend="torch")
    def torch_double(x, *, out=None):
        return torch.mul(x, 2, out=out)

    yield TOY
    registry.unregister_impl("toy_double", "torch")


def test_module_names_map_to_ops(toy_op):
    assert registry.op_of_module("toy_double_torch") == "toy_double"
    assert registry.op_of_module("bi_selective_scan_triton") == "bi_selective_scan"
    assert registry.op_of_module("bi_wkv7_cupy") == "bi_wkv7"
    assert registry.op_of_module("toy_double") is None and registry.op_of_module("helpers") is None
    assert all(registry.op_of_module(m.rsplit(".", 1)[1]) for m in registry.builtin_modules())


def test_registry_dispatch_and_listing(toy_op):
    x = TOY.make_inputs({"B": 1, "T": 3, "D": 2}, torch.float32, "cpu")["x"]
    torch.testing.assert_close(ops.call("toy_double", x=x), 2 * x, rtol=0, atol=0)
    with pytest.raises(TypeError, match="unexpected argument"):
        ops.call("toy_double", x=x, y=x)
    assert [r["name"] for r in listing.rows("cpu") if r["op"] == "toy_double"] == ["torch"]
    assert "naive" in next(r for r in listing.rows("cpu") if r["op"] == "toy_double")["flags"]


def test_verify_checks_it(toy_op):
    res = verify.run_verify(["toy_double"], None, [torch.float32, torch.bfloat16], torch.device("cpu"))
    assert [(c.shape, c.dtype, c.status) for c in res] == [
        ("B1xT5xD8", "float32", "ok"), ("B1xT5xD8", "bfloat16", "ok"),
        ("B2xT9xD4", "float32", "ok"), ("B2xT9xD4", "bfloat16", "ok"),
    ]  # fmt: skip


def test_run_plans_checks_and_times_it(toy_op):
    suite = S.suite_from_flags("toy_double", tokens="16,32", run={"min_samples": 2, "rounds": 1})
    planned = P.plan(suite, "cpu")
    assert [(c.model, c.tokens, impls) for c, impls in planned] == [
        ("A-RWKV-T", 16, [("torch", None)]),
        ("A-RWKV-T", 32, [("torch", None)]),
    ]
    case = planned[0][0]
    session = Session()
    assert session.handle({"cmd": "case", "case": case.to_wire()})["ok"]
    check = session.handle({"cmd": "check", "impl": "torch", "warmup_s": 0.0})
    assert check["ok"] and check["status"] == "ok" and check["rel_err"] == 0.0
    sampled = session.handle({"cmd": "sample", "impl": "torch", "n": 2})
    assert sampled["ok"] and len(sampled["samples_ms"]) == 2
    measured = {"status": "ok", "median_ms": 0.5, "seconds": case.seconds, "flops": TOY.flops(case.shape)}
    row = {**dict(zip(schema.KEY, case.key("torch"), strict=True)), **measured}
    row["bytes_moved"] = TOY.bytes_moved(case.shape, 4)
    assert schema.derive(row)["gbs"] == pytest.approx(2 * 4 * 16 * 192 / 0.5e-3 / 1e9)
