// I/O element types and their float conversions, shared by the CUDA C kernels of wkvbench
// (bi_wkv7_cupy.cu, bi_wkv7_cupy_bwd.cu, bi_wkv7_catflip.cu), and the per-step pieces of the WKV7
// backward that bi_wkv7_cupy_bwd.cu and bi_wkv7_catflip.cu share (end of the file).
//
// The kernels take float32, bfloat16 or float16 tensors and compute in fp32. The 16-bit types
// are raw bits here, so no CUDA header (cuda_fp16.h / cuda_bf16.h) is needed: the kernels compile
// with a bare NVRTC, and the host emulation in wkvbench/hostemu/ (g++ after cuda_shim.h)
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

// ----------------------------------------------------------------------------- backward pieces
// One scan step of the WKV7 backward (math: the comments of bi_wkv7_cupy_bwd.cu and
// bi_wkv7_catflip.cu, docs/spec.md section 1), in the 2N-thread layout both backward kernels use:
// a "column" thread owns column i of S_s (ST[j] = S[j][i]) and of dS (dS[j] = dS[j][i]); a "row"
// thread owns row i of dS (dSr[j] = dS[i][j]). s_*: the step's vectors staged in shared memory.
// Forced inline with fully unrolled loops, so the arrays stay in registers.

// Before the last step: column threads load column i of S after the last step (`last`: that
// checkpoint, this thread's column; element j at last[j * N]); dS and the row threads' array are 0.
template <int N>
__device__ __forceinline__ void wkv7_bwd_init(float (&ST)[N], float (&dS)[N], bool col, const float* last) {
#pragma unroll
    for (int j = 0; j < N; ++j) {
        ST[j] = 0.f;
        dS[j] = 0.f;
    }
    if (col) {
#pragma unroll
        for (int j = 0; j < N; ++j) ST[j] = last[(long long)j * N];
    }
}

// Row thread: dS += dy rg^T (rg: r, times the direction's gate where there is one); dv += dS k.
// Returns dsa = dS b. The hand-over dS <- dS diag(d) + dsa a^T stays with the caller.
template <int N>
__device__ __forceinline__ float wkv7_bwd_row(float (&dSr)[N], float dyi, const float* s_rg, const float* s_k,
                                              const float* s_b, float& dvi) {
    float dsai = 0.f;
#pragma unroll
    for (int j = 0; j < N; ++j) {
        dSr[j] = fmaf(dyi, s_rg[j], dSr[j]);
        dvi = fmaf(dSr[j], s_k[j], dvi);
        dsai = fmaf(dSr[j], s_b[j], dsai);
    }
    return dsai;
}

// Column thread, one pass over j (each staged value is read once, so none is kept live across
// loops): q += S_s^T dy; dS += dy rg^T; dk += dS^T v; db += dS^T sa; ST <- S_{s-1} = undo step s =
// (S_s - v k^T - sa b^T) diag(1/d); dd += sum_j dS[j][i] S_{s-1}[j][i]. When s % CP == 0, S_{s-1}
// is re-seeded from the checkpoint (0 before step 0) and dd redone, so the reconstruction by
// division runs at most CP - 1 steps. cp: this thread's column of checkpoint slot 0, which holds S
// after step CP - 1 (slot c at cp + c * N * N, element j at j * N). q, dk, db, dd come in as 0.
template <int N, int CP>
__device__ __forceinline__ void wkv7_bwd_column(float (&ST)[N], float (&dS)[N], const float* s_dy, const float* s_v,
                                                const float* s_sa, float rgi, float ki, float bi, float di, int s,
                                                const float* cp, float& qi, float& dki, float& dbi, float& ddi) {
    const float inv_d = 1.f / di;
#pragma unroll
    for (int j = 0; j < N; ++j) {
        const float vj = s_v[j], saj = s_sa[j], dyj = s_dy[j];
        qi = fmaf(ST[j], dyj, qi);
        dS[j] = fmaf(dyj, rgi, dS[j]);
        dki = fmaf(dS[j], vj, dki);
        dbi = fmaf(dS[j], saj, dbi);
        ST[j] = fmaf(-saj, bi, fmaf(-vj, ki, ST[j])) * inv_d;
        ddi = fmaf(dS[j], ST[j], ddi);
    }
    if (s % CP == 0) {  // re-seed: S_{s-1} is the checkpoint (or 0 before step 0); redo dd
        const float* prev = cp + (long long)(s / CP - 1) * N * N;
        ddi = 0.f;
#pragma unroll
        for (int j = 0; j < N; ++j) {
            ST[j] = s == 0 ? 0.f : prev[(long long)j * N];
            ddi = fmaf(dS[j], ST[j], ddi);
        }
    }
}

// Column thread, after every row's dsa is in s_dsa: returns da = S_{s-1}^T dsa and hands dS over
// to the previous step, dS <- dS diag(d) + dsa a^T (column i).
template <int N>
__device__ __forceinline__ float wkv7_bwd_da(const float (&ST)[N], float (&dS)[N], const float* s_dsa, float di,
                                             float ai) {
    float dai = 0.f;
#pragma unroll
    for (int j = 0; j < N; ++j) {
        dai = fmaf(ST[j], s_dsa[j], dai);
        dS[j] = fmaf(dS[j], di, s_dsa[j] * ai);
    }
    return dai;
}

#endif  // WKV_IO_CUH
