"""Races of the CUDA C kernels, seen on the host emulation (``wkvbench/hostemu/``), where every block
of a launch runs at once (see ``hostemu/cuda_shim.h``).

* the shim's own model (``cuda_host/shim_selftest.cpp``): blocks alive together, ``__shared__`` per
  block, a shuffle holding only its warp and honouring its mask; launch shapes it cannot emulate
  (more than 1024 threads per block, an empty grid, more threads than its cap) abort with a message;
  without g++ the CUDA C checks fail, unless ``WKVBENCH_ALLOW_NO_CXX=1`` allows a skip;
* ThreadSanitizer (``cuda_host/tsan_main.cpp`` built with ``-fsanitize=thread``, cached between
  runs): the inference forward, the training forward and backward (``bi_wkv7_cupy.cu``,
  ``bi_wkv7_cupy_bwd.cu``) and the catflip kernels at tiny sizes must draw no report;
* race mutants, made from the real sources by text substitution: each ``__syncthreads()`` of the
  forward and of the backward dropped one at a time, and every ``atomicAdd`` of the backward made a
  plain read-add-write; each must draw a ThreadSanitizer report. A barrier whose comment calls it
  redundant must instead stay race-free without it (the comment gives the proof).
"""

from __future__ import annotations

import re
import subprocess

import pytest

FORWARD, BACKWARD = "bi_wkv7_cupy.cu", "bi_wkv7_cupy_bwd.cu"
BARRIER = "__syncthreads();"
BARRIERS = {FORWARD: 3, BACKWARD: 3}  # barriers per kernel source; a new one needs its mutant here
ATOMIC_MUTANT = 100
RUN = {FORWARD: ("fwd", "2", "1", "7"), BACKWARD: ("train", "2", "1", "9")}  # T = 1: no phase 2; 7, 9: 2 chunks
CLEAN_RUNS = {
    "forward": ("fwd", "2", "1", "7", "20"),
    "forward-split8": ("fwd", "8", "3"),
    "training": ("train", "2", "1", "9", "17"),
    "catflip": ("catflip", "8", "16"),
}


# ----------------------------------------------------------------------------- the shim's model
@pytest.fixture(scope="module")
def selftest(host_builder):
    return host_builder.build("shim_selftest.cpp", executable=True)


