"""Activation checkpointing of network training cells (docs/spec.md section 8): ``checkpoint = blocks``
recomputes each block in the backward; a key column read as ``none`` in old rows."""

from __future__ import annotations

import pytest
import torch

import wkvbench.models as wm
from wkvbench import schema
from wkvbench.harness import plan as P
from wkvbench.harness import suite as S
from wkvbench.models import train
from wkvbench.models.network_op import NetworkCase, shape_for

SECONDS = 0.32


def test_checkpoint_is_a_key_column_and_old_rows_read_as_none():
    assert schema.KEY[-1] == "checkpoint" and schema.KEY_DEFAULTS["checkpoint"] == "none"
    assert schema.CHECKPOINTS == ("none", "blocks") and schema.SCHEMA_VERSION >= 6
    old = {k: "x" for k in schema.KEY if k != "checkpoint"} | {"batch": 1, "tokens": 2}
    assert schema.key_of(old)[-1] == "none"


@pytest.mark.parametrize("preset, impl", [("A-RWKV-T", "torch_chunked"), ("AuM-T", "torch_chunked")])
def test_gradients_with_and_without_checkpointing_agree(preset, impl):
    p = wm.get_preset(preset)
    net = wm.build(p, SECONDS, impl, torch.float32, "cpu", seed=1)
    mel = wm.spectrogram(1, SECONDS, seed=1)
    target = train.targets(1, "cpu", seed=1)
    plain = train.grads(net, mel, target)
    saved_plain = train.saved_bytes(net, mel, target)
    net.checkpoint_blocks = True
    ckpt = train.grads(net, mel, target)
    saved_ckpt = train.saved_bytes(net, mel, target)
    assert float(plain.norm()) > 0
    torch.testing.assert_close(ckpt, plain, rtol=1e-6, atol=1e-9)
    assert saved_ckpt < saved_plain / 4  # only the blocks' inputs are kept (plus the head's)


def test_a_checkpointed_case_passes_the_gate_and_the_twin_keeps_its_activations():
    p = wm.get_preset("A-RWKV-T")
    case = NetworkCase(p, shape_for(p, 1, p.tokens(SECONDS)), torch.float32, "cpu", checkpoint="blocks")
    assert case.net.checkpoint_blocks and case.checkpoint == "blocks"
    res = case.gate("torch_chunked", mode="fwd_bwd")
    assert res["passed"] and 0 < res["grad_rel_err"] <= res["grad_tol"], res
    assert not case._gate()._twin().checkpoint_blocks
    with pytest.raises(ValueError, match="checkpoint"):
        NetworkCase(p, shape_for(p, 1, p.tokens(SECONDS)), torch.float32, "cpu", checkpoint="all")


def test_the_plan_checkpoints_network_training_cells_only():
    flags = {"models": "A-RWKV-T", "impls": "torch_chunked", "seconds": "0.32", "mode": "fwd,fwd_bwd"}
    suite = S.suite_from_flags("network", **flags, checkpoint="none,blocks")
    planned = {(c.mode, c.checkpoint): why for c, impls in P.plan(suite, "cpu") for _, why in impls}
    assert planned[("fwd_bwd", "blocks")] is None and planned[("fwd_bwd", "none")] is None
    assert "fwd_bwd only" in planned[("fwd", "blocks")]
    cases = {c.checkpoint: c for c in P.expand_cases(suite, "cpu") if c.mode == "fwd_bwd"}
    assert cases["blocks"].key("torch_chunked")[-1] == "blocks" and "checkpoint=blocks" in cases["blocks"].label()
    assert cases["blocks"].case_id != cases["none"].case_id
    kernel = S.suite_from_flags("bi_wkv7", impls="torch_chunked", tokens="16", mode="fwd_bwd", checkpoint="blocks")
    [(_, [(_, why)])] = P.plan(kernel, "cpu")
    assert "whole networks" in why
    with pytest.raises(S.SuiteError, match="checkpoint"):
        S.suite_from_flags("network", models="A-RWKV-T", seconds="0.32", checkpoint="all")
    edited = S.edit_suite(suite, checkpoint="blocks")
    assert {g.checkpoint for g in edited.groups} == {("blocks",)}
    toml = S.parse_suite({"group": [{"op": "network", "models": ["A-RWKV-T"], "seconds": [0.32],
                                     "checkpoint": ["blocks"]}]})  # fmt: skip
    assert toml.groups[0].checkpoint == ("blocks",)


