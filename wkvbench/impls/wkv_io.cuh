// I/O element types and their float conversions, shared by the CUDA C kernels of wkvbench
// (bi_wkv7_cupy.cu, bi_wkv7_catflip.cu).
//
// The kernels take float32, bfloat16 or float16 tensors and compute in fp32. The 16-bit types
// are raw bits here, so no CUDA header (cuda_fp16.h / cuda_bf16.h) is needed: the kernels compile
// with a bare NVRTC, and the host emulation in tests/impls/cuda_host/ (g++ after cuda_shim.h)
// compiles the same code. The Python side inlines this file where a kernel includes it
// (wkvbench/impls/_cupy.py, cuda_source), so NVRTC and nvcc get one self-contained source.
#ifndef WKV_IO_CUH
#define WKV_IO_CUH

// 16-bit storage types as raw bits.
struct wkv_bf16 {
    unsigned short bits;
};
struct wkv_fp16 {
    unsigned short bits;
};

#ifndef WKV_HOST_EMULATION
// Hardware conversions for IEEE half (one cvt each). The host emulation supplies its own.
__device__ __forceinline__ float wkv_half_to_float(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ unsigned short wkv_float_to_half(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
#endif

// bfloat16 <-> float in integer arithmetic (the same code runs on the device and in the host
// emulation): widening is a shift; narrowing rounds to nearest even and keeps NaN a NaN.
__device__ __forceinline__ float wkv_bf16_to_float(unsigned int bits16) { return __uint_as_float(bits16 << 16); }
__device__ __forceinline__ unsigned short wkv_float_to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}

// One element of I/O type IO to and from fp32.
template <typename IO>
struct wkv_scalar;

template <>
struct wkv_scalar<float> {
    __device__ __forceinline__ static float to_float(float x) { return x; }
    __device__ __forceinline__ static float from_float(float x) { return x; }
};

template <>
struct wkv_scalar<wkv_bf16> {
    __device__ __forceinline__ static float to_float(wkv_bf16 x) { return wkv_bf16_to_float(x.bits); }
    __device__ __forceinline__ static wkv_bf16 from_float(float x) { return {wkv_float_to_bf16(x)}; }
};

template <>
struct wkv_scalar<wkv_fp16> {
    __device__ __forceinline__ static float to_float(wkv_fp16 x) { return wkv_half_to_float(x.bits); }
    __device__ __forceinline__ static wkv_fp16 from_float(float x) { return {wkv_float_to_half(x)}; }
};

#endif  // WKV_IO_CUH
