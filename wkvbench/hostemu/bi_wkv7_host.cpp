// Host driver for wkvbench/impls/bi_wkv7_cupy/bi_wkv7_cupy.cu: the kernel source is included unchanged after
// the CUDA shim and launched on the CPU, either with the geometry the Python module uses (grid
// B * H * SPLIT, block 2 * N) or with an explicit one taken from its launch plan. Loaded from the
// tests and wkvbench/hostemu/launch.py through ctypes.
#include "cuda_shim.h"

#include "bi_wkv7_cupy.cu"

namespace {
template <typename IO, int SPLIT>
int run(unsigned grid, unsigned block, const void* r, const void* w, const void* k, const void* v, const void* a,
        const void* b, const void* g, void* y, float* part, int B, int T, int H) {
    constexpr int N = 64;
    const auto* R = static_cast<const IO*>(r);
    cuda_host::launch(&bi_wkv7_kernel<IO, N, SPLIT>, grid, block, R,
                      static_cast<const IO*>(w), static_cast<const IO*>(k), static_cast<const IO*>(v),
                      static_cast<const IO*>(a), static_cast<const IO*>(b), static_cast<const IO*>(g),
                      static_cast<IO*>(y), part, B, T, H);
    return 0;
}

template <typename IO>
int run_split(int split, unsigned grid, unsigned block, const void* r, const void* w, const void* k, const void* v,
              const void* a, const void* b, const void* g, void* y, float* part, int B, int T, int H) {
    switch (split) {
        case 1: return run<IO, 1>(grid, block, r, w, k, v, a, b, g, y, part, B, T, H);
        case 2: return run<IO, 2>(grid, block, r, w, k, v, a, b, g, y, part, B, T, H);
        case 4: return run<IO, 4>(grid, block, r, w, k, v, a, b, g, y, part, B, T, H);
        case 8: return run<IO, 8>(grid, block, r, w, k, v, a, b, g, y, part, B, T, H);
        default: return -2;
    }
}
}  // namespace

extern "C" {
// Launch with an explicit geometry (the one cupy_cuda's launch plan computed), arguments in the
// kernel's order. dtype: 0 float32, 1 bfloat16, 2 float16 (16-bit types as raw bits).
int wkv_host_launch(int dtype, int split, unsigned grid, unsigned block, const void* r, const void* w, const void* k,
                    const void* v, const void* a, const void* b, const void* g, void* y, float* part, int B, int T,
                    int H) {
    switch (dtype) {
        case 0: return run_split<float>(split, grid, block, r, w, k, v, a, b, g, y, part, B, T, H);
        case 1: return run_split<wkv_bf16>(split, grid, block, r, w, k, v, a, b, g, y, part, B, T, H);
        case 2: return run_split<wkv_fp16>(split, grid, block, r, w, k, v, a, b, g, y, part, B, T, H);
        default: return -1;
    }
}

// The module's geometry: grid B * H * SPLIT, block 2 * N. g may be null (gate 0.5).
int wkv_host_bi_wkv7(int dtype, int split, const void* r, const void* w, const void* k, const void* v, const void* a,
                     const void* b, const void* g, void* y, float* part, int B, int T, int H) {
    return wkv_host_launch(dtype, split, static_cast<unsigned>(B * H * split), 128u, r, w, k, v, a, b, g, y, part, B,
                           T, H);
}

// The kernel's own bfloat16 conversions (the same code the device runs), for a direct check.
void wkv_host_float_to_bf16(const float* x, unsigned short* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = wkv_float_to_bf16(x[i]);
}
void wkv_host_bf16_to_float(const unsigned short* x, float* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = wkv_bf16_to_float(x[i]);
}
}
