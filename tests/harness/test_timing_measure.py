"""The measurement extras of a cell (wkvbench.harness.measure): profile pass, counted work, row columns."""

import json
from types import SimpleNamespace

import pytest
import torch

from wkvbench.harness import measure, timing


def cell(samples=(), **extra):
    return SimpleNamespace(samples=list(samples), extra=dict(extra), note="", impl="x")


class Ev:
    def __init__(self, name, device_type, cpu=0.0, dev=0.0):
        self.name, self.device_type = name, device_type
        self.self_cpu_time_total, self.self_device_time_total = cpu, dev


class FakeProfiler:
    """A profiler context whose events are given: kernels of a three-launch call, and host operators."""

    def __init__(self, events):
        self._events = events

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def events(self):
        return self._events


def test_kernel_rows_on_a_gpu_take_device_events_per_call():
    evs = []
    for _ in range(2):  # two calls of catflip-like work: flip, kernel, merge
        evs += [
            Ev("flip_kernel", "DeviceType.CUDA", dev=5.0),
            Ev("bi_wkv7_kernel", "DeviceType.CUDA", dev=40.0),
            Ev("merge_kernel", "DeviceType.CUDA", dev=3.0),
            Ev("aten::flip", "DeviceType.CPU", cpu=50.0),
        ]
    rows = measure.profile_call(lambda: None, torch.device("cpu"), calls=2, profiler=FakeProfiler(evs))
    # profile_call on a CPU device keeps CPU operators; the GPU selection is kernel_rows("cuda")
    assert [r["name"] for r in rows] == ["aten::flip"]
    rows = measure.kernel_rows(evs, "cuda", calls=2)
    assert [(r["name"], r["count_per_call"], r["us_per_call"]) for r in rows] == [
        ("bi_wkv7_kernel", 1.0, 40.0),
        ("flip_kernel", 1.0, 5.0),
        ("merge_kernel", 1.0, 3.0),
    ]


def test_profile_call_records_cpu_operators_with_torch_profiler():
    a = torch.randn(32, 32)
    rows = measure.profile_call(lambda: torch.exp(a @ a), torch.device("cpu"), calls=2)
    names = {r["name"] for r in rows}
    assert {"aten::mm", "aten::exp"} <= names
    mm = next(r for r in rows if r["name"] == "aten::mm")
    assert mm["count_per_call"] == 1.0 and mm["us_per_call"] > 0
    with pytest.raises(ValueError, match="calls"):
        measure.profile_call(lambda: None, torch.device("cpu"), calls=0)


def test_counted_work_and_after_warmup_on_cpu():
    a = torch.randn(4, 8)
    got = measure.after_warmup(timing.Timer("cpu"), lambda: a @ a.T, "torch", est_ms=0.01)
    assert got["graph_ms"] is None and got["graph_note"] == ""  # no graph on a CPU
    assert got["counted_flops"] == 2 * 4 * 8 * 4
    assert got["counted_bytes"] == 4 * (32 + 32 + 16)
    assert measure.counted_work(lambda: None, "cupy") == {}

    def broken():
        raise RuntimeError("boom")

    assert measure.counted_work(broken, "torch")["count_note"].startswith("not counted: RuntimeError")


def test_runner_side_bookkeeping():
    c = cell()
    measure.note_check(c, {"graph_ms": None, "graph_note": "capture failed: X", "counted_flops": 10, "other": 1})
    assert c.extra == {"graph_ms": None, "graph_note": "capture failed: X", "counted_flops": 10}
    measure.note_check(c, {"count_note": "not counted: E"})
    assert c.note == "not counted: E"
    for n, flag in ((10, False), (30, True), (5, None)):  # None: NVML could not tell
        measure.note_batch(c, {"samples_ms": [1.0] * n, "throttled": flag})
    c.samples = [1.0] * 40 + [1.01] * 5
    row = measure.row_columns(c)
    assert row["throttled_frac"] == pytest.approx(30 / 40)
    assert row["rel_ci"] == pytest.approx(timing.rel_ci(c.samples))
    assert row["graph_note"] == "capture failed: X" and row["counted_bytes"] is None
    assert set(row) == set(measure.COLUMNS)
    assert (
        measure.row_columns(cell([1.0]))["rel_ci"] is None
        and measure.row_columns(cell([1.0]))["throttled_frac"] is None
    )


def test_quiet_follows_max_noise():
    run = SimpleNamespace(max_noise=0.01, min_samples=5)
    assert measure.quiet(cell([2.0] * 10), run)
    assert not measure.quiet(cell([2.0] * 4), run)
    assert not measure.quiet(cell([1.0, 3.0] * 10), run)
    assert not measure.quiet(cell([2.0] * 10), SimpleNamespace(max_noise=0.0, min_samples=5))


def test_profile_cell_appends_kernels_jsonl(tmp_path):
    replies = {"ok": True, "calls": 3, "kernels": [{"name": "k", "count_per_call": 1.0, "us_per_call": 2.0}]}
    client = SimpleNamespace(request=lambda cmd, **kw: replies if cmd == "profile" else None)
    runner = SimpleNamespace(client=client, run=SimpleNamespace(max_cell_s=5), out=tmp_path)
    case = SimpleNamespace(
        key=lambda impl: ("bi_wkv7", impl, "A-RWKV-T", 1, 8, "float32", "cpu", "realistic", "fwd", "pure", "none")
    )
    c = cell()
    measure.profile_cell(runner, case, c)
    replies = {"ok": False, "error": "boom"}
    measure.profile_cell(runner, case, c)
    recs = [json.loads(x) for x in (tmp_path / measure.KERNELS_FILE).read_text().splitlines()]
    assert len(recs) == 1 and recs[0]["impl"] == "x" and recs[0]["kernels"][0]["name"] == "k"
    assert c.note == "not profiled: boom"


def test_lock_clocks_on_cpu_is_a_note():
    assert measure.lock_clocks("cpu", None) == {"locked": False, "note": "clocks not locked: the run is on a CPU"}
