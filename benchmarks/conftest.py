"""pytest-benchmark view of wkvbench suites: ``pytest benchmarks/``.

Each runnable (case, implementation) cell of a suite becomes one benchmark, so users who compare
runs with ``pytest-benchmark compare`` can. pytest-benchmark's own numbers are host wall time
per call (synchronised on a GPU); the wkvbench protocol's numbers (CUDA events with L2 flush on
a GPU, ``perf_counter`` on a CPU: median, p20, p80, min, IQR, CV, first call, accuracy) are
stored in each benchmark's ``extra_info``.

Cells run in-process (no crash isolation: use ``wkvbench run`` for sweeps that may crash).
Environment variables choose the selection:

* ``WKVBENCH_BENCH_SUITE``   suite file (default ``suites/smoke.toml`` under pytest's root directory)
* ``WKVBENCH_BENCH_DEVICE``  cpu | cuda | auto (default: the suite's ``run.device``)
* ``WKVBENCH_BENCH_OPS`` / ``WKVBENCH_BENCH_IMPLS``  comma lists that filter the cells
* ``WKVBENCH_BENCH_MAX_TOKENS``  leave out longer cases
* ``WKVBENCH_BENCH_PLUGINS``  comma list of plugin modules or .py files
"""

from __future__ import annotations

import os
from pathlib import Path

from wkvbench import registry
from wkvbench.harness import plan as P
from wkvbench.harness import suite as S


def _csv(name: str) -> list[str]:
    return [x.strip() for x in os.environ.get(name, "").split(",") if x.strip()]


def bench_cells(root: Path) -> tuple[S.Suite, list[tuple[S.Case, str]]]:
    """The suite and its runnable cells after the environment's filters (``root``: pytest's rootdir)."""
    suite = S.load_suite(os.environ.get("WKVBENCH_BENCH_SUITE") or root / "suites" / "smoke.toml")
    for p in [*suite.plugins, *(S.plugin_path(p) for p in _csv("WKVBENCH_BENCH_PLUGINS"))]:
        registry.load_plugin(p)
    device = P.resolve_device(os.environ.get("WKVBENCH_BENCH_DEVICE") or suite.run.device)
    ops, impls = set(_csv("WKVBENCH_BENCH_OPS")), set(_csv("WKVBENCH_BENCH_IMPLS"))
    max_t = int(os.environ.get("WKVBENCH_BENCH_MAX_TOKENS", "0") or 0)
    cells = []
    for case, names in P.plan(suite, device):
        if (ops and case.op not in ops) or (max_t and case.tokens > max_t):
            continue
        cells += [(case, name) for name, why in names if why is None and (not impls or name in impls)]
    return suite, cells


def pytest_generate_tests(metafunc):
    if "bench_cell" not in metafunc.fixturenames:
        return
    suite, cells = bench_cells(metafunc.config.rootpath)
    ids = [f"{c.op}-{impl}-{c.model}-B{c.batch}-T{c.tokens}-{c.dtype}-{c.device}-{c.mode}" for c, impl in cells]
    metafunc.parametrize("bench_cell", [(suite, c, impl) for c, impl in cells], ids=ids)
