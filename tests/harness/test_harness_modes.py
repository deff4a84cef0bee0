"""Timing modes fwd / bwd / fwd_bwd end to end on CPU (docs/spec.md sections 1 and 7).

One small sweep through the real worker covers: every mode writes an ``ok`` row with the mode in
its key; training rows carry the worst gradient's error and name and the backward FLOPs; ``bwd``
times the backward alone (a plugin whose forward sleeps has a bwd median far below its forward
time); an implementation without backward is ``skipped`` in the training modes with the reason.
"""

import csv
import textwrap

import pytest

from wkvbench import cli, ops, registry
from wkvbench.harness.plan import plan
from wkvbench.harness.suite import suite_from_flags

SLEEP_S = 0.25

PLUGIN = textwrap.dedent(
    f'''
    """Test plugin: a differentiable implementation with a slow forward, and a forward-only one."""
    import time

    import torch

    from wkvbench import register_impl
    from wkvbench.impls.bi_wkv7_torch import torch_chunked


    class SlowForward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, r, w, k, v, a, b, g):
            time.sleep({SLEEP_S})
            ctx.save_for_backward(r, w, k, v, a, b, g)
            return torch_chunked(r, w, k, v, a, b, g)

        @staticmethod
        def backward(ctx, dy):
            xs = [x.detach().requires_grad_(True) for x in ctx.saved_tensors]
            with torch.enable_grad():
                return torch.autograd.grad(torch_chunked(*xs), xs, dy)


    @register_impl("bi_wkv7", name="zz_slow_fwd", backend="test", devices=("cpu",), backward=True)
    def zz_slow_fwd(r, w, k, v, a, b, g=None):
        return SlowForward.apply(r, w, k, v, a, b, g)


    @register_impl("bi_wkv7", name="zz_fwd_only", backend="test", devices=("cpu",))
    def zz_fwd_only(r, w, k, v, a, b, g=None):
        return torch_chunked(r, w, k, v, a, b, g)
    '''
)


@pytest.fixture
def plugin(tmp_path):
    path = tmp_path / "modes_plugin.py"
    path.write_text(PLUGIN)
    yield str(path)
    for name in ("zz_slow_fwd", "zz_fwd_only"):
        registry.unregister_impl("bi_wkv7", name)


def _rows(run_dir):
    with open(run_dir / "results.csv", newline="") as fh:
        return {(r["impl"], r["mode"]): r for r in csv.DictReader(fh)}


def test_three_modes_gradients_bwd_alone_and_skips(plugin, tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--op", "bi_wkv7", "--model", "A-RWKV-T", "--tokens", "16", "--device", "cpu",
            "--impl", "torch_chunked,zz_slow_fwd,zz_fwd_only", "--mode", "fwd,bwd,fwd_bwd", "--plugin", plugin,
            "--budget-s", "0.05", "--warmup-s", "0", "--rounds", "1", "--min-samples", "3", "--max-samples", "5",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    rows = _rows(out)
    assert len(rows) == 9
    for mode in ("fwd", "bwd", "fwd_bwd"):
        assert rows[("torch_chunked", mode)]["status"] == "ok", rows[("torch_chunked", mode)]["note"]
        assert rows[("zz_slow_fwd", mode)]["status"] == "ok", rows[("zz_slow_fwd", mode)]["note"]
    # the forward-only implementation: inference only, skipped in training with the reason
    assert rows[("zz_fwd_only", "fwd")]["status"] == "ok"
    for mode in ("bwd", "fwd_bwd"):
        r = rows[("zz_fwd_only", mode)]
        assert r["status"] == "skipped" and "has no backward" in r["note"], r
    # training rows: the gradients were checked, the worst one named; FLOPs of the timed mode
    spec = ops.get_op("bi_wkv7")
    fwd = rows[("torch_chunked", "fwd")]
    assert fwd["grad_rel_err"] == "" and fwd["grad_worst"] == "" and float(fwd["bytes_moved"]) > 0
    for mode, factor in (("bwd", spec.bwd_flops_factor), ("fwd_bwd", 1 + spec.bwd_flops_factor)):
        r = rows[("torch_chunked", mode)]
        assert 0 < float(r["grad_rel_err"]) <= float(r["grad_tol"]) == 1e-4
        assert r["grad_worst"] in {"dr", "dw", "dk", "dv", "da", "db", "dg"}
        assert float(r["flops"]) == pytest.approx(factor * float(fwd["flops"]))
        assert r["bytes_moved"] == ""
    # saved for backward, beyond the inputs: torch_chunked's autograd intermediates; the slow
    # plugin saves only its inputs (nothing extra); inference rows leave the column empty
    assert fwd["saved_bytes"] == ""
    for mode in ("bwd", "fwd_bwd"):
        assert int(float(rows[("torch_chunked", mode)]["saved_bytes"])) > 0
        assert int(float(rows[("zz_slow_fwd", mode)]["saved_bytes"])) == 0
    # bwd times the backward alone: far below the forward's sleep; fwd and fwd_bwd include it
    slow = {m: float(rows[("zz_slow_fwd", m)]["median_ms"]) for m in ("fwd", "bwd", "fwd_bwd")}
    assert slow["fwd"] >= SLEEP_S * 1e3 and slow["fwd_bwd"] >= SLEEP_S * 1e3
    assert slow["bwd"] < 0.4 * SLEEP_S * 1e3, slow


def test_training_modes_skip_implementations_without_backward_in_the_plan(plugin):
    registry.load_plugin(plugin)
    suite = suite_from_flags("bi_wkv7", impls="*", models="A-RWKV-T", tokens="16", mode="fwd,fwd_bwd")
    planned = {(c.mode, name): why for c, impls in plan(suite, "cpu") for name, why in impls}
    assert planned[("fwd", "zz_fwd_only")] is None and planned[("fwd", "zz_slow_fwd")] is None
    assert "zz_fwd_only has no backward" in planned[("fwd_bwd", "zz_fwd_only")]
    assert planned[("fwd_bwd", "zz_slow_fwd")] is None and planned[("fwd_bwd", "torch_chunked")] is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--op", "bi_wkv7", "--tokens", "16", "--mode", "fwd,bwdd"],
        ["suites/smoke.toml", "--mode", "training"],
    ],
)
def test_mode_typos_exit_2_naming_the_known_modes(argv, capsys):
    assert cli.main(["run", *argv, "--device", "cpu", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "--mode" in err and "fwd, bwd, fwd_bwd" in err


def test_suite_modes_are_validated(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[group]]\nop = "bi_wkv7"\ntokens = [16]\nmodes = ["fwd", "train"]\n')
    assert cli.main(["run", str(bad), "--device", "cpu", "--dry-run"]) == 2
    assert "group[0].modes[1]" in capsys.readouterr().err
    good = tmp_path / "good.toml"
    good.write_text('[[group]]\nop = "bi_wkv7"\nmodels = ["A-RWKV-T"]\ntokens = [16]\nmodes = ["bwd"]\n')
    assert cli.main(["run", str(good), "--device", "cpu", "--dry-run", "--impl", "torch_loop"]) == 0
    assert "bwd  torch_loop" in capsys.readouterr().out
