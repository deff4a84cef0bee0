"""Training (forward + backward) of ``numba_cuda``: the fused Bi-WKV7 kernels that autograd runs.

:mod:`wkvbench.impls.bi_wkv7_numba` runs :class:`BiWKV7Numba` when an input requires grad. Math:
docs/spec.md section 1. Two Numba CUDA kernels per I/O dtype, both built from Python-source
templates with the dtype's loads/stores spliced in, exactly as the inference kernel is:

* ``bi_wkv7_fwd_save_kernel``: the inference kernel's own template (``_KERNEL_TEMPLATE``) with
  three insertions: it also writes ``sa`` (fp32 ``[2, B, T, H, N]``, direction-major, token order)
  and the state after every scan step ``u`` with ``u % CP == CP - 1`` or ``u == T - 1`` (fp32
  checkpoints ``[2, B, H, NC, N, N]``, ``NC = ceil(T / CP)``, row-major ``S[i, j]``; ``u`` is the
  scan index: token ``u`` forward, ``T-1-u`` reverse). Same launch (grid ``(64/R, H, B)``, block
  ``2R``), same outputs bit for bit.
* ``bi_wkv7_bwd_kernel``: both directions, the gate merge and ``dg`` in one launch. Grid
  ``(H, B)``, block ``4N = 256`` threads: per direction a "column" group of 64 threads (thread
  ``i`` owns column ``i`` of ``S`` and of ``dS`` and computes ``dr, dw, dk, da, db`` of channel
  ``i``) and a "row" group (thread ``i`` owns row ``i`` of ``dS`` and computes ``dv`` and ``dsa``;
  row thread 0 also reduces ``dg``), the layout of ``audiorwkv_catflip``'s backward. The two
  directions run in lock-step: at step ``s`` both are at scan index ``u = T-1-s``, the forward
  scan's backward at token ``T-1-s`` and the reverse scan's at token ``s``. Per step, with
  ``dy' = gate * dy`` (gate ``g`` forward, ``1 - g`` reverse)::

      dS += dy' r^T;  q = S_u^T dy;  dr = gate * q;  dv = dS k;  dk = dS^T v;  db = dS^T sa;  dsa = dS b
      S_prev = (S_u - v k^T - sa b^T) diag(1/d)   (re-seeded from the checkpoint when u % CP == 0)
      da = S_prev^T dsa;  dd = sum_i dS[i, :] S_prev[i, :];  dw = dd * d * (-exp(w));  dS = dS diag(d) + dsa a^T
      dg += +-(r . q)     (sum_i dy_i y_dir,i = r . S^T dy: + forward, - reverse)

  Two ``syncthreads`` per step (after staging ``r, d, k, v, a, b, dy, dy', sa``, after ``dsa``),
  plus one in the middle step of an odd T (see below). Re-seeding at ``u % CP == 0`` bounds
  the reconstruction by division to ``CP - 1`` steps; ``d >= 0.545`` in the RWKV-7 domain, so an
  error grows at most 1.83x per step: ``CP = 8`` for float32 I/O (amplification ~70; the 15 steps
  of ``CP = 16`` cost ~8700x and missed the float32 gradient bar at strong decay in
  ``audiorwkv_catflip``'s emulation), ``CP = 16`` for 16-bit I/O (its rounding dominates).

Combining the directions without races or atomics: the lock-step merge of the inference kernel.
The first direction to reach a token (steps with ``2s < T-1``) parks its fp32 gradients in a
workspace ``ws`` (``6E + B*T*H`` floats: one slot per gradient element and per ``dg``); the
second (``2s > T-1``) adds its own and writes the I/O dtype once. When ``2s == T-1`` (odd T,
middle token) both reach the token in the same step: the forward scan parks, every thread meets
one extra ``syncthreads``, the reverse scan adds. Each slot is written by one thread and read by
one other thread of the same block after at least one barrier; the sum ``fl(x + y)`` is
formed in the same order on every run, so the gradients are deterministic.

Saved for backward (:func:`saved_bytes`), fp32, per (token, head) per direction: ``sa`` 256 B +
checkpoints ``4 N^2 / CP``: 1024 B for 16-bit I/O (1280 B in all) and 2048 B for float32 (2304
B), plus at most one extra checkpoint per (sequence, head, direction) when ``T % CP != 0`` (the
final state). Per element of ``y`` ``[B, T, H, N]``: 40 B (16-bit) or 72 B (float32). That is
exactly ``audiorwkv_catflip``'s per sequence of its 2B without its T padding, and without its
concatenated flipped inputs: autograd keeps only references to the inputs themselves. The
backward allocates the workspace (``4 * (6E + B*T*H)`` bytes) for the duration of its launch.
"""

