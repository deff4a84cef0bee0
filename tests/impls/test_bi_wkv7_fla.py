"""fla-core peer adapters: convention conversion checked against the float64 reference.

fla-core is not installed here (and its Triton kernels autotune, which needs a GPU), so the
conversion is tested against a stand-in for ``fla.ops.rwkv7`` written from fla-core 0.6.0's
documented semantics (its ``dplr_recurrence``: state ``h [K, V]``, log-decay ``gk``,
``h = h * exp(gk) + k v^T + b (a^T h)``, ``o = h^T (scale * q)``; ``reverse=True`` scans from
the last token; ``chunk_rwkv7`` returns its output in ``r``'s dtype, the fused recurrent DPLR
kernel in ``v``'s, as fla allocates them). A stand-in with a wrong
convention must be caught by ``verify`` as a failure. With fla-core and a GPU, the real kernels
are checked too.
"""

import importlib.util
import sys
import types

import pytest
import torch

import wkvbench
from wkvbench import verify
from wkvbench.accuracy import compare, run_checked
from wkvbench.impls import bi_wkv7_fla
from wkvbench.inputs import bi_wkv7_inputs
from wkvbench.registry import get_impl

HAVE_FLA = importlib.util.find_spec("fla") is not None


def dplr_recurrence(q, k, v, a, b, gk, scale):
    """fla's DPLR delta rule in its own convention, float64: returns o ``[B, T, H, V]``."""
    q, k, v, a, b, gk = (x.to(torch.float64) for x in (q, k, v, a, b, gk))
    B, T, H, K = q.shape
    h = torch.zeros(B, H, K, v.shape[-1], dtype=torch.float64)
    o = torch.empty(B, T, H, v.shape[-1], dtype=torch.float64)
    for t in range(T):
        ah = torch.einsum("bhk,bhkv->bhv", a[:, t], h)
        h = (
            h * gk[:, t].exp()[..., None]
            + k[:, t, ..., None] * v[:, t, :, None, :]
            + b[:, t, ..., None] * ah[:, :, None]
        )
        o[:, t] = torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, h)
    return o


class FakeRwkv7:
    """Stand-in for ``fla.ops.rwkv7`` that records how it was called."""

    def __init__(self, recurrent_default_scale=True):
        self.calls = []
        self.recurrent_default_scale = recurrent_default_scale

    def chunk_rwkv7(self, r, w, k, v, a, b, scale=1.0, initial_state=None, output_final_state=False, **kw):
        self.calls.append(("chunk", w.dtype, scale, kw))
        return dplr_recurrence(r, k, v, a, b, w, scale).to(r.dtype), None

    def fused_recurrent_dplr_delta_rule(
        self, q, k, v, a, b, gk, scale=None, initial_state=None, output_final_state=False, reverse=False, **kw
    ):
        self.calls.append(("recurrent", gk.dtype, scale, {"reverse": reverse, "v_dtype": v.dtype, **kw}))
        if scale is None:
            scale = q.shape[-1] ** -0.5
        if not reverse:
            return dplr_recurrence(q, k, v, a, b, gk, scale).to(v.dtype), None
        flip = [x.flip(1) for x in (q, k, v, a, b, gk)]
        return dplr_recurrence(*flip, scale).flip(1).to(v.dtype), None


@pytest.fixture
def fake_fla(monkeypatch):
    fake = FakeRwkv7()
    mod = types.ModuleType("fla.ops.rwkv7")
    mod.chunk_rwkv7 = fake.chunk_rwkv7
    gdr = types.ModuleType("fla.ops.generalized_delta_rule")
    gdr.fused_recurrent_dplr_delta_rule = fake.fused_recurrent_dplr_delta_rule
    for name in ("fla", "fla.ops"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "fla.ops.rwkv7", mod)
    monkeypatch.setitem(sys.modules, "fla.ops.generalized_delta_rule", gdr)
    return fake


def test_records():
    for name, tf32 in (("fla_chunk", True), ("fla_recurrent", False)):
        rec = get_impl("bi_wkv7", name)
        assert rec.peer and rec.backend == "fla" and rec.tf32 == tf32 and rec.devices == ("cuda",)
        assert rec.supports(torch.float32, 64)[0] and not rec.supports(torch.float32, 32)[0]


@pytest.mark.skipif(HAVE_FLA, reason="fla-core is installed")
def test_unavailable_reason_without_fla():
    ok, why = bi_wkv7_fla._check(torch.device("cuda"))
    assert not ok and "fla-core not installed" in why


