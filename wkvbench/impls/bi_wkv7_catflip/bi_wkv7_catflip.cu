// Causal RWKV-7 (WKV7) forward and backward kernels of the official training kind, for
// wkvbench's `audiorwkv_catflip` (AudioRWKV's released Bi-WKV7 construction: the inputs and their
// time-flipped copies are concatenated along the batch, these causal kernels run once over the
// 2B sequences, and the gate merge happens in PyTorch). Written from the recurrence and its
// derivative (docs/spec.md section 1); the construction, launch geometry and saved bytes are
// described in docs/notes/training_kernels.md (its last section).
//
// The file includes no CUDA header (only wkv_io.cuh, which the Python side inlines), so it
// compiles with a bare NVRTC, and uses only what the host emulation in wkvbench/hostemu/
// provides (the same source is compiled there with g++ after cuda_shim.h and run on the CPU).
//
// Per (sequence, head) the state S is N x N, S[i][j]: value row i, key column j.
//     d = exp(-exp(w)),  sa = S a,  S <- S diag(d) + sa b^T + v k^T,  y = S r
// Forward: one block of N threads per (sequence, head); thread i owns row i of S in N fp32
// registers. The training forward (SAVE) also writes sa (fp32, [B2, T, H, N]) and the state after
// every token t with t % CP == CP - 1 (fp32, [B2, H, T / CP, N, N], row-major S; CP = cf_cp<IO>),
// which needs T % CP == 0 (the Python side pads).
//
// Backward, walking t = T-1 .. 0 with dS the gradient of the loss w.r.t. S_t:
//     dS += dy r^T;  dr = S_t^T dy;  dv = dS k;  dk = dS^T v;  db = dS^T sa;  dsa = dS b
//     S_{t-1} = (S_t - v k^T - sa b^T) diag(1/d)    (or the checkpoint S_{t-1} when t % CP == 0,
//                                                     or 0 when t == 0)
//     da = S_{t-1}^T dsa;  dd[j] = sum_i dS[i][j] S_{t-1}[i][j];  dw = dd * d * (-exp(w))
//     dS <- dS diag(d) + dsa a^T
// Block of 2N threads: a "column" thread owns column i of S and of dS, a "row" thread row i of
// dS (see the kernel), so every product above is a per-thread dot product. The per-step row,
// column and da passes are wkv_io.cuh's wkv7_bwd_* functions, shared with bi_wkv7_cupy_bwd.cu.
// Re-seeding from the checkpoint at t % CP == 0 limits the reconstruction by division to at
// most CP - 1 steps (each one divides rounding errors by d >= 0.545 in the RWKV-7 domain).

#include "wkv_io.cuh"  // wkv_bf16, wkv_fp16 and their float conversions

// Tokens per state checkpoint: 16 (the official kernel's value) for 16-bit I/O; 8 for float32 I/O,
// where the 15-step reconstruction by division would cost more than the float32 accuracy bar
// allows at strong decay (emulated: relative error 1.7e-4 in da/dw at d ~ 0.55; 7 steps keep the
// amplification 1.83^7 ~ 70 instead of ~8700). The Python side pads T to a multiple of 16.
template <typename IO>
struct cf_cp {
    static constexpr int value = sizeof(IO) == 4 ? 8 : 16;
};

// Scalar loads and stores through fp32.
template <typename IO>
struct cf_io {
    __device__ __forceinline__ static float load(const IO* p) { return wkv_scalar<IO>::to_float(*p); }
    __device__ __forceinline__ static void store(IO* p, float x) { *p = wkv_scalar<IO>::from_float(x); }
};

