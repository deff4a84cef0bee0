"""Bi-WKV7 as one CUDA C kernel compiled by NVRTC and launched through CuPy: ``cupy_cuda``.

The kernel source is the package file ``bi_wkv7_cupy.cu`` (next to this module). Both scan
directions and the gate merge run in ONE launch.

Algorithm (the fused recurrent form of the official RWKV-7 CUDA kernel, BlinkDL/RWKV-LM
``wkv7`` forward, where one thread owns one value row of the state; written here from the
recurrence in docs/spec.md section 1). For a (batch, head) the state is ``S[i, j]`` (i value row,
j key column) and a row's update needs only that row::

    sa_i    = sum_j S[i, j] a_j
    S[i, j] = S[i, j] d_j + sa_i b_j + v_i k_j,     d_j = exp(-exp(w_j))
    y_i     = sum_j S[i, j] r_j

so value rows evolve independently given the token's ``r, d, k, a, b`` vectors and ``v_i``.

Launch geometry. Block: ``2N = 128`` threads; threads ``0..N-1`` run the forward scan, threads
``N..2N-1`` the reverse scan, in lock-step: at step ``s`` the forward half is at token ``s``
and the reverse half at token ``T-1-s`` (no flipped copy exists; the reverse half just indexes
backwards). A block owns ``R = N / SPLIT`` value rows of one (batch, head) for both directions,
each row held by ``SPLIT`` consecutive lanes that keep ``N / SPLIT`` key columns each in fp32
registers (columns interleaved in float4 granules so the lanes' shared-memory reads do not
conflict); the row's two dot products reduce over those lanes with an xor-shuffle butterfly
(none for ``SPLIT = 1``, the official kernel's layout). Grid: ``B * H * SPLIT`` blocks, i.e.
the value rows of a head are split over ``SPLIT`` blocks, so batch 1 still fills the GPU.
``SPLIT`` in {1, 2, 4, 8} is a template parameter picked per call by :func:`pick_split` (a cost
model; ``split=`` overrides it).

Staging and prefetch. Each chunk of ``TC`` steps (8; 4 for ``SPLIT = 1`` and for float32 with
``SPLIT = 2``, where steps are long and the state slice needs the registers) the block stages,
for both directions, the ``r, d, k, a, b`` vectors (``d = exp(-exp(w))`` computed once here, not
by every row) and its ``R``-row slice of ``v`` and the gate factor (``g`` forward, ``1-g``
reverse) into shared memory as fp32: ``2*TC*(5N + R + 1)`` floats, 11-25 KB. Every thread then
reads the vectors as broadcast float4 loads. The global loads are 16-byte vector loads spread
over all 128 threads and issued one chunk ahead into registers (``uint4`` prefetch array), and a
chunk costs two ``__syncthreads``.

Step order: ``y_t = S_t r_t`` is reduced together with ``sa_{t+1} = S_t a_{t+1}`` at the start of
step ``t+1``; the chunk's last ``y`` after its loop, so every output is stored in its step's chunk.

The gate merge, fused, with one fp32 partial round trip per element. Token ``t`` is reached by
the forward half at step ``t`` and by the reverse half at step ``T-1-t``. Phase 1 is steps
``[0, m)`` with ``m = ceil(T/2)``, phase 2 steps ``[m, T)``; chunks never straddle ``m``. In
phase 1 both halves reach their tokens first and store the gated fp32 partial (``g y_fwd`` or
``(1-g) y_rev``) in ``part`` (laid out like ``y``; it IS ``y`` for float32 I/O, else a float32
scratch tensor); in phase 2 both are second and write ``y = part + own partial`` once, in the
I/O dtype. For odd ``T`` both halves reach the middle token ``(T-1)/2`` at the same step
``m-1``: the forward lane stores its partial, the reverse lane keeps its own in a register and
writes ``y`` after the loop. Every ``y`` element is written exactly once, and each partial is
written and read by two lanes of the same block with a ``__syncthreads`` between them (the
race-freedom argument: docs/notes/cupy_bi_wkv7.md).

Bytes moved, per element of ``[B, T, H, N]`` (``es`` = I/O element size): the six inputs are
read once per direction (``12 es``: the reverse half reads a token ``|T-1-2t|`` steps after the
forward half, an L2 hit only near the middle or for short sequences; the ``SPLIT`` blocks of a
head read the same key-side vectors at the same time, so the repeats are L2 hits), ``y`` written
once (``es``), the partial written and read once (``8`` bytes), ``g`` read twice per (b, t, h).
bf16: ~34 B per element vs the op's minimum ``bytes_moved`` of 14 (2.4x); float32 60 vs 28.
Shared-memory bandwidth, issue and latency bind long before HBM does (docs/notes/cupy_bi_wkv7.md).

I/O dtypes float32, bfloat16, float16, handled as raw 16-bit words in the kernel (bf16 widened
by a shift and narrowed with round-to-nearest-even in integer code; fp16 through ``cvt``), so
the source includes no CUDA header and compiles with a bare NVRTC. State and all accumulation
are fp32; ``d`` is computed with the accurate ``expf``. Head size 64 (the kernel is templated
on ``N``; only 64 is instantiated). Any ``T >= 1``.

Training (``backward=True``): when grad mode is on and an input requires grad, ``cupy_cuda``
runs an autograd Function (``_bi_wkv7_cupy_train``): the forward is this kernel with saving on
(``bi_wkv7_train_kernel``: same body, grid and ``SPLIT``, plus fp32 ``sa`` and a state checkpoint
every 8 (float32) / 16 (16-bit I/O) scan steps per direction: 2304 / 1280 B per (token, head) and
direction, see :func:`saved_bytes`), the backward one launch of ``bi_wkv7_bwd_kernel``
(``bi_wkv7_cupy_bwd.cu``: grid ``2 * B * H``, both directions and the gate merge, fp32
accumulation). ``out=`` is refused then. Under ``no_grad`` the inference kernel runs and saves
nothing; it shares the kernel body with the save code compiled out.

Compile caching: one ``cupy.RawModule`` per (dtype, N, device) with the four ``SPLIT``
instantiations as name expressions (``bi_wkv7_kernel<wkv_bf16, 64, 8>`` ...), compiled by NVRTC
(``--std=c++17``; CuPy adds ``-ftz=true`` and ``-arch=sm_XX``) on the first call for that dtype
and device; the ``RawKernel`` handles are cached per (dtype, N, SPLIT, device), and CuPy also
keeps the cubin in its on-disk kernel cache, so later processes skip NVRTC. The first call's
time includes the compile.

Zero copy and streams: torch tensors are passed as raw device pointers (what their
``__cuda_array_interface__`` reports; CuPy has no bfloat16 dtype, so no CuPy array is built),
and the kernel is launched on torch's current stream through ``cupy.cuda.ExternalStream``, so
the harness's CUDA-event timer measures it like every other implementation. Inputs whose data
pointer is not 16-byte aligned (a view at an odd offset) are copied once to aligned storage.

Without a GPU: :func:`compile_report` compiles every instantiation for ``sm_<cc>`` through
NVRTC (``cuda.core``) or nvcc and reports registers, shared memory and spills; and
``tests/impls/cuda_host/`` compiles the same ``.cu`` with g++ through a CUDA shim header and runs
it on the CPU against the float64 reference.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wkvbench.impls import _cupy, _gpu

NAME = "cupy_cuda"
HEAD_SIZES = (64,)
SPLITS = (1, 2, 4, 8)
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
KERNEL_PATH = Path(__file__).with_suffix(".cu")
KERNEL = "bi_wkv7_kernel"
NVRTC_OPTIONS = _cupy.NVRTC_OPTIONS
_IO_TYPE = {torch.float32: "float", torch.bfloat16: "wkv_bf16", torch.float16: "wkv_fp16"}
_MANGLED_IO = {"f": torch.float32, "8wkv_bf16": torch.bfloat16, "8wkv_fp16": torch.float16}


@functools.lru_cache(maxsize=1)
def kernel_source() -> str:
    """The CUDA C source of the kernel (the package file ``bi_wkv7_cupy.cu``, its header ``wkv_io.cuh`` inlined)."""
    return _cupy.cuda_source(KERNEL_PATH)


def kernel_name(dtype: torch.dtype, n: int, split: int) -> str:
    """NVRTC name expression of one instantiation, e.g. ``bi_wkv7_kernel<wkv_bf16, 64, 8>``."""
    return f"{KERNEL}<{_IO_TYPE[dtype]}, {n}, {split}>"


def chunk_tokens(dtype: torch.dtype, split: int) -> int:
    """Tokens staged per chunk (mirrors ``wkv_chunk<IO, SPLIT>::TC`` in the .cu)."""
    return 4 if split == 1 or (dtype == torch.float32 and split == 2) else 8


def shared_bytes(dtype: torch.dtype, n: int, split: int) -> int:
    """Static shared memory of one block: ``2*TC*(5N + R) + 2*TC`` floats."""
    tc = chunk_tokens(dtype, split)
    return 4 * (2 * tc * 5 * n + 2 * tc * (n // split) + 2 * tc)


# Per-step cost model behind pick_split (N = 64; predictions, not measurements): cycles of one SM
# per time step for instruction issue, shared-memory return bandwidth and one warp's latency.
# Derivation: docs/notes/cupy_bi_wkv7.md.
_ISSUE_CYCLES = {1: 490, 2: 310, 4: 200, 8: 165}
_SHARED_CYCLES = {1: 640, 2: 320, 4: 320, 8: 160}
_LATENCY_CYCLES = {1: 475, 2: 265, 4: 215, 8: 200}


def predicted_step_cycles(bh: int, num_sms: int, split: int) -> float:
    """Predicted cycles per time step for ``B*H = bh`` heads at this SPLIT (blocks per SM share it)."""
    per_sm = math.ceil(bh * split / max(1, num_sms))
    return max(_LATENCY_CYCLES[split], per_sm * max(_ISSUE_CYCLES[split], _SHARED_CYCLES[split]))


def pick_split(bh: int, num_sms: int) -> int:
    """SPLIT (blocks per head) for ``B*H = bh`` heads on ``num_sms`` SMs, from the cost model.

    A larger SPLIT must win by 10% to be chosen: it multiplies the L2 reads of the key-side
    vectors, which the model does not charge.
    """
    if bh < 1 or num_sms < 1:
        raise ValueError(f"bh/num_sms: must be >= 1, got {bh}, {num_sms}")
    best = 1
    for split in SPLITS[1:]:
        if predicted_step_cycles(bh, num_sms, split) < 0.9 * predicted_step_cycles(bh, num_sms, best):
            best = split
    return best


# ----------------------------------------------------------------------------- launch
_check = _cupy.check
_KERNELS = _cupy.KernelCache(
    NAME, lambda: kernel_source(), [[kernel_name(dt, n, s) for s in SPLITS] for dt in DTYPES for n in HEAD_SIZES]
)


def _kernel(dtype: torch.dtype, n: int, split: int, device_index: int):
    return _KERNELS.kernel(kernel_name(dtype, n, split), device_index)


def _aligned(x: torch.Tensor) -> torch.Tensor:
    x = x.contiguous()
    return x if x.data_ptr() % 16 == 0 else x.clone()


def _validate(r, w, k, v, a, b, g, out, split) -> None:
    if split is not None and split not in SPLITS:
        raise ValueError(f"split: must be one of {SPLITS} or None, got {split!r}")
    _cupy.validate_bi_wkv7_call(NAME, DTYPES, HEAD_SIZES, r, w, k, v, a, b, g, out)


@_cupy.register_bi_wkv7(
    NAME,
    DTYPES,
    HEAD_SIZES,
    priority=25,
    backward=True,
    description="CUDA C via NVRTC/CuPy: both directions + gate merge in one launch, fp32 state in registers; "
    "differentiable (fused backward, one launch)",
)
def cupy_cuda(r, w, k, v, a, b, g=None, *, out=None, split: int | None = None):
    """CUDA C via NVRTC/CuPy: both directions and the gate merge in one launch, fp32 state in registers.

    Differentiable: when grad mode is on and an input requires grad, the training forward (which
    saves ``sa`` and state checkpoints) and the fused backward run (``_bi_wkv7_cupy_train``);
    ``out=`` is refused then. Otherwise the inference launch, which saves nothing.
    """
    _validate(r, w, k, v, a, b, g, out, split)
    idx = _KERNELS.device_index(r.device)
    if _gpu.training_call(out, r, w, k, v, a, b, g):
        from wkvbench.impls import _bi_wkv7_cupy_train as train

        sms = _gpu.sm_count(torch.device("cuda", idx))
        return train.bi_wkv7_train(r, w, k, v, a, b, g, launcher=train.cupy_launcher, split=split, num_sms=sms)
    plan = launch_plan(r, w, k, v, a, b, g, out=out, split=split, num_sms=_gpu.sm_count(torch.device("cuda", idx)))
    fn = _kernel(r.dtype, r.shape[-1], plan.split, idx)
    _cupy.launch(fn, plan.grid, plan.block, plan.args, r.device, idx)
    return plan.y


@dataclass(frozen=True)
class LaunchPlan:
    """What one launch gets: SPLIT, grid, block, the kernel arguments, and the tensors behind them."""

    split: int
    grid: tuple[int]
    block: tuple[int]
    args: tuple  # numpy scalars in the kernel's parameter order (pointers as uint64)
    y: torch.Tensor
    keep: tuple  # tensors the pointers refer to (aligned copies, the fp32 scratch)


def launch_plan(r, w, k, v, a, b, g=None, *, out=None, split: int | None = None, num_sms: int = 132) -> LaunchPlan:
    """Allocate the output (and the fp32 partial buffer for 16-bit I/O) and build the launch.

    Device-agnostic (the tests launch the same plan on the host emulation of the kernel).
    """
    B, T, H, N = r.shape
    xs = [_aligned(x) for x in (r, w, k, v, a, b)]
    gg = None if g is None else g.contiguous()
    y = torch.empty_like(xs[0]) if out is None else out
    # float32: the partial lives in y itself (same element, same lane reads and rewrites it)
    part = y if r.dtype == torch.float32 else torch.empty(r.shape, dtype=torch.float32, device=r.device)
    sp = split if split is not None else pick_split(B * H, num_sms)
    args = (
        *(np.uint64(x.data_ptr()) for x in xs),
        np.uint64(0 if gg is None else gg.data_ptr()),
        np.uint64(y.data_ptr()),
        np.uint64(part.data_ptr()),
        np.int32(B),
        np.int32(T),
        np.int32(H),
    )
    return LaunchPlan(sp, (B * H * sp,), (2 * N,), args, y, (*xs, gg, part))


# ----------------------------------------------------------------------------- compile report
_MANGLED = re.compile(rf"{KERNEL}I(f|8wkv_bf16|8wkv_fp16)Li(\d+)ELi(\d+)E")


def _instantiation(name: str) -> str:
    """The explicit instantiation nvcc needs for the name expression ``name``."""
    io_t = name[name.index("<") + 1 : name.index(",")]
    return (
        f"template __global__ void {name}(const {io_t}*, const {io_t}*, const {io_t}*, const {io_t}*, "
        f"const {io_t}*, const {io_t}*, const {io_t}*, {io_t}*, float*, int, int, int);"
    )


def saved_bytes(B: int, T: int, H: int, N: int = 64, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes the training forward saves for the backward (``_bi_wkv7_cupy_train.saved_bytes``)."""
    from wkvbench.impls import _bi_wkv7_cupy_train as train

    return train.saved_bytes(B, T, H, N, dtype)


