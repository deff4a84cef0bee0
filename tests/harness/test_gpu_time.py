"""Timer.gpu_ms (k back-to-back calls per pair of marks) on a fake clock, and the kernel-cache counter."""

import functools
import sys
import types

import pytest

from wkvbench.harness import compiles, timing


class FakeClock:
    """A host clock that only the calls advance: each call costs ``per_call`` seconds."""

    def __init__(self, per_call: float, first_extra: float = 0.0):
        self.t = 100.0
        self.per_call = per_call
        self.extra = first_extra
        self.calls = 0

    def __call__(self) -> float:
        return self.t

    def fn(self) -> None:
        self.calls += 1
        self.t += self.per_call + (self.extra if self.calls == 1 else 0.0)


def test_gpu_ms_divides_the_span_by_k(monkeypatch):
    clock = FakeClock(per_call=0.002)
    monkeypatch.setattr(timing.time, "perf_counter", clock)
    t = timing.Timer("cpu")
    # est 2 ms, target 20 ms -> k = 10 calls per span, 5 spans
    ms = t.gpu_ms(clock.fn, est_ms=2.0, target_ms=20.0, repeats=5)
    assert clock.calls == 50
    assert ms == pytest.approx(2.0)


def test_gpu_ms_median_ignores_one_slow_span(monkeypatch):
    # the very first call is 1 s slower; with k=4 and 3 repeats the median span is a clean one
    clock = FakeClock(per_call=0.001, first_extra=1.0)
    monkeypatch.setattr(timing.time, "perf_counter", clock)
    ms = timing.Timer("cpu").gpu_ms(clock.fn, est_ms=1.0, target_ms=4.0, repeats=3)
    assert clock.calls == 12
    assert ms == pytest.approx(1.0)


@pytest.mark.parametrize(("est", "k"), [(100.0, 1), (0.001, 1000), (float("nan"), 1), (0.0, 1)])
def test_gpu_ms_k_is_clamped(monkeypatch, est, k):
    clock = FakeClock(per_call=0.0005)
    monkeypatch.setattr(timing.time, "perf_counter", clock)
    timing.Timer("cpu").gpu_ms(clock.fn, est_ms=est, target_ms=20.0, repeats=2)
    assert clock.calls == 2 * k


def test_gpu_ms_rejects_no_repeats():
    with pytest.raises(ValueError, match="repeats"):
        timing.Timer("cpu").gpu_ms(lambda: None, est_ms=1.0, repeats=0)


def test_flush_is_a_read_on_cpu_a_no_op():
    t = timing.Timer("cpu")
    assert t.flush_bytes == 0
    t.flush_l2()  # no buffer on a CPU: nothing to read


# ----------------------------------------------------------------------------- compiles
def _fake_module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    vars(mod).update(attrs)
    return mod


class FakeJit:
    """Shaped like triton's JITFunction: device -> (kernel cache, ...)."""

    def __init__(self):
        self.device_caches = {0: ({}, {}, None, None, None)}


class FakeAutotuner:
    def __init__(self, fn):
        self.fn = fn


def test_kernel_cache_entries_counts_jit_autotuned_functools_and_kernels(monkeypatch):
    jit, inner = FakeJit(), FakeJit()

    @functools.cache
    def build(x):
        return x

    kernels = {}
    mod = _fake_module("wkvbench.impls.fake_cache_mod", k=jit, tuned=FakeAutotuner(FakeAutotuner(inner)), build=build)
    mod._KERNELS = kernels
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    prefixes = compiles.prefixes_for(mod.__name__, peer=False)
    before = compiles.kernel_cache_entries(prefixes)
    assert before == 0
    assert compiles.compiled(before, compiles.kernel_cache_entries(prefixes)) == 0
    jit.device_caches[0][0]["key"] = object()
    inner.device_caches[0][0]["key"] = object()
    build(1)
    kernels["bf16"] = object()
    after = compiles.kernel_cache_entries(prefixes)
    assert after == 4
    assert compiles.compiled(before, after) == 1


def test_module_without_caches_is_unknown(monkeypatch):
    mod = _fake_module("wkvbench.impls.fake_plain_mod", x=1, f=lambda: None)
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    n = compiles.kernel_cache_entries((mod.__name__,))
    assert n is None
    assert compiles.compiled(n, n) is None


def test_peers_count_their_packages():
    assert compiles.prefixes_for("wkvbench.impls.bi_wkv7_fla", peer=True)[1:] == compiles.PEER_PACKAGES
    assert compiles.prefixes_for("wkvbench.impls.bi_wkv7_torch", peer=False) == ("wkvbench.impls.bi_wkv7_torch",)
    with pytest.raises(TypeError, match="prefixes"):
        compiles.kernel_cache_entries("wkvbench")


class Touchy:
    """A module global whose attribute access raises something other than AttributeError."""

    def __getattr__(self, name):
        raise RuntimeError(f"no {name} here")


def test_odd_globals_are_not_caches(monkeypatch):
    mod = _fake_module("wkvbench.impls.fake_touchy_mod", proxy=Touchy(), k=FakeJit())
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    assert compiles.kernel_cache_entries((mod.__name__,)) == 0
