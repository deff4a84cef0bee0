// Bi-WKV7 backward in CUDA C for wkvbench's `cupy_cuda`: both scan directions and the gate merge
// in ONE launch. The training forward is bi_wkv7_train_kernel (bi_wkv7_cupy.cu), which saves, per
// direction, sa (fp32) and state checkpoints; the autograd Function, launch code and saved-bytes
// statement are in wkvbench/impls/bi_wkv7_cupy/train.py. Written from the recurrence and its
// derivative (docs/spec.md section 1). Like the forward, this file includes only wkv_io.cuh (the
// Python side inlines it), so it compiles with a bare NVRTC and with g++ after the host shim of
// wkvbench/hostemu/. The per-step row, column and da passes are wkv_io.cuh's wkv7_bwd_*
// functions, shared with the causal backward of bi_wkv7_catflip.cu.
//
// Per (batch b, head h, direction dir) the state S is N x N (S[i][j]: value row i, key column j);
// scan step s is token t = s (dir 0, forward) or t = T - 1 - s (dir 1, reverse), and the output is
// y = g * y_fwd + (1 - g) * y_rev (g = 0.5 when absent). One direction's backward walks its scan
// steps s = T-1 .. 0 with dS = dL/dS_s and dy' = gate * dy (gate = g forward, 1 - g reverse):
//     dS += dy' r^T;  dr = S_s^T dy';  dv = dS k;  dk = dS^T v;  db = dS^T sa;  dsa = dS b
//     S_{s-1} = (S_s - v k^T - sa b^T) diag(1/d)   (re-seeded from the checkpoint when s % CP == 0,
//                                                   0 before step 0)
//     da = S_{s-1}^T dsa;  dd[j] = sum_i dS[i][j] S_{s-1}[i][j];  dw = dd * d * (-exp(w))
//     dS <- dS diag(d) + dsa a^T
// Gate: dg[t] = sum_i dy_i (y_fwd,i - y_rev,i), and sum_i dy_i y_dir,i = r . q with q = S_s^T dy
// (unscaled), which the dr product already has: dr = gate * q. Each direction adds +-r.q.
//
// Thread layout (the one the causal backward of bi_wkv7_catflip.cu compiles spill-free at sm_90):
// 2N threads per block, threads [0, N) the "column" group (thread i owns column i of S and of dS,
// 2N fp32 registers, and computes dr, dk, db, dw, da of channel i), threads [N, 2N) the "row"
// group (thread N + i owns row i of dS and computes dv and dsa of channel i; dsa reaches the
// column group through shared memory). Both copies of dS get the same fp32 operations (the gated
// outer product is formed as dy (gate r)^T in both), so they stay bit-identical.
//
// The two directions of a (b, h) are two blocks; each adds its contribution to the fp32 gradient
// buffers with atomicAdd. The buffers start at zero and every element receives exactly two adds
// (one per direction), and fl(fl(0 + x) + y) == fl(fl(0 + y) + x), so the sums do not depend on
// which block comes first: deterministic.

#include "wkv_io.cuh"  // wkv_bf16, wkv_fp16 and their float conversions

