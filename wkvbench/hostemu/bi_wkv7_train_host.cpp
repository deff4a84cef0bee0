// Host driver for cupy_cuda's training kernels: bi_wkv7_train_kernel (wkvbench/impls/bi_wkv7_cupy/bi_wkv7_cupy.cu)
// and bi_wkv7_bwd_kernel (wkvbench/impls/bi_wkv7_cupy/bi_wkv7_cupy_bwd.cu), both included unchanged after the
// CUDA shim and launched on the CPU with the grid and block the Python side computed. Loaded from
// the tests and hostemu/launch.py through ctypes. dtype: 0 float32, 1 bfloat16, 2 float16 (16-bit types as raw bits);
// the checkpoint interval is the one the module uses (8 for float32, 16 for the 16-bit types).
#include "cuda_shim.h"

#include "bi_wkv7_cupy.cu"
#include "bi_wkv7_cupy_bwd.cu"

namespace {
constexpr int N = 64;

template <typename IO>
constexpr int cp_tokens() {
    return sizeof(IO) == 4 ? 8 : 16;
}

template <typename IO, int SPLIT>
void fwd(unsigned grid, unsigned block, void* const* p, int B, int T, int H) {
    cuda_host::launch(&bi_wkv7_train_kernel<IO, N, SPLIT, cp_tokens<IO>()>, grid, block,
                      static_cast<const IO*>(p[0]), static_cast<const IO*>(p[1]), static_cast<const IO*>(p[2]),
                      static_cast<const IO*>(p[3]), static_cast<const IO*>(p[4]), static_cast<const IO*>(p[5]),
                      static_cast<const IO*>(p[6]), static_cast<IO*>(p[7]), static_cast<float*>(p[8]),
                      static_cast<float*>(p[9]), static_cast<float*>(p[10]), B, T, H);
}

template <typename IO>
int fwd_split(int split, unsigned grid, unsigned block, void* const* p, int B, int T, int H) {
    switch (split) {
        case 1: fwd<IO, 1>(grid, block, p, B, T, H); return 0;
        case 2: fwd<IO, 2>(grid, block, p, B, T, H); return 0;
        case 4: fwd<IO, 4>(grid, block, p, B, T, H); return 0;
        case 8: fwd<IO, 8>(grid, block, p, B, T, H); return 0;
        default: return -2;
    }
}

template <typename IO>
void bwd(unsigned grid, unsigned block, void* const* p, int B, int T, int H) {
    cuda_host::launch(&bi_wkv7_bwd_kernel<IO, N, cp_tokens<IO>()>, grid, block, static_cast<const IO*>(p[0]),
                      static_cast<const IO*>(p[1]), static_cast<const IO*>(p[2]), static_cast<const IO*>(p[3]),
                      static_cast<const IO*>(p[4]), static_cast<const IO*>(p[5]), static_cast<const IO*>(p[6]),
                      static_cast<const IO*>(p[7]), static_cast<const float*>(p[8]),
                      static_cast<const float*>(p[9]), static_cast<float*>(p[10]), static_cast<float*>(p[11]),
                      static_cast<float*>(p[12]), static_cast<float*>(p[13]), static_cast<float*>(p[14]),
                      static_cast<float*>(p[15]), static_cast<float*>(p[16]), B, T, H);
}
}  // namespace

extern "C" {
// Training forward: p = {r, w, k, v, a, b, g (may be null), y, part, sa, ckpt}.
int cupy_train_host_fwd(int dtype, int split, unsigned grid, unsigned block, void* const* p, int B, int T, int H) {
    switch (dtype) {
        case 0: return fwd_split<float>(split, grid, block, p, B, T, H);
        case 1: return fwd_split<wkv_bf16>(split, grid, block, p, B, T, H);
        case 2: return fwd_split<wkv_fp16>(split, grid, block, p, B, T, H);
        default: return -1;
    }
}

// Backward: p = {r, w, k, v, a, b, g (may be null), dy, sa, ckpt, dr, dw, dk, dv, da, db, dg}.
int cupy_train_host_bwd(int dtype, unsigned grid, unsigned block, void* const* p, int B, int T, int H) {
    switch (dtype) {
        case 0: bwd<float>(grid, block, p, B, T, H); return 0;
        case 1: bwd<wkv_bf16>(grid, block, p, B, T, H); return 0;
        case 2: bwd<wkv_fp16>(grid, block, p, B, T, H); return 0;
        default: return -1;
    }
}
}