def compile_report(
    cc: int = 90, compiler: str = "auto", dtypes=DTYPES, splits=SPLITS, training: bool = True
) -> list[dict]:
    """Compile every (dtype, SPLIT) instantiation for ``sm_<cc>`` without a GPU; one dict per kernel.

    With ``training`` the training kernels follow (forward with saving at every SPLIT, backward;
    ``_bi_wkv7_cupy_train.compile_report``), their config saying ``kind=fwd_save`` / ``kind=bwd``.

    ``compiler``: ``"nvrtc"`` (cuda.core + nvidia-cuda-nvrtc: what CuPy uses at run time),
    ``"nvcc"``, or ``"auto"`` (NVRTC, else nvcc). Keys: impl, kernel, config, registers,
    shared_bytes, local_bytes (stack frame + spill stores), spill_bytes, compiler, name. With neither
    compiler installed the row says ``skipped`` and which extra brings NVRTC; a source that does
    not compile raises.
    """
    names = [kernel_name(dt, n, s) for dt in dtypes for n in HEAD_SIZES for s in splits]
    rows = _cupy.compile_rows(NAME, kernel_source(), names, cc, compiler, _instantiation, _MANGLED, _describe)
    if not training or (rows and "skipped" in rows[0]):
        return rows
    from wkvbench.impls import _bi_wkv7_cupy_train as train

    return rows + train.compile_report(cc, compiler, dtypes)


def _describe(m: re.Match) -> tuple[str, str, str]:
    """(kernel, config, name expression) of a compiled entry whose mangled name ``_MANGLED`` matched."""
    dt, n, split = _MANGLED_IO[m.group(1)], int(m.group(2)), int(m.group(3))
    config = f"dtype={str(dt).replace('torch.', '')} N={n} SPLIT={split} TC={chunk_tokens(dt, split)} block={2 * n}"
    return KERNEL, config, kernel_name(dt, n, split)