// grid: 2 * B * H blocks (block = (dir * B + b) * H + h); block: 2 * N threads.
// r, w, k, v, a, b, dy: [B, T, H, N] in IO; g: [B, T, H] in IO or nullptr (0.5, and no dg);
// sa_in fp32 [2, B, T, H, N], ckpt fp32 [2, B, H, ceil(T / CP), N, N]: what bi_wkv7_train_kernel
// wrote with the same CP. dr, dw, dk, dv, da, db fp32 [B, T, H, N] and dg fp32 [B, T, H] (unused
// when g is nullptr): zero-filled before the launch; the kernel adds both directions into them.
template <typename IO, int N, int CP>
__global__ void __launch_bounds__(2 * N, 1)
    bi_wkv7_bwd_kernel(const IO* __restrict__ r, const IO* __restrict__ w, const IO* __restrict__ k,
                       const IO* __restrict__ v, const IO* __restrict__ a, const IO* __restrict__ b,
                       const IO* __restrict__ g, const IO* __restrict__ dy, const float* __restrict__ sa_in,
                       const float* __restrict__ ckpt, float* dr, float* dw, float* dk, float* dv, float* da,
                       float* db, float* dg, int B, int T, int H) {
    __shared__ __align__(16) float s_rg[N], s_d[N], s_k[N], s_v[N], s_a[N], s_b[N], s_dy[N], s_sa[N], s_dsa[N];
    __shared__ float s_red[2];  // r . q of the column group's two warps
    static_assert(N == 64, "the r . q reduction assumes two warps per group");
    const bool col = threadIdx.x < N;  // warp-uniform (N % 32 == 0)
    const int i = col ? threadIdx.x : threadIdx.x - N;
    int blk = blockIdx.x;
    const int h = blk % H;
    blk /= H;
    const int bb = blk % B;
    const int dir = blk / B;
    if (dir >= 2) return;  // whole block: uniform
    const long long tok = (long long)H * N;
    const long long base = (long long)bb * T * tok + (long long)h * N + i;
    const float* sa_dir = sa_in + (long long)dir * B * T * tok;
    const int nck = (T + CP - 1) / CP;
    // slot c holds S after scan step min(c * CP + CP - 1, T - 1); column thread i reads column i
    const float* cp = ckpt + ((long long)(dir * B + bb) * H + h) * nck * N * N + i;

    float ST[N];  // column group: column i of S_s; row group: row i of dS
    float dS[N];  // column group: column i of dS;  row group: unused
    wkv7_bwd_init<N>(ST, dS, col, cp + (long long)(nck - 1) * N * N);  // slot nck - 1: S after the last step

    // Step s's inputs are loaded one step ahead, raw (no conversion, so nothing waits on them),
    // right after the barrier that ends step s+1's staging: the global-memory latency overlaps step
    // s+1's arithmetic. Column threads: r, w, k, a, b of channel i; row threads: dy, v, w, sa.
    IO x0{}, x1{}, x2{}, x3{}, x4{}, xg{};
    float xsa = 0.f;
    auto fetch = [&](int s) {
        const int t = dir == 0 ? s : T - 1 - s;
        const long long idx = base + (long long)t * tok;
        if (col) {
            x0 = r[idx];
            x1 = w[idx];
            x2 = k[idx];
            x3 = a[idx];
            x4 = b[idx];
        } else {
            x0 = dy[idx];
            x1 = v[idx];
            x2 = w[idx];
            xsa = sa_dir[idx];
        }
        if (g != nullptr) xg = g[((long long)bb * T + t) * H + h];
    };
    fetch(T - 1);

    for (int s = T - 1; s >= 0; --s) {
        const int t = dir == 0 ? s : T - 1 - s;
        const long long idx = base + (long long)t * tok;
        float gate = 0.5f;
        if (g != nullptr) {
            const float gv = wkv_scalar<IO>::to_float(xg);
            gate = dir == 0 ? gv : 1.f - gv;
        }
        // Redundant: every read of the previous step's staged vectors comes before that step's dsa
        // barrier (the third below), and s_dsa / s_red, read after it, are next written after this
        // step's staging barrier; tests/impls/test_cuda_host_races.py runs the kernel without this
        // barrier under ThreadSanitizer and requires it race-free. Kept so that the compiled kernel and
        // its pinned sm_90 figures stay unchanged.
        __syncthreads();
        float ri = 0.f, wi = 0.f, ki = 0.f, ai = 0.f, bi = 0.f, dyi = 0.f;
        if (col) {
            ri = wkv_scalar<IO>::to_float(x0);
            wi = wkv_scalar<IO>::to_float(x1);
            ki = wkv_scalar<IO>::to_float(x2);
            ai = wkv_scalar<IO>::to_float(x3);
            bi = wkv_scalar<IO>::to_float(x4);
            s_rg[i] = gate * ri;
            s_k[i] = ki;
            s_a[i] = ai;
            s_b[i] = bi;
        } else {
            dyi = wkv_scalar<IO>::to_float(x0);
            s_v[i] = wkv_scalar<IO>::to_float(x1);
            s_d[i] = expf(-expf(wkv_scalar<IO>::to_float(x2)));
            s_dy[i] = dyi;
            s_sa[i] = xsa;
        }
        __syncthreads();
        if (s > 0) fetch(s - 1);

        if (!col) {  // row i of dS: dS += dy (gate r)^T; dv = dS k; dsa = dS b; dS <- dS diag(d) + dsa a^T
            float dvi = 0.f;
            const float dsai = wkv7_bwd_row<N>(ST, dyi, s_rg, s_k, s_b, dvi);
            s_dsa[i] = dsai;
#pragma unroll
            for (int j = 0; j < N; ++j) ST[j] = fmaf(ST[j], s_d[j], dsai * s_a[j]);
            atomicAdd(dv + idx, dvi);
        }
        const float ew = expf(wi);
        const float di = expf(-ew);
        float qi = 0.f, dki = 0.f, dbi = 0.f, ddi = 0.f;
        if (col) {
            // One pass: q = S_s^T dy; dS += dy (gate r)^T; dk = dS^T v; db = dS^T sa; S_{s-1} = undo
            // step s (or the checkpoint); dd[i] = sum_j dS[j][i] S_{s-1}[j][i]
            wkv7_bwd_column<N, CP>(ST, dS, s_dy, s_v, s_sa, gate * ri, ki, bi, di, s, cp, qi, dki, dbi, ddi);
        }
        if (g != nullptr) {  // r . q over the column group: warp butterflies (uniform: every thread)
            float p = col ? ri * qi : 0.f;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) p += __shfl_xor_sync(0xffffffffu, p, o);
            if (col && (i & 31) == 0) s_red[i >> 5] = p;
        }
        __syncthreads();  // dsa of every row is in s_dsa, the warps' r . q in s_red
        if (col) {  // da = S_{s-1}^T dsa; dS <- dS diag(d) + dsa a^T (column i)
            const float dai = wkv7_bwd_da<N>(ST, dS, s_dsa, di, ai);
            atomicAdd(dr + idx, gate * qi);
            atomicAdd(dw + idx, ddi * di * -ew);
            atomicAdd(dk + idx, dki);
            atomicAdd(da + idx, dai);
            atomicAdd(db + idx, dbi);
            if (g != nullptr && i == 0) {
                const float rq = s_red[0] + s_red[1];
                atomicAdd(dg + ((long long)bb * T + t) * H + h, dir == 0 ? rq : -rq);
            }
        }
    }
}
