"""The ``network`` op: its record, planning, a CPU sweep of the three families, CLI errors, figures.

Whole networks are slow on a CPU, so the sweep runs each family once at 1.28 s (one torch thread) with the fewest
samples; the accuracy gate inside it is the network gate of docs/spec.md section 8 (float64
network with the reference mixer, bar twice the naive mixer's error, at most 1e-4 in float32).
"""

import json

import pandas as pd
import pytest

from wkvbench import cli, listing, ops, presets
from wkvbench.harness import plan as P
from wkvbench.harness import suite as S
from wkvbench.harness.summary import summary_table
from wkvbench.models import network_op, tokens_for
from wkvbench.report.figures import network as NF
from wkvbench.report.load import Env, tidy
from wkvbench.schema import derive

SPEC = ops.get_op("network")


def test_record_takes_the_models_mixer_implementations():
    assert ops.impl_op("network", "A-RWKV-T") == "bi_wkv7"
    assert ops.impl_op("network", "AST-B") == "attention"
    assert ops.impl_op("network", "AuM-S") == "bi_selective_scan"
    assert set(ops.impl_ops("network")) == {"bi_wkv7", "attention", "bi_selective_scan"}
    assert ops.impl_op("bi_wkv7", "AST-B") == "bi_wkv7"  # a plain op keeps its own
    with pytest.raises(ValueError, match="model"):
        ops.impl_op("network")
    assert SPEC.prepare is not None and SPEC.args == ("mel",)


def test_the_network_op_is_registered_by_its_own_module():
    from dataclasses import replace

    from wkvbench import opspec
    from wkvbench.models.network_op import NetworkCase

    assert opspec.OPS["network"] is SPEC and SPEC.prepare is NetworkCase and list(opspec.OPS)[-1] == "network"
    assert opspec.register_op(SPEC) is SPEC  # registering the same record again is harmless
    with pytest.raises(ValueError, match="^record: op 'network' is already registered"):
        opspec.register_op(replace(SPEC, label="other"))
    with pytest.raises(TypeError, match="^record"):
        opspec.register_op("network")


def test_a_network_case_is_compared_with_its_familys_naive_mixer():
    assert SPEC.naive_for("AST-B") == "torch_eager" == ops.get_op("attention").naive_impl
    assert SPEC.naive_for("A-RWKV-T") == SPEC.naive_for("AuM-T") == "torch_loop"
    assert ops.get_op("bi_wkv7").naive_for("AST-B") == "torch_loop"  # a plain op keeps its own

    def row(impl, ms):
        return {
            "op": "network",
            "impl": impl,
            "model": "AST-B",
            "batch": 1,
            "tokens": 146,
            "dtype": "float32",
            "device": "cpu",
            "variant": "realistic",
            "status": "ok",
            "median_ms": ms,
            "tokens_per_s": None,
        }

    lines = {
        " ".join(line.split()[1:3]): line
        for line in summary_table([row("torch_eager", 8.0), row("sdpa_math", 2.0)]).splitlines()[2:]
    }
    assert "4x" in lines["AST-B (sdpa_math)"]  # AST-B networks get a "vs naive" figure, named by network
    assert "AST-B (torch_eager)" in lines


@pytest.mark.parametrize("preset", ["A-RWKV-T", "AST-B", "AuM-T"])
@pytest.mark.parametrize("seconds", [1.28, 2.56, 10.24])
def test_shape_frames_give_the_networks_own_token_count(preset, seconds):
    model = presets.get_preset(preset)
    shape = SPEC.shape_for(model, 2, model.tokens(seconds))
    assert shape["T"] == model.tokens(seconds) == tokens_for(preset, shape["F"] / 100)
    assert shape["B"] == 2 and shape["L"] == model.depth and shape["W"] == model.width


def test_per_token_weights_match_a_hand_count():
    # A-RWKV-T, width 192, 12 blocks: r/k/v/o 4*192^2, LoRA w/a/v/g 8*192*32, two 3x3 depthwise
    # ConvShifts 2*192*9, gate 3*64, ChannelMix 2*768*192; patch embedding 192*16*16; no head.
    block = 4 * 192**2 + 8 * 192 * 32 + 2 * 192 * 9 + 3 * 64 + 2 * 768 * 192
    assert network_op.per_token_weights("A-RWKV-T") == 12 * block + 192 * 256
    s = SPEC.shape_for(presets.get_preset("A-RWKV-T"), 1, 128)
    mixer = ops.get_op("bi_wkv7").flops({"B": 1, "T": 128, "H": 3, "N": 64})
    assert SPEC.flops(s) == 2 * 128 * s["P"] + 2 * 527 * 192 + 12 * mixer


