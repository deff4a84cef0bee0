"""numba_cuda training (wkvbench/impls/bi_wkv7_numba/: train.py, fwd.py, bwd.py) against float64 autograd of the
reference.

Without a GPU both training kernels run in the Numba CUDA simulator (one Python thread per CUDA
thread), so shapes stay tiny (B <= 3, H <= 2, N = 64) and the matrix is a subset chosen for the
module's wall time (about two minutes on two CPU cores):

* float32 with strong decay (every ``d`` near 0.545: the hardest case for the reconstruction by
  division) and the gate at every T in {1, 15, 16, 17, 50} (T = 1: one step, the odd-T middle
  token only; 15/17: odd, a partial last checkpoint interval; 16: whole intervals; 50: several
  re-seeds and a partial one);
* every I/O dtype with the three input variants (realistic, strong_decay, weak_decay) as one
  batch of three at T = 17 without the gate, and the 16-bit dtypes at T = 50 with strong decay
  and the gate;
* mutants of the backward template without the ``dsa a^T`` term or with ``dg``'s sign wrong fail;
* the training forward's output equals the inference kernel's bit for bit, and its checkpoints
  and ``sa`` match a float64 hand expansion of the recurrence;
* a gradient of one input only, bitwise repeatable backward runs, and the ``out=``/no-grad paths.

The sm_90 compile of the training kernels (registers, zero spills) is checked with the inference
kernel's in tests/impls/test_bi_wkv7_numba.py (one compile report for all of them).
"""

from __future__ import annotations

import pytest
import torch

from wkvbench import accuracy, gradcheck, reference
from wkvbench.inputs import bi_wkv7_inputs
from wkvbench.registry import get_impl

nb = pytest.importorskip("wkvbench.impls.bi_wkv7_numba")
if nb.cuda is None:
    pytest.skip(f"numba-cuda not installed: {nb._IMPORT_ERROR}", allow_module_level=True)
from wkvbench.impls.bi_wkv7_numba import bwd, fwd  # noqa: E402
from wkvbench.impls.bi_wkv7_numba import train as tr  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() and not nb.SIMULATOR else "cpu"
if DEV == "cpu" and not nb.SIMULATOR:
    pytest.skip("no GPU and NUMBA_ENABLE_CUDASIM is not set", allow_module_level=True)

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
VARIANTS = ("realistic", "strong_decay", "weak_decay")
ARGS = ("r", "w", "k", "v", "a", "b")


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _inputs(B, T, H, dtype, seed=0, variant="realistic", gate=True):
    return bi_wkv7_inputs(B, T, H, 64, dtype=dtype, device=DEV, seed=seed, variant=variant, gate=gate)


def _variant_batch(T, dtype, seed, gate):
    """The three input variants as one batch of three (the loss separates over the batch)."""
    xs = [_inputs(1, T, 1, dtype, seed + j, variant, gate) for j, variant in enumerate(VARIANTS)]
    return {n: None if xs[0][n] is None else torch.cat([x[n] for x in xs]) for n in xs[0]}


def _fn(**kw):
    return nb.numba_cuda(**kw)


def _check(x: dict, dtype, seed: int, labels=("",)) -> list[str]:
    """Output and gradients of numba_cuda against float64 autograd, per batch entry; the failures."""
    names = gradcheck.grad_names("bi_wkv7", x)
    dy = gradcheck.make_dy(tuple(x["r"].shape), dtype, DEV, seed)
    ref = gradcheck.reference_grads("bi_wkv7", x, dy)
    y, grads = gradcheck.implementation_grads(_fn, x, names, dy)
    y_ref = reference.bi_wkv7(**x)
    assert y.dtype == dtype and all(grads[n].dtype == dtype for n in names)
    failures = []
    for j, label in enumerate(labels):
        sl = slice(None) if len(labels) == 1 else slice(j, j + 1)
        fwd = accuracy.compare(y[sl], y_ref[sl], dtype)
        acc = gradcheck.compare_grads({n: grads[n][sl] for n in names}, {n: ref[n][sl] for n in names}, dtype)
        print(f"{_name(dtype):>8} T={x['r'].shape[1]:>2} {label or 'realistic':<12} y {fwd.rel_err:.1e} {acc.label()}")
        if not (fwd.passed and acc.passed):
            failures.append(f"{label}: y {fwd.rel_err:.2e} (bar {fwd.tol:.0e}), {acc.label()} (bar {acc.tol:.0e})")
    return failures


