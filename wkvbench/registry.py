"""The implementation registry: one record per (op, implementation name).

Every implementation of every op -- the built-in ones under ``wkvbench/impls/`` and a user's
own kernel -- is a plain function registered with :func:`register_impl`::

    @wkvbench.register_impl("bi_wkv7", name="my_kernel", backend="triton", devices=("cuda",))
    def my_kernel(r, w, k, v, a, b, g=None, *, out=None): ...

The record says which devices, dtypes and head sizes the function handles, how to tell whether
its backend can run here (``available(device) -> (ok, reason)``), and how it ranks for
``impl="auto"``. The op names come from the op records (:data:`wkvbench.opspec.OPS`).

Built-in modules are found by convention, not listed: every module
``wkvbench/impls/<op>_<backend>.py`` (or package ``<op>_<backend>/``) whose prefix is a registered
op name. They are imported lazily, on the first query, so that ``TRITON_INTERPRET``/
``NUMBA_ENABLE_CUDASIM`` can still be set after ``import wkvbench`` and a missing backend costs
nothing until it is asked for.

An implementation may accept ``out=`` (a preallocated output tensor it must fill completely);
the verifier uses it to NaN-poison outputs. Functions without it are still accepted.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import pkgutil
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from wkvbench import opspec  # the op records: iterating opspec.OPS gives the op names, in listing order
from wkvbench.opspec import DEFAULT_MODE
from wkvbench.schema import TRAINING_MODES

ALL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

IMPLS_PACKAGE = "wkvbench.impls"


def op_of_module(name: str) -> str | None:
    """The op a module name ``<op>_<backend>`` belongs to (longest matching op name), or None."""
    matches = [op for op in opspec.OPS if name.startswith(op + "_") and len(name) > len(op) + 1]
    return max(matches, key=len) if matches else None


def builtin_modules() -> tuple[str, ...]:
    """Dotted names of the built-in implementation modules, found by file name (not imported).

    Every module ``wkvbench/impls/<op>_<backend>.py`` or package ``<op>_<backend>/`` whose prefix is an
    op name; ordered by op (the op records' order), then by module name. That order is the listing order.
    """
    pkg = importlib.util.find_spec(IMPLS_PACKAGE)
    paths = list(pkg.submodule_search_locations or ()) if pkg is not None else []
    names = sorted(m.name for m in pkgutil.iter_modules(paths))
    return tuple(f"{IMPLS_PACKAGE}.{n}" for op in opspec.OPS for n in names if op_of_module(n) == op)


#: The built-in implementation modules at import time (see :func:`builtin_modules`).
BUILTIN_MODULES = builtin_modules()

Check = Callable[[torch.device], "tuple[bool, str]"]


@dataclass(frozen=True)
class Need:
    """What a call asks of an implementation, for :meth:`Impl.can_run` (a sweep passes its ``Case``)."""

    device: str | torch.device
    dtype: torch.dtype | str
    head_size: int | None = None
    mode: str = DEFAULT_MODE


def no_backward(impl: str) -> str:
    """The reason an implementation without backward does not run a training mode."""
    return f"{impl} has no backward (registered with backward=False): not run in training modes"


@dataclass(frozen=True)
class Impl:
    """One registered implementation of one op."""

    op: str
    name: str
    backend: str
    fn: Callable = field(repr=False, compare=False)
    devices: tuple[str, ...] = ("cpu", "cuda")
    dtypes: tuple[torch.dtype, ...] = ALL_DTYPES
    head_sizes: tuple[int, ...] | None = None  # None: any head size
    priority: int = 0  # higher wins for impl="auto"
    tf32: bool = False  # float32 computed on TF32 tensor cores: held to the bfloat16 bar
    peer: bool = False  # a public third-party kernel (fla-core, mamba_ssm, flash-attn)
    backward: bool = False  # differentiable: outputs carry gradients (docs/spec.md section 1, "Backward")
    check: Check | None = field(default=None, repr=False, compare=False)
    description: str = ""
    module: str = ""
    label: str = ""  # legend text in reports; empty: "<op label> <name>" (wkvbench.report.style.impl_label)

    @property
    def accepts_out(self) -> bool:
        try:
            return "out" in inspect.signature(self.fn).parameters
        except (TypeError, ValueError):
            return False

    def available(self, device: str | torch.device = "cpu") -> tuple[bool, str]:
        """Whether this implementation can run on ``device`` here, and if not, why."""
        dev = torch.device(device)
        reasons = []
        if dev.type not in self.devices:
            reasons.append(f"runs on {'/'.join(self.devices)}, not {dev.type}")
        elif dev.type == "cuda" and not torch.cuda.is_available():
            reasons.append("no CUDA device")
        if self.check is not None:
            try:
                ok, reason = self.check(dev)
            except Exception as exc:  # a broken backend must explain itself, not crash listing
                ok, reason = False, f"{type(exc).__name__}: {exc}"
            # On a device it does not run on anyway, only a missing package is worth adding
            # (e.g. "runs on cuda, not cpu; fla-core not installed").
            if not ok and (not reasons or "not installed" in reason):
                reasons.append(reason)
        return (False, "; ".join(reasons)) if reasons else (True, "ok")

    def supports(self, dtype: torch.dtype, head_size: int | None = None) -> tuple[bool, str]:
        """Whether the implementation handles this dtype (and head size, where the op record has one)."""
        if dtype not in self.dtypes:
            return False, f"dtype {str(dtype).replace('torch.', '')} not supported"
        if head_size is not None and self.head_sizes is not None and head_size not in self.head_sizes:
            return False, f"head size {head_size} not supported (has {self.head_sizes})"
        return True, "ok"

    def can_run(self, case) -> tuple[bool, str]:
        """Whether this implementation can run ``case`` here, and if not, why: the one answer to "can
        it run?" (the sweep's plan and worker, the networks, ``impl="auto"``). ``case``: anything with
        ``device``, ``dtype`` (a torch dtype or its name), ``head_size`` and ``mode`` (a sweep's
        ``Case``, a :class:`Need`). Availability, then dtype and head size, then backward."""
        dtype = getattr(torch, case.dtype) if isinstance(case.dtype, str) else case.dtype
        ok, why = self.available(case.device)
        if ok:
            ok, why = self.supports(dtype, case.head_size)
        if ok and case.mode in TRAINING_MODES and not self.backward:
            return False, no_backward(self.name)
        return ok, why

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


_REGISTRY: dict[tuple[str, str], Impl] = {}
_LOCK = threading.RLock()
_BUILTINS_LOADED = False
_BUILTIN_ERRORS: dict[str, str] = {}


def register_impl(
    op: str,
    *,
    name: str,
    backend: str,
    devices: Iterable[str] = ("cpu", "cuda"),
    dtypes: Iterable[torch.dtype] = ALL_DTYPES,
    head_sizes: Iterable[int] | None = None,
    priority: int = 0,
    tf32: bool = False,
    peer: bool = False,
    backward: bool = False,
    check: Check | None = None,
    description: str = "",
    replace: bool = False,
    label: str = "",
) -> Callable[[Callable], Callable]:
    """Decorator: register ``fn`` as implementation ``name`` of ``op``. Returns ``fn`` unchanged."""
    if op not in opspec.OPS:
        raise ValueError(f"op: unknown op {op!r}; expected one of {', '.join(opspec.OPS)}")
    if not isinstance(name, str) or not name or not name.replace("_", "").isalnum():
        raise ValueError(f"name: implementation name must be a non-empty identifier, got {name!r}")
    devices = tuple(devices)
    bad = [d for d in devices if d not in ("cpu", "cuda")]
    if bad:
        raise ValueError(f"devices: unknown device type(s) {bad}; use 'cpu' and/or 'cuda'")
    if not isinstance(label, str):
        raise TypeError(f"label: expected a string, got {type(label).__name__}")
    dtypes = tuple(dtypes)
    for dt in dtypes:
        if not isinstance(dt, torch.dtype):
            raise TypeError(f"dtypes: expected torch dtypes, got {dt!r}")

    def deco(fn: Callable) -> Callable:
        if not callable(fn):
            raise TypeError(f"register_impl: {fn!r} is not callable")
        rec = Impl(
            op=op,
            name=name,
            backend=backend,
            fn=fn,
            devices=devices,
            dtypes=dtypes,
            head_sizes=None if head_sizes is None else tuple(head_sizes),
            priority=priority,
            tf32=tf32,
            peer=peer,
            backward=bool(backward),
            check=check,
            description=description or (inspect.getdoc(fn) or "").split("\n")[0],
            module=getattr(fn, "__module__", ""),
            label=label,
        )
        with _LOCK:
            old = _REGISTRY.get((op, name))
            if old is not None and not replace and old.module != rec.module:
                raise ValueError(
                    f"name: {op}/{name} is already registered by {old.module}; pass replace=True to override it"
                )
            _REGISTRY[(op, name)] = rec
        return fn

    return deco


def unregister_impl(op: str, name: str) -> None:
    """Remove a registration (tests and plugins that clean up after themselves)."""
    with _LOCK:
        _REGISTRY.pop((op, name), None)


def load_builtins() -> dict[str, str]:
    """Import the built-in implementation modules once; return {module: error} for failures."""
    global _BUILTINS_LOADED
    with _LOCK:
        if _BUILTINS_LOADED:
            return dict(_BUILTIN_ERRORS)
        _BUILTINS_LOADED = True
        for mod in builtin_modules():
            try:
                importlib.import_module(mod)
            except ModuleNotFoundError as exc:
                if exc.name == mod:  # module not written yet / removed: not an error
                    continue
                _BUILTIN_ERRORS[mod] = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # a broken backend must not take the registry down
                _BUILTIN_ERRORS[mod] = f"{type(exc).__name__}: {exc}"
        return dict(_BUILTIN_ERRORS)


def load_plugin(plugin: str) -> None:
    """Import a plugin: a path to a ``.py`` file or a dotted module name that registers impls."""
    if plugin.endswith(".py") or os.sep in plugin:
        path = os.path.abspath(plugin)
        if not os.path.isfile(path):
            raise ValueError(f"plugin: no such file {plugin!r}")
        modname = "wkvbench_plugin_" + os.path.splitext(os.path.basename(path))[0]
        loader = importlib.machinery.SourceFileLoader(modname, path)
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader(modname, loader))
        sys.modules[modname] = module
        loader.exec_module(module)
    else:
        try:
            importlib.import_module(plugin)
        except ModuleNotFoundError as exc:
            raise ValueError(f"plugin: cannot import module {plugin!r}: {exc}") from exc


def list_impls(op: str | None = None) -> list[Impl]:
    """All registered implementations (of ``op`` if given), in registration order."""
    if op is not None and op not in opspec.OPS:
        raise ValueError(f"op: unknown op {op!r}; expected one of {', '.join(opspec.OPS)}")
    load_builtins()
    with _LOCK:
        return [rec for (o, _), rec in _REGISTRY.items() if op is None or o == op]


def get_impl(op: str, name: str) -> Impl:
    """The record for ``op``/``name``; a ValueError naming the implementation if unknown."""
    load_builtins()
    with _LOCK:
        rec = _REGISTRY.get((op, name))
    if rec is None:
        known = ", ".join(r.name for r in list_impls(op)) or "none"
        raise ValueError(f"impl: unknown implementation {name!r} for op {op!r} (known: {known})")
    return rec


def select_impl(
    op: str, device: torch.device, dtype: torch.dtype, head_size: int | None = None, backward: bool = False
) -> Impl:
    """``impl="auto"``: the highest-priority implementation that can run these inputs here
    (and, with ``backward=True``, that has a backward)."""
    reasons = []
    best = None
    need = Need(device, dtype, head_size, "fwd_bwd" if backward else DEFAULT_MODE)
    for rec in list_impls(op):
        ok, why = rec.can_run(need)
        if not ok:
            reasons.append(f"{rec.name}: {why}")
            continue
        if best is None or rec.priority > best.priority:
            best = rec
    if best is None:
        raise ValueError(f"impl: no available implementation of {op} for these inputs ({'; '.join(reasons)})")
    return best


def builtin_errors() -> dict[str, str]:
    """Import errors of built-in modules (shown by ``wkvbench list``)."""
    load_builtins()
    return dict(_BUILTIN_ERRORS)
