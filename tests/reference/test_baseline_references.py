"""Independent facts about the float64 attention and selective-scan references.

Each test compares against something the reference code does not compute itself: a case
expanded by hand with ``math``, a closed form (uniform attention, memoryless scan), or a
symmetry of the math (time reversal, permutation, linearity).
"""

import math

import pytest
import torch
import torch.nn.functional as F

from wkvbench.inputs import attention_inputs, bi_selective_scan_inputs
from wkvbench.reference import attention, bi_selective_scan, selective_scan

f64 = torch.float64


# ----------------------------------------------------------------------------- attention
def test_attention_identical_keys_is_mean_of_values():
    x = attention_inputs(2, 3, 7, 16, seed=1)
    k = x["k"][:, :, :1].expand_as(x["k"])  # every key the same: uniform softmax
    o = attention(x["q"], k, x["v"])
    assert torch.allclose(o, x["v"].to(f64).mean(dim=2, keepdim=True).expand_as(o), atol=1e-12)


def test_attention_single_token_returns_its_value():
    x = attention_inputs(1, 2, 1, 8, seed=2)
    assert torch.allclose(attention(**x), x["v"].to(f64), atol=1e-14)


def test_attention_two_tokens_by_hand():
    q = torch.tensor([[[[1.0, 0.0], [0.0, 2.0]]]])
    k = torch.tensor([[[[1.0, 1.0], [-1.0, 0.5]]]])
    v = torch.tensor([[[[3.0, -1.0], [0.5, 2.0]]]])
    s = 2**-0.5
    out = []
    for qi in q[0, 0].tolist():
        logits = [s * (qi[0] * kj[0] + qi[1] * kj[1]) for kj in k[0, 0].tolist()]
        e = [math.exp(z) for z in logits]
        p = [x / sum(e) for x in e]
        out.append([p[0] * v[0, 0, 0, d].item() + p[1] * v[0, 0, 1, d].item() for d in range(2)])
    assert torch.allclose(attention(q, k, v), torch.tensor([[out]], dtype=f64), atol=1e-14)


def test_attention_permutations():
    x = attention_inputs(1, 2, 9, 8, seed=3)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    o = attention(**x)
    # permuting keys and values together changes nothing; permuting queries permutes rows
    assert torch.allclose(attention(x["q"], x["k"][:, :, perm], x["v"][:, :, perm]), o, atol=1e-13)
    assert torch.allclose(attention(x["q"][:, :, perm], x["k"], x["v"]), o[:, :, perm], atol=1e-13)


def test_attention_dominant_key_selects_its_value():
    x = attention_inputs(1, 1, 6, 8, seed=4)
    q = x["k"][:, :, 2:3] * 60.0  # q . k_2 dwarfs every other logit
    o = attention(q, x["k"], x["v"])
    assert torch.allclose(o[0, 0, 0], x["v"][0, 0, 2].to(f64), atol=1e-6)


def test_attention_row_blocks_do_not_change_the_result():
    x = attention_inputs(1, 2, 11, 8, seed=5)
    assert torch.allclose(attention(**x, block=3), attention(**x, block=1024), atol=1e-14)


# ----------------------------------------------------------------------------- selective scan
def softplus(x):
    return math.log1p(math.exp(x))


def silu(x):
    return x / (1 + math.exp(-x))


def test_scan_T1_by_hand():
    # B=1, D=1, N=2, T=1
    u, delta, z = 0.7, -0.3, 1.1
    A, Bm, Cm, Dsk, bias = [-1.0, -2.0], [0.5, -1.5], [2.0, 0.25], 0.8, 0.4
    dt = softplus(delta + bias)
    x = [dt * Bm[n] * u for n in range(2)]
    y = (sum(Cm[n] * x[n] for n in range(2)) + Dsk * u) * silu(z)
    got = selective_scan(
        torch.tensor([[[u]]]),
        torch.tensor([[[delta]]]),
        torch.tensor([A]),
        torch.tensor([[[b] for b in Bm]]),
        torch.tensor([[[c] for c in Cm]]),
        torch.tensor([Dsk]),
        torch.tensor([[[z]]]),
        torch.tensor([bias]),
    )
    assert got.item() == pytest.approx(y, rel=1e-6)  # inputs are float32-rounded; y is their function


