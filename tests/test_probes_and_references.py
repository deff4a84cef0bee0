"""The sweep's parent plans without probing the GPU; the float64 attention reference works in place."""

import math

import pytest
import torch

from wkvbench.harness import plan as P
from wkvbench.harness.suite import parse_suite
from wkvbench.impls import _gpu, attention_torch
from wkvbench.reference import attention


def _suite():
    return parse_suite(
        {
            "name": "probe",
            "group": [{"op": "attention", "impls": ["*"], "models": ["AST-B"], "tokens": [64], "dtype": ["float16"]}],
        }
    )


def test_planning_never_runs_an_sdpa_probe(monkeypatch):
    """With a (pretended) CUDA device, planning must list the SDPA backends without a probe call."""
    ran = []

    def probe_call(*args, **kw):
        ran.append(args[0])
        raise AssertionError("a probe ran in the planning process")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(attention_torch, "_sdpa", probe_call)
    monkeypatch.setattr(attention_torch, "_PROBES", {})
    [(case, impls)] = P.plan(_suite(), "cuda")
    names = dict(impls)
    assert {"sdpa_flash", "sdpa_cudnn", "sdpa_efficient", "sdpa_math"} <= set(names)
    assert all(names[n] is None for n in ("sdpa_flash", "sdpa_cudnn"))
    assert ran == []
    assert not _gpu.device_probes_deferred()  # the block ends with the planning
    # outside planning (the worker, listing, verify) the probe does touch the device (none here)
    with pytest.raises(AssertionError):
        attention_torch._probe("FLASH_ATTENTION", torch.device("cuda", 0), torch.float16)


def test_deferred_block_nests_and_ends_on_error():
    with pytest.raises(RuntimeError):
        with _gpu.deferred_device_probes():
            with _gpu.deferred_device_probes():
                assert _gpu.device_probes_deferred()
            assert _gpu.device_probes_deferred()
            raise RuntimeError("boom")
    assert not _gpu.device_probes_deferred()


@pytest.mark.parametrize("block", [1, 3, 1024])
def test_attention_reference_in_place_matches_the_formula(block):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g, dtype=torch.float64) for _ in range(3))
    want = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1) @ v
    got = attention(q, k, v, block=block)
    assert torch.allclose(got, want, rtol=1e-13, atol=1e-13)
    assert q.abs().sum() > 0 and not torch.equal(got, v)  # inputs untouched, output not a copy
