"""The worker's commands, driven in-process (fast), and the error classification."""

import pytest
import torch

from wkvbench import accuracy, ops, registry
from wkvbench.harness import plan as P
from wkvbench.harness import suite as S
from wkvbench.harness.worker import Session, classify


def case(tokens=16, check_max=0):
    suite = S.suite_from_flags("bi_wkv7", models="A-RWKV-T", tokens=str(tokens), run={"check_max_tokens": check_max})
    return P.expand_cases(suite, "cpu")[0]


@pytest.fixture
def session(plugin_file):
    return Session(plugins=(str(plugin_file),))


def ask(session, cmd, **kw):
    return session.handle({"cmd": cmd, "id": 7, **kw})


def test_case_builds_inputs_and_reference_once(session):
    c = case()
    first = ask(session, "case", case=c.to_wire())
    assert first["ok"] and first["id"] == 7 and not first.get("cached")
    # the reference is the float64 truth of the seeded inputs
    x = ops.make_case_inputs("bi_wkv7", c.shape, torch.float32, "cpu", seed=c.seed)
    torch.testing.assert_close(session.ref, ops.reference_output("bi_wkv7", x), rtol=0, atol=0)
    assert ask(session, "case", case=c.to_wire())["cached"]


def test_check_ok_gives_accuracy_first_call_and_estimate(session):
    ask(session, "case", case=case().to_wire())
    rep = ask(session, "check", impl="torch_chunked", warmup_s=0.0)
    assert rep["ok"] and rep["status"] == "ok"
    assert rep["rel_err"] <= accuracy.TOLERANCE[torch.float32] and rep["tol"] == accuracy.TOLERANCE[torch.float32]
    assert rep["first_call_ms"] > 0 and rep["est_ms"] > 0
    sam = ask(session, "sample", impl="torch_chunked", n=3)
    assert len(sam["samples_ms"]) == 3 and sam["peak_mem_bytes"] is None  # CPU: no allocator peak


def test_wrong_output_is_caught_and_not_timed(session):
    ask(session, "case", case=case().to_wire())
    rep = ask(session, "check", impl="t_wrong", warmup_s=0.0)
    assert rep["status"] == "wrong" and rep["rel_err"] == pytest.approx(1.0) and "est_ms" not in rep


def test_unwritten_output_fails_through_nan_poisoning(session, clean_registry):
    @registry.register_impl("bi_wkv7", name="t_lazy", backend="test", devices=("cpu",))
    def t_lazy(r, w, k, v, a, b, g=None, *, out=None):
        out[:, :-1] = ops.get_op("bi_wkv7").reference(r, w, k, v, a, b, g)[:, :-1]  # forgets the last token
        return out

    ask(session, "case", case=case().to_wire())
    rep = ask(session, "check", impl="t_lazy", warmup_s=0.0)
    assert rep["status"] == "wrong" and rep["note"] == "non-finite output"


def test_oom_and_unavailable(session):
    ask(session, "case", case=case().to_wire())
    oom = ask(session, "check", impl="t_oom")
    assert not oom["ok"] and oom["kind"] == "oom" and "1.00 TiB" in oom["error"] and not oom["fatal"]
    off = ask(session, "check", impl="t_off")
    assert off["status"] == "skipped" and off["note"] == "test backend switched off"


def test_check_at_capped_length(session):
    c = case(tokens=48, check_max=16)
    ask(session, "case", case=c.to_wire())
    assert session.ref.shape[1] == 16 and session.inputs["r"].shape[1] == 48
    rep = ask(session, "check", impl="torch_chunked", warmup_s=0.0)
    assert rep["status"] == "ok" and rep["note"] == "accuracy checked at T=16"


def test_bad_commands_answer_errors(session):
    assert "unknown worker command" in ask(session, "frobnicate")["error"]
    assert "no case loaded" in ask(Session(), "check", impl="torch_loop")["error"]


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (torch.OutOfMemoryError("x"), "oom"),
        (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), "oom"),
        (type("OutOfMemoryError", (Exception,), {})("cupy"), "oom"),
        (RuntimeError("CUDA_ERROR_OUT_OF_MEMORY"), "oom"),
        (RuntimeError("an illegal memory access was encountered"), "failed"),
        (ValueError("r: bad"), "failed"),
    ],
)
def test_classify(exc, kind):
    assert classify(exc) == kind