// grid: B2 * H blocks (block = seq * H + h); block: N threads (thread i: value row i).
// r, w, k, v, a, b, y: [B2, T, H, N] in IO. SAVE: sa_out fp32 [B2, T, H, N] and ckpt fp32
// [B2, H, T / CP, N, N] (T % CP == 0); otherwise both may be null and T is any length.
template <typename IO, int N, bool SAVE>
__global__ void __launch_bounds__(N, 1)
    wkv7_catflip_fwd(const IO* __restrict__ r, const IO* __restrict__ w, const IO* __restrict__ k,
                     const IO* __restrict__ v, const IO* __restrict__ a, const IO* __restrict__ b, IO* __restrict__ y,
                     float* __restrict__ sa_out, float* __restrict__ ckpt, int B2, int T, int H) {
    __shared__ __align__(16) float s_r[N], s_d[N], s_k[N], s_a[N], s_b[N];
    constexpr int CP = cf_cp<IO>::value;
    const int i = threadIdx.x;
    const int seq = blockIdx.x / H;
    const int h = blockIdx.x - seq * H;
    if (seq >= B2) return;  // whole block: uniform
    const long long tok = (long long)H * N;
    const long long base = (long long)seq * T * tok + (long long)h * N + i;
    float* cp = SAVE ? ckpt + ((long long)seq * H + h) * (long long)(T / CP) * N * N + (long long)i * N : nullptr;

    float S[N];
#pragma unroll
    for (int j = 0; j < N; ++j) S[j] = 0.f;

    for (int t = 0; t < T; ++t) {
        const long long idx = base + (long long)t * tok;
        __syncthreads();  // everyone is done reading the previous token's vectors
        s_r[i] = cf_io<IO>::load(r + idx);
        s_d[i] = expf(-expf(cf_io<IO>::load(w + idx)));
        s_k[i] = cf_io<IO>::load(k + idx);
        s_a[i] = cf_io<IO>::load(a + idx);
        s_b[i] = cf_io<IO>::load(b + idx);
        const float vi = cf_io<IO>::load(v + idx);
        __syncthreads();

        float sa = 0.f;
#pragma unroll
        for (int j = 0; j < N; ++j) sa = fmaf(S[j], s_a[j], sa);
        float yi = 0.f;
#pragma unroll
        for (int j = 0; j < N; ++j) {
            S[j] = fmaf(S[j], s_d[j], fmaf(sa, s_b[j], vi * s_k[j]));
            yi = fmaf(S[j], s_r[j], yi);
        }
        cf_io<IO>::store(y + idx, yi);
        if (SAVE) {
            sa_out[idx] = sa;
            if (t % CP == CP - 1) {
#pragma unroll
                for (int j = 0; j < N; ++j) cp[j] = S[j];
                cp += N * N;
            }
        }
    }
}

