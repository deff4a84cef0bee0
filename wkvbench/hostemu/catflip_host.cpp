// Host driver for wkvbench/impls/bi_wkv7_catflip/bi_wkv7_catflip.cu: the kernel source is included unchanged after
// the CUDA shim, and its three kernels (inference forward, training forward, backward) are launched
// on the CPU with the grid and block the Python module computed. Loaded from the tests and
// hostemu/launch.py through ctypes. dtype: 0 float32, 1 bfloat16, 2 float16 (16-bit types as raw bits).
#include "cuda_shim.h"

#include "bi_wkv7_catflip.cu"

namespace {
constexpr int N = 64;

template <typename IO, bool SAVE>
void fwd(unsigned grid, unsigned block, void* const* p, int B2, int T, int H) {
    cuda_host::launch(&wkv7_catflip_fwd<IO, N, SAVE>, grid, block, static_cast<const IO*>(p[0]),
                      static_cast<const IO*>(p[1]), static_cast<const IO*>(p[2]), static_cast<const IO*>(p[3]),
                      static_cast<const IO*>(p[4]), static_cast<const IO*>(p[5]), static_cast<IO*>(p[6]),
                      static_cast<float*>(p[7]), static_cast<float*>(p[8]), B2, T, H);
}

template <typename IO>
void bwd(unsigned grid, unsigned block, void* const* p, int B2, int T, int H) {
    cuda_host::launch(&wkv7_catflip_bwd<IO, N>, grid, block, static_cast<const IO*>(p[0]),
                      static_cast<const IO*>(p[1]), static_cast<const IO*>(p[2]), static_cast<const IO*>(p[3]),
                      static_cast<const IO*>(p[4]), static_cast<const IO*>(p[5]), static_cast<const IO*>(p[6]),
                      static_cast<const float*>(p[7]), static_cast<const float*>(p[8]), static_cast<IO*>(p[9]),
                      static_cast<IO*>(p[10]), static_cast<IO*>(p[11]), static_cast<IO*>(p[12]),
                      static_cast<IO*>(p[13]), static_cast<IO*>(p[14]), B2, T, H);
}
}  // namespace

extern "C" {
// Forward: p = {r, w, k, v, a, b, y, sa, ckpt} (sa and ckpt may be null when save == 0).
int cf_host_fwd(int dtype, int save, unsigned grid, unsigned block, void* const* p, int B2, int T, int H) {
    switch (dtype * 2 + (save ? 1 : 0)) {
        case 0: fwd<float, false>(grid, block, p, B2, T, H); return 0;
        case 1: fwd<float, true>(grid, block, p, B2, T, H); return 0;
        case 2: fwd<wkv_bf16, false>(grid, block, p, B2, T, H); return 0;
        case 3: fwd<wkv_bf16, true>(grid, block, p, B2, T, H); return 0;
        case 4: fwd<wkv_fp16, false>(grid, block, p, B2, T, H); return 0;
        case 5: fwd<wkv_fp16, true>(grid, block, p, B2, T, H); return 0;
        default: return -1;
    }
}

// Backward: p = {r, w, k, v, a, b, dy, sa, ckpt, dr, dw, dk, dv, da, db}.
int cf_host_bwd(int dtype, unsigned grid, unsigned block, void* const* p, int B2, int T, int H) {
    switch (dtype) {
        case 0: bwd<float>(grid, block, p, B2, T, H); return 0;
        case 1: bwd<wkv_bf16>(grid, block, p, B2, T, H); return 0;
        case 2: bwd<wkv_fp16>(grid, block, p, B2, T, H); return 0;
        default: return -1;
    }
}
}
