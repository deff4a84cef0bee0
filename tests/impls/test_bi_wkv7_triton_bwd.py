"""Training with the Triton Bi-WKV7 kernels: saved states, the backward kernel, the autograd Function.

Under the Triton interpreter (tests/conftest.py): the training forward of ``triton_chunked`` and
``triton_recurrent`` (``save=True``) and the backward kernel of ``bi_wkv7_triton/bwd.py`` against
float64 autograd of ``wkvbench.reference.bi_wkv7`` (``wkvbench.gradcheck``), with the bars of
docs/spec.md section 5 for outputs and gradients. The interpreter runs a program's tokens one at
a time in numpy (seconds per case), so the matrix is a representative subset: all five T
(1, 15, 16, 17, 50) at float32 strong decay with a gate; every dtype at T = 17 and 50, with and
without a gate, the three input variants spread over them; the recurrent forward on fewer cases
(its per-token forward is the slow part in the interpreter; the backward is the same kernel).
The saved ``states`` are compared with a float64 scan (the chunked WY backward relies on
them), and a mutant of the backward kernel without its ``dsa a^T`` term must fail the check.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from wkvbench import gradcheck, inputs, reference
from wkvbench.accuracy import compare
from wkvbench.registry import get_impl

triton = pytest.importorskip("triton")

from wkvbench.impls import bi_wkv7_triton as tk  # noqa: E402
from wkvbench.impls.bi_wkv7_triton import bwd as kb  # noqa: E402
from wkvbench.impls.bi_wkv7_triton import chunked_bwd as wy  # noqa: E402
from wkvbench.impls.bi_wkv7_triton import train as tt  # noqa: E402

F32, BF16, F16 = torch.float32, torch.bfloat16, torch.float16
ARGS = ("r", "w", "k", "v", "a", "b", "g")
WORST: dict = {}  # (kind, dtype) -> worst gradient label, printed with -s


def _inputs(T, dtype, variant="realistic", gate=True, B=1, H=None):
    H = H or (2 if T <= 17 else 1)  # two heads where it is cheap, one at T = 50
    return inputs.bi_wkv7_inputs(B, T, H, 64, dtype=dtype, seed=3 + T, variant=variant, gate=gate)


def _fwd_block(kind: str, dtype) -> int:
    """Fewest interpreter programs: the largest value block the forward accepts."""
    exact = dtype == F32 and kind in ("chunked", "chunked_tc")
    return 16 if kind == "recurrent" else max(tk.chunked_blocks(exact=exact))


def _grad_check(kind, x, dtype, bwd_block_v=64, record=True, backward="recurrent"):
    """Output and gradients of the training path against float64; returns the GradAccuracy.

    ``backward="recurrent"`` by default: this module's matrix is the per-token backward kernel's
    (the chunked kinds run the WY backward by default, whose matrix is in
    test_bi_wkv7_triton_chunked_bwd.py); None runs the kind's default.
    """
    tf32 = kind == "chunked_tf32"

    def fn(**a):
        return tt.bi_wkv7_train(
            **a, kind=kind, block_v=_fwd_block(kind, dtype), bwd_block_v=bwd_block_v, backward=backward
        )

    names = gradcheck.grad_names("bi_wkv7", x)
    dy = gradcheck.make_dy(tuple(x["r"].shape), dtype, "cpu", seed=1)
    y, grads = gradcheck.implementation_grads(fn, x, names, dy)
    acc_y = compare(y, reference.bi_wkv7(**x), dtype, tf32=tf32)
    assert acc_y.passed, f"output rel_err {acc_y.rel_err:.3g} > {acc_y.tol:.3g}"
    acc = gradcheck.compare_grads(grads, gradcheck.reference_grads("bi_wkv7", x, dy), dtype, tf32=tf32)
    key = (kind if backward == "recurrent" else f"{kind}+{backward}", str(dtype)[6:])
    if record and acc.worst_err > WORST.get(key, (0.0, ""))[0]:
        WORST[key] = (acc.worst_err, acc.label())
    print(f"\n{key} {acc.label()}; worst so far: {WORST.get(key, (0, '-'))[1]}")
    return acc


# ----------------------------------------------------------------------------- gradient matrix
@pytest.mark.parametrize("T", (1, 15, 16, 17, 50))
def test_chunked_grads_all_lengths_fp32_strong_decay(T):
    """float32 at the strongest decays: the division between re-seeds is the weak spot (bar 1e-4)."""
    acc = _grad_check("chunked", _inputs(T, F32, "strong_decay"), F32)
    assert acc.finite and acc.passed, acc.errors


CHUNKED_CASES = [
    (F32, 17, "realistic", False), (F32, 50, "weak_decay", True), (BF16, 17, "weak_decay", True),
    (BF16, 50, "strong_decay", False), (F16, 17, "strong_decay", False), (F16, 50, "realistic", True),
]  # fmt: skip


@pytest.mark.parametrize("dtype,T,variant,gate", CHUNKED_CASES, ids=lambda p: str(p).replace("torch.", ""))
def test_chunked_grads_dtypes_variants(dtype, T, variant, gate):
    acc = _grad_check("chunked", _inputs(T, dtype, variant, gate), dtype)
    assert acc.finite and acc.passed, acc.errors
    assert ("dg" in acc.errors) == gate


RECURRENT_CASES = [
    (F32, 1, "strong_decay", True), (F32, 17, "strong_decay", True), (BF16, 17, "realistic", False),
    (F16, 16, "weak_decay", True),
]  # fmt: skip


@pytest.mark.parametrize("dtype,T,variant,gate", RECURRENT_CASES, ids=lambda p: str(p).replace("torch.", ""))
def test_recurrent_grads(dtype, T, variant, gate):
    acc = _grad_check("recurrent", _inputs(T, dtype, variant, gate, H=1), dtype)
    assert acc.finite and acc.passed, acc.errors


def test_tf32_grads_within_bf16_bar():
    acc = _grad_check("chunked_tf32", _inputs(20, F32, "mixed"), F32)
    assert acc.finite and acc.passed and acc.tol == gradcheck.GRAD_TOLERANCE[BF16], acc.errors


def test_value_blocked_backward_batch_two():
    """BV = 16 (four value blocks add key-side partials by atomics), B = 2 (batch offsets), H = 1."""
    acc = _grad_check("chunked", _inputs(21, F32, "realistic", B=2, H=1), F32, bwd_block_v=16)
    assert acc.finite and acc.passed, acc.errors


# ----------------------------------------------------------------------------- saved states
def _scan64(x: dict, T: int):
    """float64 chunk-entry states [2, B, H, C, N, N] of both scan directions."""
    X = {n: x[n].double() for n in "rwkvab"}
    B, _, H, N = X["r"].shape
    d = torch.exp(-torch.exp(X["w"]))
    st = torch.zeros(2, B, H, -(-T // 16), N, N, dtype=torch.float64)
    for dirn, order in ((0, range(T)), (1, range(T - 1, -1, -1))):
        S = torch.zeros(B, H, N, N, dtype=torch.float64)
        for t in order:
            if (dirn == 0 and t % 16 == 0) or (dirn == 1 and (t % 16 == 15 or t == T - 1)):
                st[dirn, :, :, t // 16] = S
            s = torch.einsum("bhij,bhj->bhi", S, X["a"][:, t])
            S = S * d[:, t, :, None, :] + s[..., None] * X["b"][:, t, :, None, :]
            S = S + X["v"][:, t, :, :, None] * X["k"][:, t, :, None, :]
    return st


@pytest.mark.parametrize("kind", ("chunked", "recurrent"))
def test_saved_states_match_float64_scan(kind):
    """The training forward's states in the documented layout, and y equal to the inference kernel's."""
    T = 37
    x = _inputs(T, F32, "mixed", B=2, H=1)
    if kind == "chunked":
        y, st = tk.bi_wkv7_chunked(**x, block_v=32, save=True)
        y0 = tk.bi_wkv7_chunked(**x, block_v=32)
    else:
        y, st = tk.bi_wkv7_recurrent(**x, block_v=16, save=True)
        y0 = tk.bi_wkv7_recurrent(**x, block_v=16)
    assert float((y - y0).abs().max()) <= 1e-6 * float(y0.abs().max()), "saving must not change the output"
    want_st = _scan64(x, T)
    assert st.shape == want_st.shape and st.dtype == F32
    assert torch.count_nonzero(st[0, :, :, 0]) == 0 and torch.count_nonzero(st[1, :, :, -1]) == 0
    assert float((st.double() - want_st).norm() / want_st.norm()) < 1e-6


def test_saved_bytes_matches_saved_tensors():
    x = _inputs(20, BF16, B=1, H=2)
    _, st = tk.bi_wkv7_chunked(**x, block_v=64, save=True)
    assert tt.saved_bytes(1, 20, 2) == st.numel() * 4
    # per (token, head) and direction at a multiple of 16: 64 * 64 * 4 / 16 = 1024 bytes
    assert tt.saved_bytes(1, 32, 1) == 2 * 32 * 1024 and tk.saved_bytes is tt.saved_bytes


# ----------------------------------------------------------------------------- mutation checks
def _mutant(tmp_path, monkeypatch, term: str, replacement: str) -> None:
    """Launch a copy of the backward kernel with ``term`` replaced (the check must then fail)."""
    src = open(kb.__file__).read()
    assert src.count(term) == 1
    path = tmp_path / "mutant_triton_bwd.py"
    path.write_text(src.replace(term, replacement))
    spec = importlib.util.spec_from_file_location("mutant_triton_bwd", path)
    mutant = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mutant)
    monkeypatch.setattr(kb, "_bi_wkv7_bwd_kernel", mutant._bi_wkv7_bwd_kernel)


def test_mutant_without_dsa_a_term_fails(tmp_path, monkeypatch):
    """A backward kernel without ``dS += dsa a^T`` must fail the gradient check."""
    _mutant(tmp_path, monkeypatch, "dS = dS * d[None, :] + dsa[:, None] * at[None, :]", "dS = dS * d[None, :]")
    acc = _grad_check("chunked", _inputs(17, F32, "realistic"), F32, record=False)
    assert not acc.passed and acc.errors["da"] > 1e-2, acc.errors


def test_division_without_mid_chunk_reseed_misses_fp32_bar(tmp_path, monkeypatch):
    """15 divisions in a row (no re-seed at position 8) put float32 strong-decay dw/da over 1e-4."""
    x = _inputs(32, F32, "strong_decay", H=1)
    assert _grad_check("chunked", x, F32).worst_err < 2e-5
    _mutant(tmp_path, monkeypatch, "Sp = tl.where((zv[:, None] + p) == HALF, Smid, Sp)", "pass")
    acc = _grad_check("chunked", x, F32, record=False)
    assert not acc.passed and max(acc.errors["dw"], acc.errors["da"]) > 1e-4, acc.errors


# ----------------------------------------------------------------------------- the public functions
@pytest.mark.parametrize("name", ("triton_recurrent", "triton_chunked", "triton_chunked_tf32", "triton_chunked_tc"))
def test_registered_backward_and_grad_modes(name):
    rec = get_impl("bi_wkv7", name)
    assert rec.backward
    x = _inputs(3, F32, gate=True, H=1)
    with torch.no_grad():
        y_inf = rec.fn(**x)
    xg = dict(x, v=x["v"].clone().requires_grad_(True))
    y = rec.fn(**xg)
    assert y.requires_grad and not y_inf.requires_grad
    assert torch.allclose(y.detach(), y_inf, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="out"):
        rec.fn(**xg, out=torch.empty_like(y_inf))
    y.sum().backward()
    assert xg["v"].grad is not None and torch.isfinite(xg["v"].grad).all()


def test_backward_switch_hands_the_chunked_backward_the_states(monkeypatch):
    """``backward="chunked"`` calls ``chunked_backward(r, w, k, v, a, b, g, dy, states)``; bad names are refused."""
    seen = {}

    def fake(r, w, k, v, a, b, g, dy, states):
        seen["states"] = states
        return tuple(torch.zeros_like(r) for _ in range(6)) + (torch.zeros_like(g),)

    monkeypatch.setattr(wy, "chunked_backward", fake)
    monkeypatch.setattr(tt, "BACKWARD", tt.BACKWARD)
    tt.set_backward("chunked")
    x = gradcheck.leaves(_inputs(20, F32, H=1), list(ARGS))
    tt.bi_wkv7_train(**x, kind="chunked", block_v=32).sum().backward()
    assert seen["states"].shape == (2, 1, 1, 2, 64, 64) and x["g"].grad is not None
    with pytest.raises(ValueError, match="backward must be one of"):
        tt.set_backward("wy")


def test_backward_config():
    assert kb.backward_config(1, 12, 132) == {"BV": 16, "num_warps": 4}  # 96 programs: most parallelism
    assert kb.backward_config(8, 12, 132)["BV"] == 64  # 192 programs at BV = 64: deterministic sums
    with pytest.raises(ValueError, match="kind"):
        tt.bi_wkv7_train(*_inputs(2, F32).values(), kind="wy")


@pytest.mark.parametrize(
    "dtype,T,variant,kind",
    [(F32, 50, "strong_decay", "chunked"), (BF16, 17, "realistic", "chunked"), (F32, 20, "weak_decay", "chunked_tc")],
    ids=str,
)
def test_chunked_kinds_train_with_the_wy_backward_by_default(monkeypatch, dtype, T, variant, kind):
    """triton_chunked's (and triton_chunked_tc's, with 3xTF32 dots) registered path: training forward +
    the chunked (WY) backward, end to end."""
    calls = []
    real = wy.chunked_backward
    monkeypatch.setattr(wy, "chunked_backward", lambda *a, **k: calls.append(k.get("prec")) or real(*a, **k))
    assert tt.BACKWARD is None and tt.DEFAULT_BACKWARD == {
        "recurrent": "recurrent", "chunked": "chunked", "chunked_tf32": "chunked", "chunked_tc": "chunked"}  # fmt: skip
    acc = _grad_check(kind, _inputs(T, dtype, variant), dtype, backward=None)
    assert calls == [2 if kind == "chunked_tc" else None] and acc.finite and acc.passed, acc.errors
    with pytest.raises(ValueError, match="backward"):
        tt.bi_wkv7_train(*_inputs(2, F32).values(), kind="chunked", backward="wy")


def test_saved_bytes_is_what_autograd_keeps_beyond_the_inputs():
    """The docstring's figure (fp32 chunk-entry states of both directions) is what the forward saves."""
    x = _inputs(20, BF16, H=2)
    fn = get_impl("bi_wkv7", "triton_chunked").fn
    measured = gradcheck.saved_bytes(fn, x, gradcheck.grad_names("bi_wkv7", x))
    assert measured == tk.saved_bytes(1, 20, 2, 64, BF16) == 4 * 2 * 2 * 2 * 64 * 64  # C = 2 chunks