from __future__ import annotations

import functools
import linecache
import warnings

import torch

from wkvbench.impls import _gpu
from wkvbench.impls import bi_wkv7_numba as nb

N = nb.N
NSTAGE = 9  # vectors staged per step and direction in the backward: r, d, k, v, a, b, dy, gate*dy, sa
BWD_THREADS = 4 * N  # two directions x (column group + row group)


#: Scan steps per state checkpoint: 16 for 16-bit I/O, 8 for float32 (see the module docstring).
checkpoint_tokens = _gpu.checkpoint_tokens


def saved_bytes(B: int, T: int, H: int, N: int = 64, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes the training forward saves for the backward: fp32 ``sa`` and checkpoints, both directions."""
    return _gpu.sa_checkpoint_bytes(B, T, H, N, dtype)


# ----------------------------------------------------------------------------- kernel sources
# The training forward: the inference template plus three insertions (anchor -> new text). Each
# anchor must occur exactly once, so a changed inference template fails loudly here.
_FWD_SAVE_EDITS = (
    (
        "def bi_wkv7_kernel(r, w, k, v, a, b, g, has_g, out, ws, T, H, R):",
        "def bi_wkv7_fwd_save_kernel(r, w, k, v, a, b, g, has_g, out, ws, T, H, R, sa_out, ck, CP, NC):",
    ),
    (
        "        sa = (p0 + p1) + (p2 + p3)\n",
        "        sa = (p0 + p1) + (p2 + p3)\n"
        "        sa_out[dirn * cuda.gridDim.z * T * H * N + base + i] = sa  # [2, B, T, H, N], token order\n",
    ),
    (
        "        part = gate * ((p0 + p1) + (p2 + p3))\n",
        "        part = gate * ((p0 + p1) + (p2 + p3))\n"
        "        if s % CP == CP - 1 or s == T - 1:  # checkpoint: S after scan step s, row i\n"
        "            cko = (((dirn * cuda.gridDim.z + bb) * H + h) * NC + s // CP) * N * N + i * N\n"
        "            for j in range(N):\n"
        "                ck[cko + j] = S[j]\n",
    ),
)


def fwd_save_template() -> str:
    """The training forward's template: the inference template with the ``sa``/checkpoint writes inserted."""
    src = nb._KERNEL_TEMPLATE
    for anchor, new in _FWD_SAVE_EDITS:
        if src.count(anchor) != 1:
            raise RuntimeError(f"the inference kernel template changed: anchor {anchor.strip()!r} not found once")
        src = src.replace(anchor, new)
    return src


_BWD_TEMPLATE = """
def bi_wkv7_bwd_kernel(r, w, k, v, a, b, g, has_g, dy, sa_in, ck, ws, dr, dw, dk, dv, da, db, dg, T, H, CP, NC):
    h = cuda.blockIdx.x
    bb = cuda.blockIdx.y
    E = cuda.gridDim.y * T * H * N  # elements of one [B, T, H, N] tensor
    tid = cuda.threadIdx.x
    dirn = tid // (2 * N)  # 0: the forward scan's backward, 1: the reverse scan's
    col = (tid // N) % 2 == 0  # column group (dr, dw, dk, da, db) or row group (dv, dsa, dg)
    i = tid % N
    st = cuda.shared.array(shape=(2, NSTAGE, N), dtype=nt.float32$SMEM_ALIGN)  # r d k v a b dy dy' sa
    sdsa = cuda.shared.array(shape=(2, N), dtype=nt.float32)
    srq = cuda.shared.array(shape=(2, N), dtype=nt.float32)
    X = cuda.local.array(N, dtype=nt.float32)  # column group: column i of S; row group: row i of dS
    dS = cuda.local.array(N, dtype=nt.float32)  # column group: column i of dS
    zero = nt.float32(0.0)
    one = nt.float32(1.0)
    cbase = ((dirn * cuda.gridDim.y + bb) * H + h) * NC * N * N + i  # column i of this direction's checkpoint 0
    for j in range(N):
        X[j] = zero
        dS[j] = zero
    if col:  # S after the last scan step (the last checkpoint)
        last = cbase + (NC - 1) * N * N
        for j in range(N):
            X[j] = ck[last + j * N]

    for s in range(T):
        u = T - 1 - s  # scan index of this step, both directions
        tt = u + dirn * (s - u)  # the token: u forward, T-1-u = s reverse
        gidx = (bb * T + tt) * H + h
        idx = gidx * N + i
        gt = $LD(g, gidx) if has_g else nt.float32(0.5)
        gate = gt if dirn == 0 else one - gt
        ri = zero
        ki = zero
        ai = zero
        bi = zero
        ew = zero
        di = one
        dygi = zero
        if col:
            ri = $LD(r, idx)
            ki = $LD(k, idx)
            ai = $LD(a, idx)
            bi = $LD(b, idx)
            ew = nt.float32(math.exp($LD(w, idx)))
            di = nt.float32(math.exp(-ew))
            st[dirn, 0, i] = ri
            st[dirn, 2, i] = ki
            st[dirn, 3, i] = $LD(v, idx)
            st[dirn, 4, i] = ai
            st[dirn, 5, i] = bi
        else:
            dyi = $LD(dy, idx)
            dygi = gate * dyi
            st[dirn, 1, i] = nt.float32(math.exp(-nt.float32(math.exp($LD(w, idx)))))
            st[dirn, 6, i] = dyi
            st[dirn, 7, i] = dygi
            st[dirn, 8, i] = sa_in[dirn * E + idx]
        cuda.syncthreads()

        q = zero
        dki = zero
        dbi = zero
        ddi = zero
        dvi = zero
        if col:  # q = S_u^T dy; dS += dy' r^T; dk = dS^T v; db = dS^T sa; S_prev; dd (column i)
            inv_d = one / di
            for j in range(N):
                vj = st[dirn, 3, j]
                saj = st[dirn, 8, j]
                q += X[j] * st[dirn, 6, j]
                dS[j] += st[dirn, 7, j] * ri
                dki += dS[j] * vj
                dbi += dS[j] * saj
                X[j] = (X[j] - vj * ki - saj * bi) * inv_d
                ddi += dS[j] * X[j]
            if u % CP == 0:  # re-seed S_prev: the checkpoint of scan step u-1, or 0 before step 0
                ddi = zero
                if u == 0:
                    for j in range(N):
                        X[j] = zero
                else:
                    prev = cbase + (u // CP - 1) * N * N
                    for j in range(N):
                        X[j] = ck[prev + j * N]
                        ddi += dS[j] * X[j]
            srq[dirn, i] = ri * q
        else:  # row i of dS: dS += dy' r^T; dv = dS k; dsa = dS b; dS = dS diag(d) + dsa a^T
            dsai = zero
            for j in range(N):
                X[j] += dygi * st[dirn, 0, j]
                dvi += X[j] * st[dirn, 2, j]
                dsai += X[j] * st[dirn, 5, j]
            sdsa[dirn, i] = dsai
            for j in range(N):
                X[j] = X[j] * st[dirn, 1, j] + dsai * st[dirn, 4, j]
        cuda.syncthreads()

        g0 = zero  # column group: dr, dw, dk, da, db; row group: dv and (row thread 0) dg
        g1 = zero
        g2 = zero
        g3 = zero
        g4 = zero
        if col:  # da = S_prev^T dsa; dS = dS diag(d) + dsa a^T (column i)
            dai = zero
            for j in range(N):
                dsaj = sdsa[dirn, j]
                dai += X[j] * dsaj
                dS[j] = dS[j] * di + dsaj * ai
            g0 = gate * q
            g1 = ddi * di * -ew
            g2 = dki
            g3 = dai
            g4 = dbi
        else:
            g0 = dvi
            if has_g and i == 0:  # dg = dy . (yf - yb); this direction's share is +-(r . q)
                p = zero
                for j in range(N):
                    p += srq[dirn, j]
                g1 = p if dirn == 0 else -p

        # lock-step merge: the first direction to reach the token parks, the second adds and stores
        mid = 2 * s == T - 1
        first = 2 * s < T - 1 or (mid and dirn == 0)
        if first:
            if col:
                ws[idx] = g0
                ws[E + idx] = g1
                ws[2 * E + idx] = g2
                ws[4 * E + idx] = g3
                ws[5 * E + idx] = g4
            else:
                ws[3 * E + idx] = g0
                if has_g and i == 0:
                    ws[6 * E + gidx] = g1
        if mid:  # both directions are at this token now: the parked values first
            cuda.syncthreads()
        if not first:
            if col:
                $ST(dr, idx, g0 + ws[idx])
                $ST(dw, idx, g1 + ws[E + idx])
                $ST(dk, idx, g2 + ws[2 * E + idx])
                $ST(da, idx, g3 + ws[4 * E + idx])
                $ST(db, idx, g4 + ws[5 * E + idx])
            else:
                $ST(dv, idx, g0 + ws[3 * E + idx])
                if has_g and i == 0:
                    $ST(dg, gidx, g1 + ws[6 * E + gidx])
"""

KERNELS = ("bi_wkv7_fwd_save_kernel", "bi_wkv7_bwd_kernel")


def kernel_source(name: str, kind: str) -> str:
    """Python source of training kernel ``name`` (one of :data:`KERNELS`) for I/O ``kind`` (f32, f16, bf16)."""
    if name not in KERNELS:
        raise ValueError(f"name: expected one of {KERNELS}, got {name!r}")
    if kind not in ("f32", "f16", "bf16"):
        raise ValueError(f"kind: no kernel variant {kind!r}; expected f32, f16 or bf16")
    template = fwd_save_template() if name == KERNELS[0] else _BWD_TEMPLATE
    return nb.expand_template(template, kind)


def _kernel_function(name: str, kind: str):
    src = kernel_source(name, kind)
    filename = f"<wkvbench numba {name} {kind}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)  # readable tracebacks
    namespace = nb.kernel_namespace()
    namespace["NSTAGE"] = NSTAGE
    exec(compile(src, filename, "exec"), namespace)
    return namespace[name]


def _signature(name: str, kind: str):
    nt = nb.nt
    io = {"f32": nt.float32, "f16": nt.float16, "bf16": nt.int16}[kind][::1]
    f32, i64 = nt.float32[::1], nt.int64
    if name == KERNELS[0]:
        return nt.void(*[io] * 7, nt.int32, io, f32, i64, i64, i64, f32, f32, i64, i64)
    return nt.void(*[io] * 7, nt.int32, io, f32, f32, f32, *[io] * 7, i64, i64, i64, i64)


def launch_bounds(name: str) -> tuple[int, int] | None:
    """``(max threads, min blocks per SM)`` for ptxas: the backward's 256-thread block must fit 64K registers."""
    return (BWD_THREADS, 1) if name == KERNELS[1] else None


@functools.cache
def _kernel(name: str, kind: str):
    fn = _kernel_function(name, kind)
    if nb.SIMULATOR:
        return nb.cuda.jit(fn)
    return nb.cuda.jit(_signature(name, kind), launch_bounds=launch_bounds(name))(fn)


def _flat(x: torch.Tensor, kind: str) -> torch.Tensor:
    return nb._flat(x.detach().contiguous(), kind)


def _launch(kern, grid: tuple, block: int, device: torch.device, args: list) -> None:
    """Launch ``kern`` on torch's current stream (or in the simulator on CPU tensors); tensors zero copy."""
    if device.type == "cpu":  # simulator: numpy views share memory with the tensors
        kern[grid, block](*[x.numpy() if isinstance(x, torch.Tensor) else x for x in args])
        return
    cuda = nb.cuda
    with cuda.gpus[device.index or 0]:
        stream = cuda.external_stream(torch.cuda.current_stream(device).cuda_stream)
        arrs = [cuda.as_cuda_array(x, sync=False) if isinstance(x, torch.Tensor) else x for x in args]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Gg]rid size.*")  # batch-1 grids are small by design
            kern[grid, block, stream](*arrs)