// grid as the forward; block: 2N threads in two groups. dy and the gradients dr, dw, dk, dv, da, db:
// [B2, T, H, N] in IO; sa and ckpt: what the SAVE forward wrote for the same inputs (T % CP == 0).
// Threads [0, N), "column" group: thread i owns column i of S (ST[j] = S[j][i]) and column i of dS
// (dSc[j] = dS[j][i]) and computes dr, dk, db, dw, da of channel i. Threads [N, 2N), "row" group:
// thread N + i owns row i of dS (dSr[j] = dS[i][j]) and computes dv and dsa of channel i. Both
// groups apply the same fp32 operations to the element they share, so the two copies of dS stay
// bit-identical; dsa crosses over through shared memory. 2N fp32 state registers per column
// thread instead of 3N in one thread (which spills on sm_90).
template <typename IO, int N>
__global__ void __launch_bounds__(2 * N, 1)
    wkv7_catflip_bwd(const IO* __restrict__ r, const IO* __restrict__ w, const IO* __restrict__ k,
                     const IO* __restrict__ v, const IO* __restrict__ a, const IO* __restrict__ b,
                     const IO* __restrict__ dy, const float* __restrict__ sa_in, const float* __restrict__ ckpt,
                     IO* __restrict__ dr, IO* __restrict__ dw, IO* __restrict__ dk, IO* __restrict__ dv,
                     IO* __restrict__ da, IO* __restrict__ db, int B2, int T, int H) {
    __shared__ __align__(16) float s_r[N], s_d[N], s_k[N], s_v[N], s_a[N], s_b[N], s_dy[N], s_sa[N], s_dsa[N];
    constexpr int CP = cf_cp<IO>::value;
    const bool col = threadIdx.x < N;  // warp-uniform (N % 32 == 0)
    const int i = col ? threadIdx.x : threadIdx.x - N;
    const int seq = blockIdx.x / H;
    const int h = blockIdx.x - seq * H;
    if (seq >= B2) return;  // whole block: uniform
    const long long tok = (long long)H * N;
    const long long base = (long long)seq * T * tok + (long long)h * N + i;
    // checkpoint c holds S after token c * CP + CP - 1; column thread i reads column i
    const float* cp = ckpt + ((long long)seq * H + h) * (long long)(T / CP) * N * N + i;

    float ST[N];  // column group: column i of S_t; row group: row i of dS
    float dS[N];  // column group: column i of dS;  row group: unused
    wkv7_bwd_init<N>(ST, dS, col, cp + (long long)(T / CP - 1) * N * N);  // the last checkpoint: S_{T-1}

    for (int t = T - 1; t >= 0; --t) {
        const long long idx = base + (long long)t * tok;
        __syncthreads();  // everyone is done reading the previous step's vectors and dsa
        float ri = 0.f, wi = 0.f, ki = 0.f, vi = 0.f, ai = 0.f, bi = 0.f, dyi = 0.f, sai = 0.f;
        if (col) {
            ri = cf_io<IO>::load(r + idx);
            wi = cf_io<IO>::load(w + idx);
            ki = cf_io<IO>::load(k + idx);
            vi = cf_io<IO>::load(v + idx);
            ai = cf_io<IO>::load(a + idx);
            bi = cf_io<IO>::load(b + idx);
            s_r[i] = ri;
            s_k[i] = ki;
            s_v[i] = vi;
            s_a[i] = ai;
            s_b[i] = bi;
        } else {
            dyi = cf_io<IO>::load(dy + idx);
            sai = sa_in[idx];
            s_d[i] = expf(-expf(cf_io<IO>::load(w + idx)));
            s_dy[i] = dyi;
            s_sa[i] = sai;
        }
        __syncthreads();

        if (!col) {  // row i of dS: dS += dy r^T; dv = dS k; dsa = dS b; dS <- dS diag(d) + dsa a^T
            float dvi = 0.f;
            const float dsai = wkv7_bwd_row<N>(ST, dyi, s_r, s_k, s_b, dvi);
            s_dsa[i] = dsai;
#pragma unroll
            for (int j = 0; j < N; ++j) ST[j] = fmaf(ST[j], s_d[j], dsai * s_a[j]);
            cf_io<IO>::store(dv + idx, dvi);
        }
        const float ew = expf(wi);
        const float di = expf(-ew);
        float dri = 0.f, dki = 0.f, dbi = 0.f, ddi = 0.f;
        if (col) {
            // One pass: dr = S_t^T dy; dS += dy r^T; dk = dS^T v; db = dS^T sa; S_{t-1} = undo step t
            // (or the checkpoint); dd[i] = sum_j dS[j][i] S_{t-1}[j][i]
            wkv7_bwd_column<N, CP>(ST, dS, s_dy, s_v, s_sa, ri, ki, bi, di, t, cp, dri, dki, dbi, ddi);
        }
        __syncthreads();  // dsa of every row is in s_dsa
        if (col) {  // da = S_{t-1}^T dsa; dS <- dS diag(d) + dsa a^T (column i)
            const float dai = wkv7_bwd_da<N>(ST, dS, s_dsa, di, ai);
            cf_io<IO>::store(dr + idx, dri);
            cf_io<IO>::store(dw + idx, ddi * di * -ew);
            cf_io<IO>::store(dk + idx, dki);
            cf_io<IO>::store(da + idx, dai);
            cf_io<IO>::store(db + idx, dbi);
        }
    }
}
