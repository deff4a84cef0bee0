"""The verify reference cache (wkvbench.refcache): computed once, shared through a directory."""

import torch

from wkvbench import ops, refcache, verify
from wkvbench.opspec import CheckShape

SHAPE = CheckShape({"B": 1, "T": 5, "H": 1, "N": 64}, "realistic", tiny=True)


def test_key_names_every_field():
    base = ("fwd", "bi_wkv7", {"B": 1, "T": 5}, "realistic", torch.bfloat16, 0, "cpu")
    k = refcache.key(*base)
    assert k.startswith("fwd-bi_wkv7-B1xT5-realistic-bfloat16-s0-")
    for i, other in ((0, "grad"), (2, {"B": 1, "T": 6}), (3, "weak_decay"), (4, torch.float32), (5, 1)):
        changed = list(base)
        changed[i] = other
        assert refcache.key(*changed) != k, i
    assert refcache.key(*base[:2], {"T": 5, "B": 1}, *base[3:]) == k  # dimension order does not matter


def test_references_are_computed_once_and_shared(tmp_path, monkeypatch):
    calls = []
    real = ops.reference_output

    def counting(op, inputs):
        calls.append(op)
        return real(op, inputs)

    monkeypatch.setattr(ops, "reference_output", counting)
    monkeypatch.setenv(refcache.ENV, str(tmp_path))
    first = verify._RefCache(torch.device("cpu"), 0).get("bi_wkv7", SHAPE, torch.float32)
    second = verify._RefCache(torch.device("cpu"), 0).get("bi_wkv7", SHAPE, torch.float32)  # another child
    assert calls == ["bi_wkv7"] and len(list(tmp_path.glob("fwd-*.pt"))) == 1
    assert torch.equal(first[1], second[1]) and torch.equal(first[0]["r"], second[0]["r"])
    g1 = verify._RefCache(torch.device("cpu"), 0).grads("bi_wkv7", SHAPE, torch.float32)
    g2 = verify._RefCache(torch.device("cpu"), 0).grads("bi_wkv7", SHAPE, torch.float32)
    assert len(list(tmp_path.glob("grad-*.pt"))) == 1
    assert torch.equal(g1[1], g2[1]) and g1[2].keys() == g2[2].keys()
    (p,) = tmp_path.glob("fwd-*.pt")
    p.write_bytes(b"damaged")  # a damaged entry is recomputed
    verify._RefCache(torch.device("cpu"), 0).get("bi_wkv7", SHAPE, torch.float32)
    assert calls == ["bi_wkv7", "bi_wkv7"]


def test_without_the_variable_nothing_is_stored(tmp_path, monkeypatch):
    monkeypatch.delenv(refcache.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    verify._RefCache(torch.device("cpu"), 0).get("bi_wkv7", SHAPE, torch.float32)
    assert not list(tmp_path.iterdir())


def test_verify_runs_implementations_in_the_order_named():
    """The GPU check names the kernels only a GPU can verify, most important first."""
    names = ["cupy_cuda", "audiorwkv_catflip"]  # not runnable on a CPU: one skipped row each, at once
    for order in (names, names[::-1]):
        rows = verify.run_verify(["bi_wkv7"], order, [torch.float32], torch.device("cpu"))
        assert [r.impl for r in rows] == order and {r.status for r in rows} == {"skipped"}
