"""A disk cache of verify's inputs and float64 references, shared by the per-implementation children.

``wkvbench verify`` runs each implementation in a child process of its own
(:mod:`wkvbench.verify_child`), and each child used to rebuild every float64 reference: at
16,400 tokens that is seconds per shape, paid once per implementation. With the environment
variable :data:`ENV` naming a directory, the first child that needs a case computes it and
stores it there (``torch.save`` of CPU tensors, written to a temporary name and renamed, so a
child killed mid-write leaves no half file); the others load it. A case is keyed by op, shape,
variant, dtype, seed, device type and kind (``fwd``: inputs and reference output; ``grad``:
inputs, ``dy`` and reference gradients). Without the variable nothing is stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

#: The environment variable naming the cache directory (unset: no disk cache).
ENV = "WKVBENCH_REF_CACHE"


def cache_dir() -> Path | None:
    """The cache directory from :data:`ENV`, or None when it is unset or empty."""
    d = os.environ.get(ENV, "").strip()
    return Path(d) if d else None


def key(kind: str, op: str, dims: dict, variant: str, dtype: torch.dtype, seed: int, device: str) -> str:
    """The file stem of one cached case: readable prefix and a hash of every field."""
    if not isinstance(dims, dict):
        raise TypeError(f"dims: expected a dict, got {type(dims).__name__}")
    fields = {
        "kind": kind,
        "op": op,
        "dims": {k: int(v) for k, v in sorted(dims.items())},
        "variant": variant,
        "dtype": str(dtype).replace("torch.", ""),
        "seed": int(seed),
        "device": torch.device(device).type,
    }
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    shape = "x".join(f"{k}{v}" for k, v in fields["dims"].items())
    return f"{kind}-{op}-{shape}-{variant}-{fields['dtype']}-s{seed}-{digest}"


def _to(obj, device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to(v, device) for v in obj)
    return obj


def cached(stem: str, device, compute: Callable[[], tuple]) -> tuple:
    """``compute()`` (a tuple of tensors, dicts of tensors and scalars), through the disk cache.

    Loaded entries are moved to ``device``. An unreadable file is recomputed and rewritten.
    """
    root = cache_dir()
    if root is None:
        return compute()
    path = root / f"{stem}.pt"
    if path.is_file():
        try:
            return _to(torch.load(path, map_location="cpu", weights_only=True), torch.device(device))
        except Exception:  # a damaged entry: compute it again below
            path.unlink(missing_ok=True)
    value = compute()
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=f".{stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(_to(value, "cpu"), fh)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return value