def test_multi_family_group_keeps_each_models_own_mixers():
    suite = S.suite_from_flags(
        "network", models="A-RWKV-T,AST-B,AuM-T", impls="torch_chunked,sdpa_math", seconds="1.28"
    )
    cells = {(c.model, name, why) for c, impls in P.plan(suite, "cpu") for name, why in impls}
    assert cells == {
        ("A-RWKV-T", "torch_chunked", None),
        ("AST-B", "sdpa_math", None),
        ("AuM-T", "torch_chunked", None),
    }


def test_the_backward_only_mode_of_the_network_op_is_skipped_in_the_plan(tmp_path):
    assert SPEC.modes == ("fwd", "fwd_bwd") and ops.get_op("bi_wkv7").modes == ("fwd", "bwd", "fwd_bwd")
    suite = S.suite_from_flags("network", models="A-RWKV-T", impls="torch_chunked", seconds="1.28", mode="fwd_bwd,bwd")
    planned = {(c.mode, name): why for c, impls in P.plan(suite, "cpu") for name, why in impls}
    assert planned[("fwd_bwd", "torch_chunked")] is None
    assert planned[("bwd", "torch_chunked")] == "network is timed in fwd/fwd_bwd only (its op record's modes)"
    out = tmp_path / "run"
    argv = ["run", "--op", "network", "--model", "A-RWKV-T", "--impl", "torch_chunked", "--seconds", "1.28",
            "--mode", "bwd", "--device", "cpu", "--out", str(out), "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    rows = pd.read_csv(out / "results.csv")
    assert list(rows["status"]) == ["skipped"] and "fwd/fwd_bwd only" in rows["note"][0]
    # no network was built for it: the worker (its log names every command) was never sent the case
    logs = "".join(p.read_text() for p in out.rglob("worker-*.log"))
    assert " probe" in logs and " case" not in logs


def test_a_scan_mixer_for_a_rwkv_is_rejected(capsys):
    rc = cli.main(["run", "--op", "network", "--model", "A-RWKV-T", "--impl", "triton", "--seconds", "1.28",
                   "--device", "cpu", "--dry-run"])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "'triton'" in err and "bi_selective_scan" in err and "bi_wkv7" in err
    # in a suite file the cell is listed as not runnable, with the reason
    suite = S.parse_suite({"group": [{"op": "network", "models": ["A-RWKV-T"], "impls": ["triton"], "seconds": 1.28}]})
    [(_, [(name, why)])] = P.plan(suite, "cpu")
    assert name == "triton" and "not registered for bi_wkv7" in why and "bi_selective_scan" in why


@pytest.mark.parametrize(
    "flags, word",
    [
        (["--model", "A-RWKV-X", "--impl", "torch_chunked"], "A-RWKV-X"),
        (["--model", "A-RWKV-T", "--impl", "torch_chunkd"], "torch_chunkd"),
    ],
)
def test_typos_exit_2(flags, word, capsys):
    assert cli.main(["run", "--op", "network", *flags, "--seconds", "1.28", "--device", "cpu", "--dry-run"]) == 2
    assert word in capsys.readouterr().err


def test_list_shows_the_network_op(capsys):
    assert listing.borrowed()["network"]["bi_wkv7"] == ["A-RWKV-T", "A-RWKV-S", "A-RWKV-B"]
    assert cli.main(["list", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "network" in out and "-> bi_selective_scan" in out


def test_run_writes_ok_rows_for_the_three_families(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the worker's torch: one thread (a shared CPU oversubscribes)
    out = tmp_path / "run"
    rc = cli.main(["run", "--op", "network", "--model", "A-RWKV-T,AST-B,AuM-T", "--impl", "torch_chunked,sdpa_math",
                   "--seconds", "1.28", "--device", "cpu", "--out", str(out), "--no-progress", "--budget-s", "0.01",
                   "--min-samples", "1", "--rounds", "1", "--warmup-s", "0", "--strict"])  # fmt: skip
    assert rc == 0
    rows = pd.read_csv(out / "results.csv")
    assert sorted(zip(rows["model"], rows["impl"], strict=True)) == [
        ("A-RWKV-T", "torch_chunked"), ("AST-B", "sdpa_math"), ("AuM-T", "torch_chunked"),
    ]  # fmt: skip
    assert (rows["status"] == "ok").all() and (rows["op"] == "network").all()
    assert (rows["rel_err"] <= rows["tol"]).all() and (rows["tol"] <= 1e-4).all() and (rows["rel_err"] > 0).all()
    assert ((rows["audio_s_per_s"] * rows["median_ms"] / 1e3 / 1.28 - 1).abs() < 1e-6).all()  # CSV rounds
    assert (rows["flops"] > 0).all() and (rows["seconds"] == 1.28).all()
    assert [json.loads(s)["F"] for s in rows["shape"]] == [128, 126, 128]  # AST's grid uses 126 of 128 frames


def _row(model, impl, seconds, ms, status="ok"):
    m = presets.get_preset(model)
    row = {"op": "network", "impl": impl, "model": model, "batch": 1, "tokens": m.tokens(seconds), "seconds": seconds,
           "dtype": "bfloat16", "device": "cuda", "variant": "realistic", "status": status, "median_ms": ms,
           "p20_ms": ms * 0.95, "p80_ms": ms * 1.05, "peak_mem_bytes": 2**30}  # fmt: skip
    return {**row, **derive(row)}


def test_network_figures_from_a_synthetic_table():
    # synthetic (not a measurement): A-RWKV linear in audio, AST quadratic
    secs = (10.24, 81.92, 327.68)
    rows = [_row("A-RWKV-B", "triton_chunked", s, 2.0 * s) for s in secs]
    rows += [_row("AST-B", "sdpa_flash", s, 1.0 * s + 0.2 * s * s) for s in secs]
    rows += [_row("AuM-B", "torch_chunked", s, 3.0 * s) for s in secs]
    rows.append({**_row("A-RWKV-B", "triton_chunked", 10.24, 1.0), "op": "bi_wkv7"})  # a kernel row
    df = tidy(pd.DataFrame(rows))
    assert set(NF.kernel_rows(df)["op"]) == {"bi_wkv7"}
    assert set(NF.as_mixers(df)["op"]) == {"bi_wkv7", "attention", "bi_selective_scan"}
    env = Env()
    thr = NF.fig_network_throughput(tidy(pd.DataFrame([*rows, {**rows[0], "mode": "fwd_bwd", "median_ms": 60.0}])), env)
    t = thr.table[(thr.table["line"] == "A-RWKV-B (triton_chunked)") & (thr.table["panel"] == "B=1 fwd")]
    assert list(t.sort_values("seconds")["audio_s_per_s"].round(6)) == [500.0] * 3
    assert set(thr.table["panel"]) == {"B=1 fwd", "B=1 fwd_bwd"}  # every network on one axis; training beside
    assert set(thr.table["line"]) == {"A-RWKV-B (triton_chunked)", "AST-B (sdpa_flash)", "AuM-B (torch_chunked)"}
    assert "13.3x" in thr.caption and len(thr.figure.axes) == 4
    star = [ln for ln in thr.figure.axes[0].get_lines() if ln.get_marker() == "*"]
    assert star and star[0].get_ydata()[0] == pytest.approx(13.3 * 327.68 / ((327.68 + 0.2 * 327.68**2) / 1e3))
    sp = NF.fig_network_speedup(df, env)
    assert sp.name == "fig11_network_speedup" and "13.3x" in sp.caption
    vs_ast = sp.table[(sp.table["baseline"] == "attention_sdpa") & (sp.table["seconds"] == 327.68)]
    assert float(vs_ast["speedup"].iloc[0]) == pytest.approx((327.68 + 0.2 * 327.68**2) / (2 * 327.68))
    par = NF.fig_network_params(df, env)
    at_328 = par.table[par.table["target_s"] == 328.0].set_index("model")
    assert at_328.loc["A-RWKV-B", "params"] < at_328.loc["AuM-B", "params"]
    assert at_328.loc["A-RWKV-B", "audio_s_per_s"] == pytest.approx(500.0)