@pytest.mark.parametrize("mode", ["blocks", "shared", "warps", "mask"])
def test_shim_runs_blocks_and_warps_concurrently(selftest, mode):
    """Each mode would deadlock (timeout) or fail under a shim running blocks or warps one after another."""
    proc = subprocess.run([str(selftest), mode], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.parametrize(
    "mode,message",
    [
        ("bad-block", "1025 threads per block"),
        ("bad-grid", "0 blocks"),
        ("over-cap", "9216 threads would be alive at once"),
        ("bad-mask", r"lane \d+ reads lane (1[6-9]|2\d|3[01]), which mask 0xffff does not name"),
    ],
)
def test_shim_refuses_what_it_cannot_emulate(selftest, mode, message):
    proc = subprocess.run([str(selftest), mode], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "ok" not in proc.stdout
    # the message is a pattern: which lane of the warp trips the check first depends on scheduling
    assert re.search(message, proc.stderr), proc.stderr


def test_missing_compiler_fails_unless_the_skip_is_allowed(host_builder, monkeypatch):
    monkeypatch.setattr(host_builder, "_gxx", lambda: None)
    monkeypatch.delenv(host_builder.ALLOW_NO_CXX, raising=False)
    with pytest.raises(pytest.fail.Exception, match=r"g\+\+ not found.*WKVBENCH_ALLOW_NO_CXX=1"):
        host_builder.build("bi_wkv7_host.cpp")
    monkeypatch.setenv(host_builder.ALLOW_NO_CXX, "1")
    with pytest.raises(pytest.skip.Exception, match="allows the skip"):
        host_builder.build("bi_wkv7_host.cpp")


# ----------------------------------------------------------------------------- ThreadSanitizer
@pytest.fixture(scope="module")
def tsan_exe(host_builder):
    return host_builder.build("tsan_main.cpp", sanitize=True)


@pytest.mark.parametrize("name", list(CLEAN_RUNS))
def test_kernels_are_race_free_under_thread_sanitizer(host_builder, tsan_exe, name):
    rc, out = host_builder.run_sanitized(tsan_exe, *CLEAN_RUNS[name])
    assert host_builder.TSAN_REPORT not in out and rc == 0, f"ThreadSanitizer (rc {rc}):\n{out[-8000:]}"
    assert "nan" not in out.lower(), f"an output of the sanitized run is NaN:\n{out}"


# ----------------------------------------------------------------------------- race mutants
def _redundant(text: str, pos: int) -> bool:
    """Whether the comment on the barrier's line, or the comment lines right above it, calls it redundant."""
    start = text.rfind("\n", 0, pos) + 1
    lines = [text[start : text.find("\n", pos)]]
    for line in reversed(text[:start].splitlines()):
        if not line.strip().startswith("//"):
            break
        lines.append(line)
    return any("redundant" in line.lower() for line in lines)


def mutant_sources(host_builder) -> tuple[dict[str, str], dict[int, tuple[str, int, bool]]]:
    """The forward and backward sources with a switch on every barrier and atomicAdd (``tsan_main.cpp``
    enacts the mutant numbered by ``WKV_MUTANT``): (sources, {id: (file, barrier index, redundant)})."""
    texts, ids = {}, {}
    for f_index, name in enumerate((FORWARD, BACKWARD)):
        text = host_builder.SOURCES[name].read_text()
        positions = [m.start() for m in re.finditer(re.escape(BARRIER), text)]
        assert len(positions) == BARRIERS[name], f"{name}: {len(positions)} barriers, the mutants expect {BARRIERS}"
        for k in reversed(range(len(positions))):
            mid = 10 * (f_index + 1) + k
            ids[mid] = (name, k, _redundant(text, positions[k]))
            pos = positions[k]
            text = f"{text[:pos]}if (wkv_mutant != {mid}) {BARRIER}{text[pos + len(BARRIER) :]}"
        if name == BACKWARD:
            assert text.count("atomicAdd(") == 7, "the backward's atomics changed: update the mutant"
            text = text.replace("atomicAdd(", f"wkv_mutant_atomic_add({ATOMIC_MUTANT}, ")
        texts[name] = text
    return texts, ids


@pytest.fixture(scope="module")
def mutants(host_builder):
    texts, ids = mutant_sources(host_builder)
    exe = host_builder.build("tsan_main.cpp", sanitize=True, overrides=texts, defines=("WKV_TSAN_MUTANTS",))
    return exe, ids


def run_mutant(host_builder, mutants, mid: int, args) -> tuple[int, str]:
    exe, ids = mutants
    expect_clean = mid in ids and ids[mid][2]
    return host_builder.run_sanitized(exe, *args, halt=not expect_clean, env={"WKV_MUTANT": str(mid)})


def test_mutant_build_without_mutation_is_race_free(host_builder, mutants):
    for args in RUN.values():
        rc, out = run_mutant(host_builder, mutants, 0, args)
        assert host_builder.TSAN_REPORT not in out and rc == 0, out[-8000:]


@pytest.mark.parametrize("name,k", [(n, k) for n, c in BARRIERS.items() for k in range(c)])
def test_dropping_a_barrier_is_a_race(host_builder, mutants, name, k):
    mid = 10 * (1 + list(BARRIERS).index(name)) + k
    assert mutants[1][mid][:2] == (name, k)
    rc, out = run_mutant(host_builder, mutants, mid, RUN[name])
    if mutants[1][mid][2]:  # documented as redundant next to it: the kernel must stay race-free without it
        assert host_builder.TSAN_REPORT not in out and rc == 0, f"barrier {k} of {name} is not redundant:\n{out}"
    else:
        assert host_builder.TSAN_REPORT in out, f"dropping barrier {k} of {name} went unnoticed:\n{out[-3000:]}"


def test_plain_adds_in_the_backward_are_a_race(host_builder, mutants):
    """The two directions' blocks add into the same gradient elements: without atomics, lost updates."""
    rc, out = run_mutant(host_builder, mutants, ATOMIC_MUTANT, RUN[BACKWARD])
    assert host_builder.TSAN_REPORT in out and "data race" in out, out[-3000:]