@pytest.mark.parametrize("name", ["fla_chunk", "fla_recurrent"])
@pytest.mark.parametrize("variant", ["realistic", "strong_decay"])
def test_conversion_matches_reference(fake_fla, name, variant):
    x = bi_wkv7_inputs(2, 13, 2, 64, seed=3, variant=variant)
    fn = getattr(bi_wkv7_fla, name)
    y = run_checked(fn, x, tuple(x["r"].shape), torch.float32, accepts_out=True)
    acc = compare(y, wkvbench.reference.bi_wkv7(**x), torch.float32)
    assert acc.passed and acc.rel_err < 1e-6, acc
    kind = "chunk" if name == "fla_chunk" else "recurrent"
    assert [c[0] for c in fake_fla.calls] == [kind, kind]  # once per direction
    for _, w_dtype, scale, kw in fake_fla.calls:
        assert w_dtype == torch.float32 and scale == 1.0
        if kind == "chunk":
            assert kw["safe_gate"] is True and kw["lower_bound"] == -0.6065 and kw["chunk_size"] == 64
    if kind == "recurrent":  # the reverse direction is fla's own reverse scan, not flipped copies
        assert [c[3]["reverse"] for c in fake_fla.calls] == [False, True]


def test_recurrent_merges_in_float32_and_rounds_once(fake_fla):
    """bfloat16: both directions come back in float32 (v passed as float32), the merge rounds once."""
    x = bi_wkv7_inputs(2, 24, 2, 64, dtype=torch.bfloat16, seed=5)
    y = bi_wkv7_fla.fla_recurrent(**x)
    assert y.dtype == torch.bfloat16
    assert all(c[3]["v_dtype"] == torch.float32 for c in fake_fla.calls)
    # the same merge from float64 directions, rounded to bfloat16 once
    q, k, v, a, b = (x[n] for n in ("r", "k", "v", "a", "b"))
    gk = -torch.exp(x["w"].double())
    fwd = dplr_recurrence(q, k, v, a, b, gk, 1.0)
    rev = dplr_recurrence(*(t.flip(1) for t in (q, k, v, a, b, gk)), 1.0).flip(1)
    g = x["g"].double().unsqueeze(-1)
    once = (g * fwd + (1 - g) * rev).to(torch.bfloat16)
    twice = (g * fwd.to(torch.bfloat16).double() + (1 - g) * rev.to(torch.bfloat16).double()).to(torch.bfloat16)
    same_once = (y == once).float().mean().item()
    assert same_once > 0.99, same_once
    assert (twice == once).float().mean().item() < 0.95  # rounding twice is visible: the check can fail


def test_default_gate_and_half_precision(fake_fla):
    x = bi_wkv7_inputs(1, 9, 2, 64, dtype=torch.bfloat16, seed=4, gate=False)
    y = bi_wkv7_fla.fla_recurrent(**x)
    assert y.dtype == torch.bfloat16
    assert compare(y, wkvbench.reference.bi_wkv7(**x), torch.bfloat16).passed


def test_wrong_convention_is_caught_by_verify(fake_fla, monkeypatch):
    """Forgetting scale=1.0 (fla's recurrent default is K**-0.5) must be wrong, not hidden."""
    monkeypatch.setattr(
        bi_wkv7_fla,
        "_recurrent_direction",
        lambda r, w, k, v, a, b, reverse: fake_fla.fused_recurrent_dplr_delta_rule(r, k, v, a, b, w, reverse=reverse)[
            0
        ],
    )
    refs = verify._RefCache(torch.device("cpu"), seed=0)
    shape = verify.Shape({"B": 1, "T": 7, "H": 2, "N": 64})
    row = verify.check_one("bi_wkv7", get_impl("bi_wkv7", "fla_recurrent"), shape, torch.float32, refs)
    assert row.status == "wrong" and row.rel_err > 0.5


@pytest.mark.skipif(not (HAVE_FLA and torch.cuda.is_available()), reason="needs fla-core and CUDA")
@pytest.mark.parametrize("name", ["fla_chunk", "fla_recurrent"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_real_fla_on_gpu(name, dtype):
    x = bi_wkv7_inputs(2, 130, 2, 64, dtype=dtype, device="cuda", seed=1)
    rec = get_impl("bi_wkv7", name)
    acc = compare(rec.fn(**x), wkvbench.reference.bi_wkv7(**x), dtype, tf32=rec.tf32)
    assert acc.passed, acc
