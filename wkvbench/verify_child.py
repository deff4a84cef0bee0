"""The child process of ``wkvbench verify``: one implementation's checks, crash-isolated.

A kernel that hits an illegal address, aborts or hangs takes its process down (or poisons its
CUDA context). So ``wkvbench verify`` runs each implementation's checks -- forward, and the
gradients with ``--grad`` -- in a child (``python -m wkvbench.verify_child SPEC``) that prints
one JSON row per finished check on a private copy of its stdout (file descriptor 1 goes to
stderr, so prints from kernels cannot corrupt the rows). The parent forwards each row as it
arrives; when the child dies it adds one ``failed`` row naming the signal and the tail of the
child's stderr, and when the implementation's time limit passes it kills the child and adds a
``timeout`` row. The rows already received stay. The child is a :class:`wkvbench.harness.client.Child`
(as the sweep's worker is): it imports ``wkvbench`` from where the parent did and loads the same
plugins, and leaving the parent's wait by any path -- Ctrl-C included -- kills its process group.
"""

from __future__ import annotations

import json
import os
import sys

import torch

from wkvbench.harness.client import check_same_package


def main(argv: list[str]) -> int:
    """The child: run one implementation's checks, one JSON row per line on the private stdout."""
    check_same_package()
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import dataclasses
    import faulthandler

    from wkvbench import registry, verify

    faulthandler.enable()
    spec = json.loads(argv[0])
    for p in spec["plugins"]:
        registry.load_plugin(p)
    rec = registry.get_impl(spec["op"], spec["impl"])
    device = torch.device(spec["device"])
    dtypes = [verify.DTYPES[d] for d in spec["dtypes"]]
    refs = verify._RefCache(device, spec["seed"])
    for c in verify.checks_of(spec["op"], rec, dtypes, device, spec["long"], refs, spec["grad"]):
        proto.write(json.dumps(dataclasses.asdict(c), default=str) + "\n")
        proto.flush()
    proto.close()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown: a poisoned CUDA context can hang it


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
