"""Built-in implementations, one module per (op, backend).

Each module registers its functions with :func:`wkvbench.register_impl` at import time and
guards its backend import, so that a missing package shows up as an unavailable record with
its reason rather than an import error. The registry finds them by name -- every module
``<op>_<backend>.py`` here whose prefix is an op name -- and imports them lazily; adding a
backend is one module here (docs/adding-an-op.md). A kernel module holds its kernel, launch and
registration; the GPU tooling they share (availability probes, ``out=`` checks, SM counts,
compile-report plumbing for ``wkvbench kernels``) is ``_gpu.py``, which registers nothing.
"""
