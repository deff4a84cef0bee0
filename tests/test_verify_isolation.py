"""``wkvbench verify`` runs each implementation in a child process: a crash or a hang costs only its rows."""

import csv
import json
import textwrap

import pytest
import torch

from wkvbench import cli, registry, verify

PLUGIN = textwrap.dedent(
    '''
    """Test plugin: an implementation that aborts its process at T > 100, and one that hangs."""
    import os
    import time

    from wkvbench import register_impl
    from wkvbench.impls.bi_wkv7_torch import torch_chunked


    @register_impl("bi_wkv7", name="zz_abort_late", backend="test", devices=("cpu",), backward=True)
    def zz_abort_late(r, w, k, v, a, b, g=None):
        if r.shape[1] > 100:
            os.abort()
        return torch_chunked(r, w, k, v, a, b, g)


    @register_impl("bi_wkv7", name="zz_hang", backend="test", devices=("cpu",))
    def zz_hang(r, w, k, v, a, b, g=None):
        time.sleep(600)
    '''
)


@pytest.fixture
def plugin(tmp_path):
    path = tmp_path / "isolation_plugin.py"
    path.write_text(PLUGIN)
    registry.load_plugin(str(path))
    yield str(path)
    for name in ("zz_abort_late", "zz_hang"):
        registry.unregister_impl("bi_wkv7", name)


def test_an_abort_costs_only_the_rest_of_that_implementation(plugin, tmp_path):
    out = tmp_path / "v.csv"
    argv = ["verify", "--op", "bi_wkv7", "--impl", "zz_abort_late,torch_chunked", "--dtype", "float32",
            "--device", "cpu", "--plugin", plugin, "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 1
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    mine = [r for r in rows if r["impl"] == "zz_abort_late"]
    # the shapes up to T = 64 finished and stay; then one failed row naming the signal
    assert [json.loads(r["dims"])["T"] for r in mine if r["status"] == "ok"] == [1, 5, 20, 17, 64]
    failed = [r for r in mine if r["status"] == "failed"]
    assert len(failed) == 1 and "SIGABRT" in failed[0]["note"] and "Fatal Python error" in failed[0]["note"]
    # the next implementation ran in a fresh process: all its checks pass
    theirs = [r for r in rows if r["impl"] == "torch_chunked"]
    assert len(theirs) == 9 and {r["status"] for r in theirs} == {"ok"}


def test_a_hang_is_a_timeout(plugin):
    rows = verify.run_verify(
        ["bi_wkv7"], ["zz_hang"], [torch.float32], torch.device("cpu"), isolate=True, timeout_s=8, plugins=(plugin,)
    )
    assert [r.status for r in rows] == ["timeout"] and "--timeout 8 s" in rows[0].note
