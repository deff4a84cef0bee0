"""`wkvbench verify`, `list` and `kernels` end to end on CPU, including a failing and a crashing impl."""

import json

import pytest
import torch

import wkvbench
from wkvbench import cli, registry, schema, verify


@pytest.fixture
def bad_impls():
    @wkvbench.register_impl("bi_wkv7", name="zz_wrong", backend="torch", devices=("cpu",))
    def zz_wrong(r, w, k, v, a, b, g=None, *, out=None):
        y = wkvbench.bi_wkv7(r, w, k, v, a, b, g, impl="torch_loop") * 1.01
        return y if out is None else out.copy_(y)

    @wkvbench.register_impl("bi_wkv7", name="zz_crash", backend="torch", devices=("cpu",))
    def zz_crash(r, w, k, v, a, b, g=None):
        raise RuntimeError("kernel exploded")

    yield
    registry.unregister_impl("bi_wkv7", "zz_wrong")
    registry.unregister_impl("bi_wkv7", "zz_crash")


def test_verify_passes_torch_impls_all_dtypes():
    res = verify.run_verify(
        ["bi_wkv7"], ["torch_loop", "torch_chunked"], list(verify.DTYPES.values()), torch.device("cpu")
    )
    assert res and all(c.status == "ok" for c in res), [verify.format_row(c) for c in res if c.status != "ok"]
    assert {c.dtype for c in res} == {"float32", "bfloat16", "float16"}
    assert any("strong_decay" in c.shape for c in res)


def test_verify_flags_wrong_and_crashing(bad_impls, capsys, tmp_path):
    out = tmp_path / "v.json"
    rc = cli.main(["verify", "--op", "bi_wkv7", "--impl", "zz_wrong,zz_crash", "--dtype", "float32", "--out", str(out)])
    assert rc == 1
    text = capsys.readouterr().out
    assert " wrong " in text and " failed " in text and "kernel exploded" in text
    assert text.rstrip().endswith("\n0 ok, 9 wrong, 9 failed")
    rows = json.loads(out.read_text())
    assert {r["status"] for r in rows} == {"wrong", "failed"} <= set(schema.STATUSES)
    assert {r["status"] for r in rows if r["impl"] == "zz_crash"} == {"failed"}


def test_verify_out_of_memory_is_oom_and_a_failure(capsys):
    @wkvbench.register_impl("bi_wkv7", name="zz_oom", backend="torch", devices=("cpu",))
    def zz_oom(r, w, k, v, a, b, g=None):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 TiB (simulated)")

    try:
        assert cli.main(["verify", "--op", "bi_wkv7", "--impl", "zz_oom", "--dtype", "float32", "-q"]) == 1
    finally:
        registry.unregister_impl("bi_wkv7", "zz_oom")
    assert capsys.readouterr().out.rstrip().endswith("\n0 ok, 0 wrong, 0 failed, 9 oom")


@pytest.mark.parametrize(
    ("argv", "message", "known"),
    [
        (["--impl", "torch_loop,nope"], "--impl: unknown implementation(s) 'nope'", "torch_chunked"),
        (["--op", "bi_wkv7", "--impl", "torch_eager"], "--impl: unknown implementation(s) 'torch_eager'", "torch_loop"),
        (["--op", "bi_wkv7,nope"], "--op: unknown op(s) 'nope'", "bi_selective_scan"),
        (["--dtype", "float8"], "--dtype: unknown dtype(s) 'float8'", "bfloat16"),
    ],
)
def test_verify_typos_exit_2_naming_the_known_names(argv, message, known, capsys):
    assert cli.main(["verify", *argv]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and known in captured.err and captured.out == ""  # nothing was checked


def test_list_json(capsys):
    assert cli.main(["list", "--json", "--device", "cpu"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = {(r["op"], r["name"]) for r in data["impls"]}
    assert ("bi_wkv7", "torch_chunked") in names
    row = next(r for r in data["impls"] if r["name"] == "torch_loop")
    assert row["cpu"] == "yes"
