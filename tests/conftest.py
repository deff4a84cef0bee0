"""Test setup: without a GPU, Triton and Numba kernels run on the CPU (interpreter, simulator).

The variables must be set before triton/numba are imported, so they are set here, at the top of
the first file pytest imports.
"""

import os
import sys

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
    sys.setswitchinterval(1e-4)  # the CUDA simulator runs a thread per CUDA thread: ~6x faster
