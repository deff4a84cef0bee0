"""Whether a call built or loaded GPU kernels: a count of the entries in the backends' own caches.

``first_call_ms`` is the first call of an implementation *in its worker process*: one worker
serves every case of a sweep and Triton/CuPy keep disk caches across runs, so a first call may
compile, load a compiled kernel from disk, or find everything in memory already. The worker
counts the in-process kernel cache entries before and after that call
(:func:`kernel_cache_entries`); the results' ``compiled`` column is 1 when the count grew (the
call compiled a kernel or loaded one from a disk cache), 0 when it did not, and empty where the
implementation's modules hold no cache this module knows (plain PyTorch).

What is counted, in the implementation's own module and, for a peer, in the peer packages
(:data:`PEER_PACKAGES`; :func:`prefixes_for`):

* Triton: every ``@triton.jit`` function's per-device kernel cache (``JITFunction.device_caches``),
  also behind ``triton.autotune``/``triton.heuristics`` wrappers (followed through ``.fn``);
* Numba: a CUDA dispatcher's ``overloads``;
* ``functools`` caches (``cache_info().currsize``), which the Numba and CuPy wrappers build their
  kernels in, and module-level dicts named ``_KERNELS`` (the CuPy modules' per-config functions,
  filled when NVRTC compiles or CuPy's disk cache loads).
"""

from __future__ import annotations

import sys
from types import ModuleType

#: Third-party packages whose kernels an implementation may launch.
PEER_PACKAGES = ("fla", "mamba_ssm", "flash_attn")
_OWN = "wkvbench.impls"


def _unwrap(obj, depth: int = 4):
    """The ``@triton.jit`` function behind autotune/heuristics wrappers (or ``obj`` itself)."""
    for _ in range(depth):
        if hasattr(obj, "device_caches"):
            return obj
        obj = getattr(obj, "fn", None)
        if obj is None:
            return None
    return obj if hasattr(obj, "device_caches") else None


def _entries(obj) -> int | None:
    """Cache entries held by one module-level object, or None if it is no cache."""
    jit = _unwrap(obj) if not isinstance(obj, type) else None
    if jit is not None:
        try:
            return sum(len(v[0]) for v in jit.device_caches.values())
        except (TypeError, IndexError, AttributeError):
            return None
    overloads = getattr(obj, "overloads", None)
    if isinstance(overloads, dict) and hasattr(obj, "py_func"):
        return len(overloads)
    info = getattr(obj, "cache_info", None)
    if callable(info):
        try:
            return int(info().currsize)
        except Exception:
            return None
    return None


def _module_entries(mod: ModuleType) -> int | None:
    total, found = 0, False
    for name, obj in list(vars(mod).items()):
        try:
            n = len(obj) if name == "_KERNELS" and isinstance(obj, dict) else _entries(obj)
        except Exception:  # an odd module global (lazy proxy, op handle) is no cache
            n = None
        if n is not None:
            total, found = total + n, True
    return total if found else None


def prefixes_for(module: str, peer: bool) -> tuple[str, ...]:
    """The modules whose caches an implementation fills: its own module, plus the peer packages for a peer."""
    return (module or _OWN, *(PEER_PACKAGES if peer else ()))


def kernel_cache_entries(prefixes=(_OWN, *PEER_PACKAGES)) -> int | None:
    """Entries in the kernel caches of the loaded modules under ``prefixes`` (None: no cache found there)."""
    if isinstance(prefixes, str):
        raise TypeError("prefixes: expected a sequence of module names, got one string")
    total, found = 0, False
    for name, mod in list(sys.modules.items()):
        if mod is None or not any(name == p or name.startswith(p + ".") for p in prefixes):
            continue
        n = _module_entries(mod)
        if n is not None:
            total, found = total + n, True
    return total if found else None


def compiled(before: int | None, after: int | None) -> int | None:
    """1 if the cache count grew across a call, 0 if not, None when the backend has no known cache."""
    if before is None and after is None:
        return None
    return int((after or 0) > (before or 0))