def test_scan_T2_by_hand_no_softplus():
    # D=1, N=1: x1 = dt1 B1 u1, x2 = exp(dt2 A) x1 + dt2 B2 u2, y_t = C_t x_t
    u = [1.5, -0.5]
    dt = [0.25, 0.5]
    A, Bm, Cm = -2.0, [1.0, 3.0], [0.5, -1.0]
    x1 = dt[0] * Bm[0] * u[0]
    x2 = math.exp(dt[1] * A) * x1 + dt[1] * Bm[1] * u[1]
    want = [Cm[0] * x1, Cm[1] * x2]
    got = selective_scan(
        torch.tensor([[u]], dtype=f64),
        torch.tensor([[dt]], dtype=f64),
        torch.tensor([[A]], dtype=f64),
        torch.tensor([[Bm]], dtype=f64),
        torch.tensor([[Cm]], dtype=f64),
        delta_softplus=False,
    )
    assert got[0, 0].tolist() == pytest.approx(want, rel=1e-14)


def test_scan_memoryless_limit():
    """A -> -inf forgets everything: y_t = dt_t u_t (Cm_t . Bm_t) + D u_t, no z."""
    x = bi_selective_scan_inputs(1, 3, 8, 4, seed=6, with_z=False)
    A = torch.full_like(x["A"], -1e9)
    y = selective_scan(x["u"], x["delta"], A, x["Bm"], x["Cm"], x["Dskip"], None, x["delta_bias"])
    dt = F.softplus(x["delta"].to(f64) + x["delta_bias"].to(f64)[None, :, None])
    cb = (x["Cm"].to(f64) * x["Bm"].to(f64)).sum(1, keepdim=True)
    want = dt * x["u"].to(f64) * cb + x["Dskip"].to(f64)[None, :, None] * x["u"].to(f64)
    assert torch.allclose(y, want, atol=1e-12)


def test_scan_is_linear_in_u_without_z():
    x = bi_selective_scan_inputs(2, 4, 10, 8, seed=7, with_z=False)
    args = (x["delta"], x["A"], x["Bm"], x["Cm"], x["Dskip"], None, x["delta_bias"])
    y1 = selective_scan(x["u"], *args)
    y2 = selective_scan(x["u"] * 2 - 1, *args)
    y0 = selective_scan(torch.ones_like(x["u"]), *args)
    assert torch.allclose(y2, 2 * y1 - y0, atol=1e-12)


def test_fo_bi_time_reversal_symmetry():
    """With A_b = A, flipping every time-indexed input flips the output."""
    x = bi_selective_scan_inputs(2, 4, 12, 8, seed=8)
    x["A_b"] = x["A"]
    flipped = {n: (t.flip(-1) if t.dim() == 3 else t) for n, t in x.items()}
    assert torch.allclose(bi_selective_scan(**flipped), bi_selective_scan(**x).flip(-1), atol=1e-12)


def test_fo_bi_single_token_is_twice_the_scan_when_A_b_equals_A():
    x = bi_selective_scan_inputs(1, 4, 1, 8, seed=9)
    x["A_b"] = torch.full_like(x["A_b"], -123.0)  # with T = 1 the decay never applies
    one = selective_scan(x["u"], x["delta"], x["A"], x["Bm"], x["Cm"], x["Dskip"], x["z"], x["delta_bias"])
    assert torch.allclose(bi_selective_scan(**x), 2 * one, atol=1e-14)


def test_fo_bi_uses_A_b_for_the_reverse_direction_only():
    x = bi_selective_scan_inputs(1, 3, 6, 4, seed=10, with_z=False)
    x["Dskip"] = None
    base = bi_selective_scan(**x)
    x2 = dict(x, A_b=x["A_b"] * 2)
    # the last token's output: forward sees all tokens (A only), reverse sees only itself (no decay)
    assert torch.allclose(bi_selective_scan(**x2)[..., -1], base[..., -1], atol=1e-14)
    assert not torch.allclose(bi_selective_scan(**x2)[..., 0], base[..., 0])
