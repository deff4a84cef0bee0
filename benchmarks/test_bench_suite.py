"""One pytest-benchmark benchmark per runnable suite cell (see ``benchmarks/conftest.py``).

One in-process worker session serves every cell, so a case's inputs and float64 reference are
built once for all its implementations (cells come grouped by case). Under
``--benchmark-disable`` each cell is still built, checked against the reference and called, but
timed with a single sample instead of the suite's budget: a quick test that the bridge works.
"""

from __future__ import annotations

import pytest
import torch

from wkvbench.harness import timing
from wkvbench.harness.worker import Session


@pytest.fixture(scope="module")
def session():
    return Session()


def test_cell(benchmark, bench_cell, session):
    suite, case, impl = bench_cell
    run = suite.run
    setup = session.handle({"cmd": "case", "case": case.to_wire()})
    assert setup["ok"], setup.get("error")
    check = session.handle({"cmd": "check", "impl": impl, "warmup_s": run.warmup_s})
    if not check["ok"]:
        pytest.fail(f"{impl}: {check['kind']}: {check['error']}")
    if check["status"] == "skipped":
        pytest.skip(check["note"])
    assert check["status"] == "ok", f"{impl} is {check['status']}: {check.get('note')}"  # the correctness gate

    if benchmark.disabled:
        plan = [1]
    else:
        plan = timing.plan_samples(check["est_ms"], run.budget_s, run.min_samples, run.max_samples, run.rounds)
    sampled = session.handle({"cmd": "sample", "impl": impl, "n": sum(plan)})
    assert sampled["ok"], sampled.get("error")
    stats = timing.summarize(sampled["samples_ms"])
    benchmark.group = f"{case.op} {case.model} B={case.batch} T={case.tokens} {case.dtype} {case.device} {case.mode}"
    benchmark.extra_info.update(
        {
            "protocol": "cuda events, L2 flushed" if case.device == "cuda" else "perf_counter",
            **stats.as_dict(),
            "first_call_ms": check["first_call_ms"],
            "rel_err": check["rel_err"],
            "tol": check["tol"],
            "peak_mem_bytes": sampled["peak_mem_bytes"],
            "tokens": case.tokens,
            "batch": case.batch,
            "tokens_per_s": case.batch * case.tokens / (stats.median_ms / 1e3),
        }
    )

    fn, build = session.timed_call(session.callable_for(impl))  # the case's timing mode
    device = torch.device(case.device)
    if build is not None:  # bwd: the forward whose graph the timed backward reuses
        build()

    def call():
        fn()
        timing.synchronize(device)

    benchmark.pedantic(call, rounds=max(3, min(sum(plan), 50)), iterations=1, warmup_rounds=1)