def test_report_lines_name_the_checkpointing_and_rows_without_it_read_as_none():
    import pandas as pd

    from wkvbench.report.figures.network import network_lines
    from wkvbench.report.load import tidy

    row = {"op": "network", "impl": "torch_chunked", "model": "A-RWKV-T", "batch": 1, "tokens": 16, "seconds": 0.32,
           "dtype": "float32", "device": "cpu", "variant": "realistic", "mode": "fwd_bwd", "status": "ok",
           "median_ms": 10.0}  # fmt: skip
    df = tidy(pd.DataFrame([row, {**row, "checkpoint": "blocks", "median_ms": 12.0}]))
    assert list(df["checkpoint"]) == ["none", "blocks"] and list(df["precision"]) == ["pure", "pure"]
    assert set(network_lines(df)["line"]) == {"A-RWKV-T (torch_chunked)", "A-RWKV-T (torch_chunked) checkpoint=blocks"}


def test_a_checkpointed_training_cell_runs_through_the_harness(tmp_path, monkeypatch):
    import pandas as pd

    from wkvbench import cli

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "run"
    rc = cli.main(["run", "--op", "network", "--model", "A-RWKV-T", "--impl", "torch_chunked", "--seconds", "0.32",
                   "--mode", "fwd_bwd", "--checkpoint", "none,blocks", "--device", "cpu", "--out", str(out),
                   "--no-progress", "--budget-s", "0.01", "--min-samples", "1", "--rounds", "1", "--warmup-s", "0",
                   "--strict"])  # fmt: skip
    assert rc == 0
    rows = pd.read_csv(out / "results.csv").set_index("checkpoint")
    assert sorted(rows.index) == ["blocks", "none"] and (rows["status"] == "ok").all()
    assert rows.loc["blocks", "saved_bytes"] < rows.loc["none", "saved_bytes"] / 4
    assert rows.loc["blocks", "grad_rel_err"] <= rows.loc["blocks", "grad_tol"]


def test_the_report_never_pools_checkpointed_cells_with_plain_ones():
    import pandas as pd

    from wkvbench.report import analysis as an
    from wkvbench.report.load import tidy

    def row(model, impl, ms, checkpoint="none", status="ok"):
        p = wm.get_preset(model)
        return {"op": "network", "impl": impl, "model": model, "batch": 8, "tokens": p.tokens(327.68),
                "seconds": 327.68, "dtype": "bfloat16", "device": "cuda", "variant": "realistic", "mode": "fwd_bwd",
                "checkpoint": checkpoint, "status": status, "median_ms": ms if status == "ok" else None}  # fmt: skip

    df = tidy(pd.DataFrame([
        row("A-RWKV-B", "triton_chunked", None, status="oom"),
        row("A-RWKV-B", "triton_chunked", 900.0, "blocks"),
        row("AuM-B", "mamba_ssm", None, status="oom"),
        row("AuM-B", "mamba_ssm", 1800.0, "blocks"),
    ]))  # fmt: skip
    table, where = an.network_headline(df)
    assert where["checkpoint"] == "none" and list(table["best_status"]) == ["oom"]  # the plain cell, not pooled
    on = an.select(df, {"checkpoint": "blocks"})
    table, where = an.network_headline(on)
    assert table["scan_speedup"].iloc[0] == pytest.approx(2.0) and "checkpoint=blocks" in an.slice_label(where)
    sp = an.speedups(an.as_mixers(df), "audio")
    assert set(zip(sp["checkpoint"], sp["base_status"], strict=True)) == {("none", "oom"), ("blocks", "ok")}
