"""Fixtures for the harness tests: a plugin file of misbehaving implementations.

The plugin registers bi_wkv7 implementations that are correct (``t_good``), wrong
(``t_wrong``), abort the process (``t_abort``), run out of memory (``t_oom``), hang past any
budget (``t_slow``) or are switched off (``t_off``). Loading it registers them in this process
too, so the fixture removes every registration it added afterwards.
"""

import os
import textwrap

import pytest
import torch

from wkvbench import registry

PLUGIN = textwrap.dedent(
    '''
    """Test plugin: implementations that misbehave in every way a sweep must survive."""
    import os
    import time

    import torch

    from wkvbench import register_impl
    from wkvbench.impls.bi_wkv7_torch import torch_chunked

    CPU = {"backend": "test", "devices": ("cpu",)}


    @register_impl("bi_wkv7", name="t_good", **CPU)
    def t_good(r, w, k, v, a, b, g=None):
        return torch_chunked(r, w, k, v, a, b, g)


    @register_impl("bi_wkv7", name="t_wrong", **CPU)
    def t_wrong(r, w, k, v, a, b, g=None):
        return torch.zeros_like(r)


    @register_impl("bi_wkv7", name="t_abort", **CPU)
    def t_abort(r, w, k, v, a, b, g=None):
        os.abort()


    @register_impl("bi_wkv7", name="t_oom", **CPU)
    def t_oom(r, w, k, v, a, b, g=None):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 TiB (simulated)")


    @register_impl("bi_wkv7", name="t_slow", **CPU)
    def t_slow(r, w, k, v, a, b, g=None):
        time.sleep(120)
        return torch_chunked(r, w, k, v, a, b, g)


    @register_impl("bi_wkv7", name="t_off", check=lambda device: (False, "test backend switched off"), **CPU)
    def t_off(r, w, k, v, a, b, g=None):
        raise AssertionError("never called")
    '''
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny CPU ops on a shared 2-core machine: one torch thread each (here and in the workers
    these tests start) avoids OpenMP oversubscription, which made them 2x slower. Restored after."""
    threads, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(threads)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = env


@pytest.fixture(scope="session")
def plugin_source():
    return PLUGIN


@pytest.fixture
def clean_registry():
    """Remove whatever a test registers (plugins loaded in-process included)."""
    before = {(r.op, r.name) for r in registry.list_impls()}
    yield
    for op, name in {(r.op, r.name) for r in registry.list_impls()} - before:
        registry.unregister_impl(op, name)


@pytest.fixture
def plugin_file(tmp_path, clean_registry):
    path = tmp_path / "misbehaving_impls.py"
    path.write_text(PLUGIN, encoding="utf-8")
    return path
