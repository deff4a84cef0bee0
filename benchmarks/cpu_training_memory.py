"""Training memory of a Bi-WKV7 implementation on CPU, where torch keeps no allocator statistics.

Two figures per implementation, each measured in a fresh process (``python
benchmarks/cpu_training_memory.py IMPL [T H N]``):

* ``saved_bytes``: the bytes autograd keeps for the backward beyond the inputs
  (:func:`wkvbench.gradcheck.saved_bytes`: every tensor packed by
  ``torch.autograd.graph.saved_tensors_hooks`` during one forward, counted once per storage);
* ``peak_rss_delta``: the process's peak resident set (``ru_maxrss``) over one forward +
  backward, minus the resident set just before it (inputs already built and one warm-up call
  of the forward under ``no_grad`` made, so library code is already paged in).

Prints one JSON line. Used for docs/notes/training.md.
"""

from __future__ import annotations

import json
import resource
import sys


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def measure(impl: str, T: int = 1024, H: int = 6, N: int = 64) -> dict:
    import torch

    from wkvbench import gradcheck, ops, registry

    torch.manual_seed(0)
    fn = registry.get_impl("bi_wkv7", impl).fn
    inputs = ops.make_case_inputs("bi_wkv7", {"B": 1, "T": T, "H": H, "N": N}, torch.float32, "cpu")
    names = gradcheck.grad_names("bi_wkv7", inputs)
    dy = gradcheck.make_dy(tuple(inputs["r"].shape), torch.float32, "cpu")
    with torch.no_grad():
        fn(**inputs)
    saved = gradcheck.saved_bytes(fn, inputs, names)  # beyond the inputs (the harness's saved_bytes column)
    x = gradcheck.leaves(inputs, names)
    base = _rss_bytes()
    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    y = fn(**x)
    torch.autograd.grad(y, [x[n] for n in names], dy)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "impl": impl,
        "T": T,
        "H": H,
        "N": N,
        "saved_bytes": saved,
        "peak_rss_delta": max(peak, peak0) - base if peak > peak0 else None,
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(measure(args[0], *(int(a) for a in args[1:4]))))