def forward_save(r, w, k, v, a, b, g, rows_per_block: int):
    """Training forward: ``(y, sa, ck)`` (``y`` as the inference kernel's, plus what the backward needs)."""
    B, T, H, _ = r.shape
    kind, dev = nb.KINDS[r.dtype], r.device
    CP = checkpoint_tokens(r.dtype)
    NC = -(-T // CP)
    y = torch.empty(r.shape, dtype=r.dtype, device=dev)
    sa = torch.empty(2 * B * T * H * N, dtype=torch.float32, device=dev)
    ck = torch.empty(2 * B * H * NC * N * N, dtype=torch.float32, device=dev)
    ws = torch.empty(B * T * H * N, dtype=torch.float32, device=dev)
    gg = torch.empty(1, dtype=r.dtype, device=dev) if g is None else g
    R = rows_per_block
    args = [*(_flat(x, kind) for x in (r, w, k, v, a, b, gg)), int(g is not None)]
    args += [_flat(y, kind), ws, T, H, R, sa, ck, CP, NC]
    _launch(_kernel(KERNELS[0], kind), (N // R, H, B), 2 * R, dev, args)
    return y, sa, ck


def backward(r, w, k, v, a, b, g, dy, sa, ck):
    """The backward launch: ``(dr, dw, dk, dv, da, db, dg)`` in the I/O dtype (``dg`` None without ``g``)."""
    B, T, H, _ = r.shape
    kind, dev = nb.KINDS[r.dtype], r.device
    CP = checkpoint_tokens(r.dtype)
    E = B * T * H * N
    grads = [torch.empty(r.shape, dtype=r.dtype, device=dev) for _ in range(6)]
    dg = torch.empty((1,) if g is None else g.shape, dtype=r.dtype, device=dev)
    ws = torch.empty(6 * E + B * T * H, dtype=torch.float32, device=dev)
    gg = torch.empty(1, dtype=r.dtype, device=dev) if g is None else g
    args = [*(_flat(x, kind) for x in (r, w, k, v, a, b, gg)), int(g is not None), _flat(dy, kind), sa, ck, ws]
    args += [*(_flat(x, kind) for x in (*grads, dg)), T, H, CP, -(-T // CP)]
    _launch(_kernel(KERNELS[1], kind), (H, B), BWD_THREADS, dev, args)
    return (*grads, None if g is None else dg)


class BiWKV7Numba(torch.autograd.Function):
    """Fused Bi-WKV7: the forward saves ``sa`` and checkpoints, the backward is one fused launch."""

    @staticmethod
    def forward(ctx, r, w, k, v, a, b, g, rows_per_block):
        y, sa, ck = forward_save(r, w, k, v, a, b, g, rows_per_block)
        ctx.save_for_backward(r, w, k, v, a, b, g, sa, ck)
        return y

    @staticmethod
    def backward(ctx, dy):
        r, w, k, v, a, b, g, sa, ck = ctx.saved_tensors
        grads = backward(r, w, k, v, a, b, g, dy.to(r.dtype).contiguous(), sa, ck)
        return (*grads, None)


# ----------------------------------------------------------------------------- compile report
def report_kernels():
    """``(kernel, kind, python function, signature, shared bytes, block, launch bounds)`` of every training kernel."""
    fwd_shared = (2 * 2 * nb.NVEC * N + 4) * 4
    bwd_shared = (2 * NSTAGE * N + 4 * N) * 4
    return [
        (name, kind, _kernel_function(name, kind), _signature(name, kind), shared, block, launch_bounds(name))
        for name, shared, block in ((KERNELS[0], fwd_shared, "2R"), (KERNELS[1], bwd_shared, str(BWD_THREADS)))
        for kind in ("f32", "f16", "bf16")
    ]