@pytest.mark.parametrize("T", (1, 15, 16, 17, 50))
def test_float32_strong_decay_gradients_every_length(T):
    x = _inputs(1, T, 2 if T == 1 else 1, torch.float32, seed=T, variant="strong_decay")
    assert not _check(x, torch.float32, seed=T, labels=("strong_decay",))


@pytest.mark.parametrize("dtype", DTYPES, ids=_name)
def test_every_dtype_and_variant_without_gate(dtype):
    x = _variant_batch(17, dtype, seed=3, gate=False)
    assert not _check(x, dtype, seed=17, labels=VARIANTS)


@pytest.mark.parametrize("dtype", DTYPES[1:], ids=_name)
def test_16bit_strong_decay_long_with_gate(dtype):
    x = _inputs(1, 50, 1, dtype, seed=50, variant="strong_decay")
    assert not _check(x, dtype, seed=50, labels=("strong_decay",))


MUTANTS = {
    "no dsa a^T": (("+ dsai * st[dirn, 4, j]", ""), ("+ dsaj * ai", "")),
    "dg sign": (("g1 = p if dirn == 0 else -p", "g1 = p"),),
}


@pytest.mark.parametrize("mutant", MUTANTS)
def test_mutated_backward_fails(monkeypatch, mutant):
    src = bwd._BWD_TEMPLATE
    for old, new in MUTANTS[mutant]:
        assert src.count(old) == 1, f"the mutation {old!r} no longer applies"
        src = src.replace(old, new)
    monkeypatch.setattr(bwd, "_BWD_TEMPLATE", src)
    bwd._kernel.cache_clear()
    try:
        x = _inputs(1, 9, 1, torch.float32, seed=4)
        names = gradcheck.grad_names("bi_wkv7", x)
        dy = gradcheck.make_dy(tuple(x["r"].shape), torch.float32, DEV, 4)
        y, grads = gradcheck.implementation_grads(_fn, x, names, dy)
        acc = gradcheck.compare_grads(grads, gradcheck.reference_grads("bi_wkv7", x, dy), torch.float32)
    finally:
        bwd._kernel.cache_clear()
    assert accuracy.compare(y, reference.bi_wkv7(**x), torch.float32).passed, "the mutation touches only the backward"
    assert acc.worst_err > 100 * acc.tol, f"the mutant passed: {acc.label()}"


