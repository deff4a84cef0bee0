"""Built-in implementations, one module or package per (op, backend).

Each registers its functions with :func:`wkvbench.register_impl` at import time and guards its
backend import, so that a missing package shows up as an unavailable record with its reason
rather than an import error. The registry finds them by name -- every module ``<op>_<backend>.py``
or package ``<op>_<backend>/`` here whose prefix is an op name -- and imports them lazily; adding
a backend is one module here (docs/adding-an-op.md). A kernel backend with a training path is a
package that pairs its files as fla-core does: ``common`` <- ``fwd``/``bwd`` <- ``train`` <-
``__init__`` (the registration and the public functions), its ``.cu`` sources beside them and the
shared CUDA headers in ``include/``. What they share and register nothing: ``_gpu.py``
(availability probes, launch glue, the SM count), ``_compile.py`` (compile tooling of ``wkvbench
kernels``), ``_cupy.py`` (CuPy glue) and ``_register.py``.
"""
