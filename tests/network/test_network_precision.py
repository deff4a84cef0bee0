"""The precision axis of network cells (docs/spec.md section 8): ``pure`` (the dtype throughout) or
``autocast`` (float32 weights, torch.autocast in the cell's dtype), a key column read as ``pure`` in old rows."""

from __future__ import annotations

import math

import pytest
import torch

import wkvbench
import wkvbench.models as wm
from wkvbench import registry, schema
from wkvbench.harness import plan as P
from wkvbench.harness import suite as S
from wkvbench.models.network_op import NetworkCase, shape_for

SECONDS = 0.32


def test_precision_is_a_key_column_and_old_rows_read_as_pure():
    assert "precision" in schema.KEY and schema.KEY_DEFAULTS["precision"] == "pure"
    old = {k: "x" for k in schema.KEY if k != "precision"} | {"batch": 1, "tokens": 2}
    assert schema.key_of(old)[schema.KEY.index("precision")] == "pure"


def test_the_plan_runs_autocast_for_networks_in_half_precision_only():
    flags = {"models": "A-RWKV-T", "impls": "torch_chunked", "seconds": "0.32", "dtype": "float32,bfloat16"}
    suite = S.suite_from_flags("network", **flags, precision="pure,autocast", run={"optimizer": "adamw"})
    planned = {(c.dtype, c.precision): why for c, impls in P.plan(suite, "cpu") for _, why in impls}
    assert planned[("float32", "pure")] is None and planned[("bfloat16", "autocast")] is None
    assert "half-precision" in planned[("float32", "autocast")]
    assert {c.optimizer for c in P.expand_cases(suite, "cpu")} == {"adamw"}
    kernel = S.suite_from_flags("bi_wkv7", impls="torch_chunked", tokens="16", dtype="bfloat16", precision="autocast")
    [(_, [(_, why)])] = P.plan(kernel, "cpu")
    assert "whole networks" in why
    with pytest.raises(S.SuiteError, match="precision"):
        S.suite_from_flags("network", models="A-RWKV-T", seconds="0.32", precision="amp")


def _nan_mixer(r, w, k, v, a, b, g=None):
    return wkvbench.bi_wkv7(r, w, k, v, a, b, g, impl="torch_chunked", validate=False) * math.nan


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_keeps_float32_weights_and_its_gate_fails_a_nan_mixer(dtype):
    p = wm.get_preset("A-RWKV-T")
    case = NetworkCase(p, shape_for(p, 1, p.tokens(SECONDS)), dtype, "cpu", precision="autocast")
    assert next(case.net.parameters()).dtype == torch.float32 and case.inputs["mel"].dtype == torch.float32
    assert case.bind("torch_chunked")(**case.inputs).dtype == dtype  # the logits come out of autocast
    good = case.gate("torch_chunked")
    assert good["passed"] and 0 < good["rel_err"] <= good["tol"], good
    wkvbench.register_impl("bi_wkv7", name="zz_nan_autocast", backend="torch", devices=("cpu",))(_nan_mixer)
    try:
        bad = case.gate("zz_nan_autocast")
    finally:
        registry.unregister_impl("bi_wkv7", "zz_nan_autocast")
    assert not bad["passed"] and "non-finite output" in bad["why"]


def test_autocast_rejects_float32_and_unknown_precisions():
    p = wm.get_preset("A-RWKV-T")
    shape = shape_for(p, 1, p.tokens(SECONDS))
    with pytest.raises(ValueError, match="precision"):
        NetworkCase(p, shape, torch.float32, "cpu", precision="autocast")
    with pytest.raises(ValueError, match="precision"):
        NetworkCase(p, shape, torch.bfloat16, "cpu", precision="amp")


def test_a_training_cell_in_bf16_autocast_runs_through_the_harness(tmp_path, monkeypatch):
    import pandas as pd

    from wkvbench import cli

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "run"
    rc = cli.main(["run", "--op", "network", "--model", "A-RWKV-T", "--impl", "torch_chunked", "--seconds", "0.32",
                   "--dtype", "bfloat16", "--precision", "autocast", "--mode", "fwd_bwd", "--optimizer", "adamw",
                   "--device", "cpu", "--out", str(out), "--no-progress", "--budget-s", "0.01", "--min-samples", "1",
                   "--rounds", "1", "--warmup-s", "0", "--strict"])  # fmt: skip
    assert rc == 0
    [row] = pd.read_csv(out / "results.csv").to_dict("records")
    assert (row["status"], row["precision"], row["mode"]) == ("ok", "autocast", "fwd_bwd")
    assert 0 < row["grad_rel_err"] <= row["grad_tol"] and row["saved_bytes"] > 0 and row["grad_worst"] == "params"
