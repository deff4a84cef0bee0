"""The Numba kernels' blocks never communicate: no atomics, and no global array a kernel both writes
and reads, except the listed workspaces, each element of which is written and read inside one block.

Why this matters: the CUDA simulator (``NUMBA_ENABLE_CUDASIM``, how the Numba kernels run on the
CPU) runs a launch's blocks one after another. A kernel in which one block reads what another
writes, or two blocks add into one element, would pass there whatever the order or the atomicity
on a GPU: the simulator's checks are complete only while no such communication exists. This test
fails the moment a kernel gains an atomic or a new written-and-read global array, so that the
change comes with a check that sees concurrency (as the CUDA C kernels' ThreadSanitizer runs do).
"""

from __future__ import annotations

import ast

import pytest

from wkvbench.impls import bi_wkv7_numba as nb
from wkvbench.impls.bi_wkv7_numba import train

KINDS = ("f32", "f16", "bf16")
_MERGE = "the gate merge's fp32 workspace: element ((b*T + t)*H + h)*N + row is parked by one direction's thread"
_MERGE += " and read by the other's, both threads of the block that owns (b, h, row)"
ALLOWED = {  # (kernel, array) written and read by the kernel -> why no other block touches an element
    ("bi_wkv7_kernel", "ws"): _MERGE,
    ("bi_wkv7_fwd_save_kernel", "ws"): _MERGE,
    ("bi_wkv7_bwd_kernel", "ws"): "the gradient workspace: slot idx (and 6E + gidx for dg) of (b, h) is parked and"
    " read by the two direction threads of block (h, b), the only block of that (b, h)",
}
_STORE_HELPERS, _LOAD_HELPERS = {"_sim_st_bf16"}, {"_sim_ld_bf16"}


def sources() -> dict[str, list[str]]:
    """Kernel name -> its Python source for every I/O kind."""
    out = {"bi_wkv7_kernel": [nb.kernel_source(kind) for kind in KINDS]}
    for name in train.KERNELS:
        out[name] = [train.kernel_source(name, kind) for kind in KINDS]
    return out


def communication(src: str) -> tuple[str, set[str], list[str]]:
    """(kernel name, global arrays it both writes and reads, atomics it uses) of one kernel source."""
    fn = next(n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef))
    params = {a.arg for a in fn.args.args}
    written, read, atomics = set(), set(), []
    for node in ast.walk(fn):
        if isinstance(node, ast.Attribute) and "atomic" in node.attr:
            atomics.append(ast.unparse(node))
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in params:
            (written if isinstance(node.ctx, ast.Store) else read).add(node.value.id)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Subscript):
            read.add(ast.unparse(node.target.value))  # x[i] += y reads x too
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            arrays = [a.id for a in node.args if isinstance(a, ast.Name) and a.id in params]
            if node.func.id in _STORE_HELPERS:
                written.update(arrays[:1])
            elif node.func.id in _LOAD_HELPERS:
                read.update(arrays[:1])
    return fn.name, written & read, atomics


def test_numba_kernels_have_no_atomics_and_no_cross_block_reads():
    found = {}
    for name, srcs in sources().items():
        for src in srcs:
            kernel, both, atomics = communication(src)
            assert kernel == name
            assert not atomics, f"{name} uses {atomics}: blocks would communicate, which the simulator cannot check"
            found.update({(name, a): None for a in both})
    new = sorted(set(found) - set(ALLOWED))
    assert not new, f"written and read by the kernel (can another block read it?): {new}; see this module's docstring"
    assert set(found) == set(ALLOWED), f"stale entries: {sorted(set(ALLOWED) - set(found))}"


@pytest.mark.parametrize(
    "body,what",
    [
        ("    cuda.atomic.add(out, 0, x[0])\n", "atomic"),
        ("    out[cuda.blockIdx.x] = x[0]\n    y = out[cuda.blockIdx.x - 1]\n", "out"),
        ("    out[0] += x[0]\n", "out"),
    ],
)
def test_the_check_sees_atomics_and_reads_of_written_arrays(body, what):
    _, both, atomics = communication(f"def kern(x, out, T):\n{body}")
    assert atomics if what == "atomic" else both, (body, both, atomics)
    if what != "atomic":
        assert both == {what}
