"""The float64 reference against independent facts: hand expansions and identities of the math."""

import pytest
import torch

from wkvbench import reference
from wkvbench.impls.bi_wkv7_torch import wkv7_chunked
from wkvbench.inputs import bi_wkv7_inputs

F64 = torch.float64


def _inputs(B=2, T=9, H=2, N=8, seed=0, variant="realistic"):
    x = bi_wkv7_inputs(B, T, H, N, dtype=F64, seed=seed, variant=variant)
    return x, [x[n] for n in "rwkvab"]


def test_t1_is_v_times_k_dot_r():
    x, args = _inputs(T=1)
    y, S = reference.wkv7(*args)
    r, w, k, v, a, b = (t[:, 0] for t in args)
    expect = v * (k * r).sum(-1, keepdim=True)
    torch.testing.assert_close(y[:, 0], expect, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(S, v[..., :, None] * k[..., None, :], rtol=1e-12, atol=1e-12)


def test_t2_expanded_by_hand_with_initial_state():
    x, args = _inputs(B=1, T=2, H=1, N=4, seed=3)
    S0 = torch.randn(1, 1, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    y, S = reference.wkv7(*args, state=S0)
    r, w, k, v, a, b = (t[0, :, 0] for t in args)  # [T, N]
    S_prev = S0[0, 0]
    for t in range(2):
        D = torch.diag(torch.exp(-torch.exp(w[t])))
        M = D + torch.outer(a[t], b[t])  # S_t = S_{t-1} (D + a b^T) + v k^T
        S_prev = S_prev @ M + torch.outer(v[t], k[t])
        torch.testing.assert_close(y[0, t, 0], S_prev @ r[t], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(S[0, 0], S_prev, rtol=1e-12, atol=1e-12)


def test_reverse_is_flip_forward_flip():
    x, args = _inputs(T=11)
    y_rev, S_rev = reference.wkv7(*args, reverse=True)
    y_f, S_f = reference.wkv7(*[t.flip(1) for t in args])
    torch.testing.assert_close(y_rev, y_f.flip(1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(S_rev, S_f, rtol=1e-12, atol=1e-12)


def test_gate_selects_direction():
    x, args = _inputs(T=7)
    B, T, H, _ = x["r"].shape
    y_f, _ = reference.wkv7(*args)
    y_r, _ = reference.wkv7(*args, reverse=True)
    ones = torch.ones(B, T, H, dtype=F64)
    torch.testing.assert_close(reference.bi_wkv7(*args, g=ones), y_f, rtol=0, atol=0)
    torch.testing.assert_close(reference.bi_wkv7(*args, g=ones * 0), y_r, rtol=0, atol=0)
    torch.testing.assert_close(reference.bi_wkv7(*args), 0.5 * (y_f + y_r), rtol=1e-15, atol=1e-15)
    g = x["g"]
    torch.testing.assert_close(reference.bi_wkv7(*args, g=g), g[..., None] * y_f + (1 - g[..., None]) * y_r)


def test_state_handover_two_halves_equal_one_run():
    x, args = _inputs(T=13)
    y, S = reference.wkv7(*args)
    y1, S1 = reference.wkv7(*[t[:, :6] for t in args])
    y2, S2 = reference.wkv7(*[t[:, 6:] for t in args], state=S1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(S2, S, rtol=1e-12, atol=1e-12)


def test_linear_in_v():
    x, args = _inputs(T=8)
    v2 = torch.randn_like(x["v"])
    y1, _ = reference.wkv7(*args)
    args2 = list(args)
    args2[3] = v2
    y2, _ = reference.wkv7(*args2)
    args2[3] = x["v"] + 2 * v2
    y3, _ = reference.wkv7(*args2)
    torch.testing.assert_close(y3, y1 + 2 * y2, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("chunk_len", [1, 4, 16, 64])
@pytest.mark.parametrize("variant", ["realistic", "strong_decay", "weak_decay"])
def test_chunked_identity(chunk_len, variant):
    """The chunked-parallel form is the same function as the recurrence (to float64 rounding)."""
    x, args = _inputs(B=1, T=37, H=2, N=16, seed=5, variant=variant)
    S0 = torch.randn(1, 2, 16, 16, dtype=F64, generator=torch.Generator().manual_seed(2))
    y, S = reference.wkv7(*args, state=S0)
    yc, Sc = wkv7_chunked(*args, state=S0, chunk_len=chunk_len)
    torch.testing.assert_close(yc, y, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(Sc, S, rtol=1e-10, atol=1e-10)


def test_reference_computes_in_float64_from_rounded_inputs():
    x = bi_wkv7_inputs(1, 4, 1, 8, dtype=torch.bfloat16)
    y = reference.bi_wkv7(**x)
    assert y.dtype == F64
    y2 = reference.bi_wkv7(**{k: v.to(F64) for k, v in x.items()})
    torch.testing.assert_close(y, y2, rtol=0, atol=0)