def test_training_forward_saves_checkpoints_and_sa():
    """y equals the inference kernel's bit for bit; checkpoints and sa match a float64 expansion."""
    B, T, H = 1, 11, 2
    x = _inputs(B, T, H, torch.float32, seed=6)
    y, sa, ck = tr.forward_save(*[x[n] for n in ARGS], x["g"], rows_per_block=32)
    with torch.no_grad():
        assert torch.equal(y, nb.numba_cuda(**x, rows_per_block=32))
    CP = tr.checkpoint_tokens(torch.float32)
    NC = -(-T // CP)
    assert CP == 8 and NC == 2 and tr.checkpoint_tokens(torch.bfloat16) == 16
    saved = tr.saved_bytes(B, T, H, 64, torch.float32)
    assert sa.nbytes + ck.nbytes == saved == nb.saved_bytes(B, T, H, dtype=torch.float32)
    sa, ck = sa.view(2, B, T, H, 64).double(), ck.view(2, B, H, NC, 64, 64).double()
    for dirn in (0, 1):
        for h in range(H):
            r, w, k, v, a, b = (x[n][0, :, h].double() for n in ARGS)
            S = torch.zeros(64, 64, dtype=torch.float64)
            for u in range(T):  # scan step u: token u forward, T-1-u reverse
                t = u if dirn == 0 else T - 1 - u
                sa_ref = S @ a[t]
                assert torch.allclose(sa[dirn, 0, t, h], sa_ref, rtol=1e-4, atol=1e-5), (dirn, h, u)
                S = S * torch.exp(-torch.exp(w[t]))[None, :] + torch.outer(sa_ref, b[t]) + torch.outer(v[t], k[t])
                if u % CP == CP - 1 or u == T - 1:
                    got = ck[dirn, 0, h, u // CP]
                    assert float((got - S).norm() / S.norm()) < 1e-6, (dirn, h, u)


def test_autograd_keeps_exactly_saved_bytes():
    """What autograd keeps beyond the inputs (saved-tensor hooks, storages counted once) is saved_bytes."""
    B, T, H = 1, 5, 1
    x = _inputs(B, T, H, torch.bfloat16, seed=9)
    kept = gradcheck.saved_bytes(nb.numba_cuda, x, list(x))
    assert kept == nb.saved_bytes(B, T, H, dtype=torch.bfloat16) == 4 * 2 * (T * 64 + 64 * 64)


def test_saved_bytes_at_most_the_causal_baseline():
    from wkvbench.impls import bi_wkv7_catflip as catflip

    for dtype, per_token in ((torch.bfloat16, 1280), (torch.float16, 1280), (torch.float32, 2304)):
        assert tr.saved_bytes(1, 64, 1, 64, dtype) == 2 * 64 * per_token  # both directions, T a multiple of CP
        for T in (1, 17, 50, 64):
            assert tr.saved_bytes(2, T, 3, 64, dtype) <= catflip.saved_bytes(2, T, 3, 64, dtype)


def test_one_input_gradient_repeatable_and_paths():
    """Only w requires grad; two backward runs agree bit for bit; no-grad runs inference; out= refused."""
    x = _inputs(1, 5, 1, torch.float16, seed=8)
    w = x["w"].clone().requires_grad_()
    dy = gradcheck.make_dy(tuple(x["r"].shape), torch.float16, DEV, 8)
    dws = []
    for _ in range(2):
        y = nb.numba_cuda(**{**x, "w": w})
        assert y.requires_grad and y.grad_fn is not None
        (dw,) = torch.autograd.grad(y, [w], dy)
        dws.append(dw)
    assert torch.equal(dws[0], dws[1]), "the backward must be deterministic"
    ref = gradcheck.reference_grads("bi_wkv7", x, dy)["w"]
    assert accuracy.compare(dws[0], ref, torch.float16).rel_err < gradcheck.GRAD_TOLERANCE[torch.float16]
    with torch.no_grad():
        y0 = nb.numba_cuda(**{**x, "w": w})
    assert not y0.requires_grad and torch.equal(y0, y.detach())
    with pytest.raises(ValueError, match="^out:"):
        nb.numba_cuda(**{**x, "w": w}, out=torch.empty_like(x["r"]))


def test_registered_with_backward_and_names_checked(monkeypatch):
    assert get_impl("bi_wkv7", "numba_cuda").backward
    with pytest.raises(ValueError, match="^name:"):
        tr.kernel_source("bi_wkv7_kernel", "f32")
    with pytest.raises(ValueError, match="^kind:"):
        tr.kernel_source(tr.KERNELS[1], "f64")
    monkeypatch.setattr(fwd, "_FWD_SAVE_EDITS", (("no such line", "x"),))
    with pytest.raises(RuntimeError, match="template changed"):
        tr.fwd_save_template()
