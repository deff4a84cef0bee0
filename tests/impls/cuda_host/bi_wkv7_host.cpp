// Host driver for wkvbench/impls/bi_wkv7_cupy.cu: the kernel source is included unchanged after
// the CUDA shim and launched with the geometry the Python module uses (grid B * H * SPLIT,
// block 2 * N). Loaded from the tests through ctypes.
#include "cuda_shim.h"

#include "bi_wkv7_cupy.cu"

namespace {
template <typename IO, int SPLIT>
int run(const void* r, const void* w, const void* k, const void* v, const void* a, const void* b, const void* g,
        void* y, float* part, int B, int T, int H) {
    constexpr int N = 64;
    const auto* R = static_cast<const IO*>(r);
    cuda_host::launch(&bi_wkv7_kernel<IO, N, SPLIT>, static_cast<unsigned>(B * H * SPLIT), 2u * N, R,
                      static_cast<const IO*>(w), static_cast<const IO*>(k), static_cast<const IO*>(v),
                      static_cast<const IO*>(a), static_cast<const IO*>(b), static_cast<const IO*>(g),
                      static_cast<IO*>(y), part, B, T, H);
    return 0;
}

template <typename IO>
int run_split(int split, const void* r, const void* w, const void* k, const void* v, const void* a, const void* b,
              const void* g, void* y, float* part, int B, int T, int H) {
    switch (split) {
        case 1: return run<IO, 1>(r, w, k, v, a, b, g, y, part, B, T, H);
        case 2: return run<IO, 2>(r, w, k, v, a, b, g, y, part, B, T, H);
        case 4: return run<IO, 4>(r, w, k, v, a, b, g, y, part, B, T, H);
        case 8: return run<IO, 8>(r, w, k, v, a, b, g, y, part, B, T, H);
        default: return -2;
    }
}
}  // namespace

extern "C" {
// dtype: 0 float32, 1 bfloat16, 2 float16 (16-bit types as raw bits). g may be null (0.5).
int wkv_host_bi_wkv7(int dtype, int split, const void* r, const void* w, const void* k, const void* v, const void* a,
                     const void* b, const void* g, void* y, float* part, int B, int T, int H) {
    switch (dtype) {
        case 0: return run_split<float>(split, r, w, k, v, a, b, g, y, part, B, T, H);
        case 1: return run_split<wkv_bf16>(split, r, w, k, v, a, b, g, y, part, B, T, H);
        case 2: return run_split<wkv_fp16>(split, r, w, k, v, a, b, g, y, part, B, T, H);
        default: return -1;
    }
}

// The kernel's own bfloat16 conversions (the same code the device runs), for a direct check.
void wkv_host_float_to_bf16(const float* x, unsigned short* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = wkv_float_to_bf16(x[i]);
}
void wkv_host_bf16_to_float(const unsigned short* x, float* out, long n) {
    for (long i = 0; i < n; ++i) out[i] = wkv_bf16_to_float(x[i]);
}
}
