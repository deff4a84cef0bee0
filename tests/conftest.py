"""Test setup: without a GPU, Triton and Numba kernels run on the CPU (interpreter, simulator).

The variables must be set before triton/numba are imported, so they are set here, at the top of
the first file pytest imports.
"""

import os
import sys
from collections import Counter

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
    sys.setswitchinterval(1e-4)  # the CUDA simulator runs a thread per CUDA thread: ~6x faster


def pytest_collection_modifyitems(config, items):
    """Files holding ``slow`` tests first, those with the most first (stable otherwise): with
    ``-n 2 --dist loadfile`` a minutes-long file then runs beside the rest from the start instead
    of after it (the GPU check's rehearsal, three slow tests on one fixture, leads)."""
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])


#: Test folders of whole networks: many small ops, faster with one intra-op thread on a shared CPU.
_ONE_THREAD_DIRS = {"models", "network"}


@pytest.fixture(autouse=True)
def _one_thread_for_networks(request):
    if request.path.parent.name not in _ONE_THREAD_DIRS:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
