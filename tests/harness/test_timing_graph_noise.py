"""graph_ms (with fake captures), the bootstrap rel_ci and the noise stop, and NVML throttle flags (fake NVML)."""

import math
import time

import numpy as np
import pytest
import torch

from wkvbench.harness import nvml, timing


# ----------------------------------------------------------------------------- rel_ci, noise_ok
def test_rel_ci_matches_an_independent_bootstrap():
    rng = np.random.default_rng(1)
    xs = rng.normal(10.0, 0.5, size=60)
    boot = np.random.default_rng(0)
    meds = np.median(xs[boot.integers(0, 60, size=(1000, 60))], axis=1)
    lo, hi = np.quantile(meds, [0.025, 0.975])
    assert timing.rel_ci(xs) == pytest.approx((hi - lo) / 2 / np.median(xs))


def test_rel_ci_shrinks_with_samples_and_handles_edges():
    rng = np.random.default_rng(2)
    few, many = rng.normal(1.0, 0.1, 20), rng.normal(1.0, 0.1, 2000)
    assert timing.rel_ci(many) < timing.rel_ci(few) / 4  # ~ 1/sqrt(n)
    assert timing.rel_ci([3.0] * 10) == 0.0
    assert math.isnan(timing.rel_ci([1.0]))
    assert math.isnan(timing.rel_ci([0.0, 0.0]))
    with pytest.raises(ValueError, match="conf"):
        timing.rel_ci([1.0, 2.0], conf=1.5)


def test_noise_ok_stops_only_when_quiet_and_enough_samples():
    quiet = [1.0 + 1e-4 * (i % 3) for i in range(30)]
    noisy = list(np.random.default_rng(3).lognormal(0, 0.5, 30))
    assert timing.noise_ok(quiet, 0.01, 10)
    assert not timing.noise_ok(quiet[:5], 0.01, 10)  # fewer than min_samples
    assert not timing.noise_ok(noisy, 0.01, 10)
    assert not timing.noise_ok(quiet, 0.0, 10)  # 0: sample to the budget
    with pytest.raises(ValueError, match="max_noise"):
        timing.noise_ok(quiet, -1.0, 10)


# ----------------------------------------------------------------------------- graph_ms
class FakeGraph:
    def __init__(self, fn):
        self.fn, self.replays = fn, 0

    def replay(self):
        self.replays += 1
        self.fn()


def test_graph_ms_is_empty_on_cpu():
    assert timing.Timer("cpu").graph_ms(lambda: None, 5) == (None, "")


def test_graph_ms_replays_a_captured_call():
    made = []

    def capture(fn):
        made.append(FakeGraph(fn))
        return made[-1]

    ms, note = timing.Timer("cpu").graph_ms(lambda: time.sleep(0.002), 5, capture=capture)
    assert note == "" and 1.5 < ms < 50
    assert made[0].replays == 6  # one untimed replay, then the samples


def test_graph_ms_gives_the_reason_when_capture_refuses():
    def refuse(fn):
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    ms, note = timing.Timer("cpu").graph_ms(lambda: None, 5, capture=refuse)
    assert ms is None
    assert note == "capture failed: RuntimeError: operation not permitted when stream is capturing"
    with pytest.raises(ValueError, match="n"):
        timing.Timer("cpu").graph_ms(lambda: None, 0)


# ----------------------------------------------------------------------------- NVML throttle flags
class FakeNVML:
    """The pynvml calls nvml.py makes, with settable clock-event reasons and permissions."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 0, 1, 0

    def __init__(self, reasons=0, sm=1980, root=False):
        self.reasons, self.sm, self.root, self.locked = reasons, sm, root, None

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return self.reasons

    def nvmlDeviceGetClockInfo(self, h, which):
        return self.sm

    def nvmlDeviceGetMaxClockInfo(self, h, which):
        return 1980

    def nvmlDeviceSetGpuLockedClocks(self, h, lo, hi):
        if not self.root:
            raise PermissionError("Insufficient Permissions")
        self.locked = (lo, hi)

    def nvmlDeviceResetGpuLockedClocks(self, h):
        self.locked = None


@pytest.fixture
def fake_nvml(monkeypatch):
    fake = FakeNVML()
    monkeypatch.setitem(nvml._STATE, "init", fake)
    return fake


def test_clock_state_and_throttled_flags(fake_nvml):
    fake_nvml.reasons = 0x1  # idle only: not throttling
    idle = nvml.clock_state("h")
    assert idle == {"sm_mhz": 1980, "reasons": ["gpu_idle"]}
    assert nvml.throttled(idle) is False
    fake_nvml.reasons, fake_nvml.sm = 0x4 | 0x40, 1410  # power cap + hardware thermal slowdown
    hot = nvml.clock_state("h")
    assert hot["sm_mhz"] == 1410 and set(hot["reasons"]) == {"sw_power_cap", "hw_thermal_slowdown"}
    assert nvml.throttled(idle, hot) is True
    assert nvml.throttled(None, None) is None
    assert nvml.clock_state(None) is None


def test_lock_clocks_needs_permission(fake_nvml):
    ok, note = nvml.lock_clocks("h")
    assert not ok and "not locked" in note and fake_nvml.locked is None
    fake_nvml.root = True
    ok, note = nvml.lock_clocks("h")
    assert ok and fake_nvml.locked == (1980, 1980) and "1980" in note
    assert nvml.unlock_clocks("h") and fake_nvml.locked is None


def test_without_nvml_everything_is_none(monkeypatch):
    monkeypatch.setitem(nvml._STATE, "init", False)
    assert nvml.clock_state("h") is None
    assert nvml.lock_clocks("h") == (False, "clocks not locked: no NVML device")


def test_clock_probe_flags_a_batch_throttled_at_either_end(fake_nvml):
    from wkvbench.harness.measure import ClockProbe

    probe = ClockProbe(torch.device("cpu"), h="h")
    fake_nvml.reasons, fake_nvml.sm = 0x20, 1200  # software thermal slowdown set during the batch
    assert probe.done() == {"throttled": True, "sm_mhz": [1980, 1200]}
    fake_nvml.reasons = 0
    assert ClockProbe(torch.device("cpu"), h="h").done()["throttled"] is False
    assert ClockProbe(torch.device("cpu")).done() == {"throttled": None, "sm_mhz": [None, None]}
