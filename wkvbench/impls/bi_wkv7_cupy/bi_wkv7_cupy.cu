// Bi-WKV7 forward in CUDA C: both scan directions and the gate merge in one launch.
//
// wkvbench's `cupy_cuda` implementation compiles this file with NVRTC through cupy.RawModule (name
// expressions `bi_wkv7_kernel<IO, 64, SPLIT>`; for training `bi_wkv7_train_kernel<IO, 64, SPLIT,
// CP>`, the same body saving what bi_wkv7_cupy_bwd.cu needs). The algorithm, launch geometry and
// the proof that the merge is race-free are in docs/notes/cupy_bi_wkv7.md; the comments below
// point at the pieces. The file includes no CUDA header (only wkv_io.cuh, which the Python side
// inlines), so it compiles with a bare NVRTC (no CUDA include folder needed), and it uses only
// what a host emulation can provide: wkvbench/hostemu/ compiles this same file with g++ after
// a shim header that defines the CUDA keywords, one std::thread per CUDA thread of every block at
// once, __syncthreads as a std::barrier and __shfl_xor_sync through a per-warp exchange.
//
// Per (batch b, head h) the state S is N x N (S[i][j]: value row i, key column j). Rows evolve
// independently given the token's vectors:
//     sa_i = sum_j S[i][j] a_j
//     S[i][j] = S[i][j] d_j + sa_i b_j + v_i k_j          d_j = exp(-exp(w_j))
//     y_i = sum_j S[i][j] r_j
// A block owns R = N / SPLIT value rows of one (b, h) for BOTH directions: threads [0, N) run the
// forward scan, threads [N, 2N) the reverse scan; each row is held by SPLIT consecutive lanes,
// each lane keeping KPT = N / SPLIT key columns of the row in fp32 registers, so dot products
// reduce over the SPLIT lanes with a shuffle butterfly (none when SPLIT == 1).

#include "wkv_io.cuh"  // wkv_bf16, wkv_fp16 and their float conversions

// Tokens staged per chunk and direction: 8, or 4 where a step is long (SPLIT = 1, and float32
// with SPLIT = 2: >= ~250 issue cycles, so 4 steps still cover a DRAM round trip) and the state
// slice is large: the halved prefetch registers keep those instantiations free of spills.
template <typename IO, int SPLIT>
struct wkv_chunk {
    static constexpr int TC = (SPLIT == 1 || (sizeof(IO) == 4 && SPLIT == 2)) ? 4 : 8;
};

// Per-dtype I/O: VEC elements per 16-byte load and their unpacking to float; scalar to_float /
// from_float come from wkv_scalar (wkv_io.cuh). The 16-bit types (wkv_bf16, wkv_fp16): two
// elements per 32-bit word, the low half first.
template <typename IO>
struct wkv_io : wkv_scalar<IO> {
    static constexpr int VEC = 8;
    __device__ __forceinline__ static void unpack(const uint4& u, float* f) {
        const unsigned int words[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            f[2 * i] = wkv_scalar<IO>::to_float(IO{(unsigned short)(words[i] & 0xffffu)});
            f[2 * i + 1] = wkv_scalar<IO>::to_float(IO{(unsigned short)(words[i] >> 16)});
        }
    }
};

template <>
struct wkv_io<float> : wkv_scalar<float> {
    static constexpr int VEC = 4;
    __device__ __forceinline__ static void unpack(const uint4& u, float* f) {
        f[0] = __uint_as_float(u.x);
        f[1] = __uint_as_float(u.y);
        f[2] = __uint_as_float(u.z);
        f[3] = __uint_as_float(u.w);
    }
};

// Sum over the SPLIT consecutive lanes that share a value row (xor butterfly: every lane of the
// group ends with the same bits, since float addition is commutative).
template <int SPLIT>
__device__ __forceinline__ float wkv_group_sum(float x) {
#pragma unroll
    for (int o = SPLIT / 2; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// The same for two values at once (independent shuffles interleaved: one chain of latency).
template <int SPLIT>
__device__ __forceinline__ void wkv_group_sum2(float& x, float& y) {
#pragma unroll
    for (int o = SPLIT / 2; o > 0; o >>= 1) {
        const float xo = __shfl_xor_sync(0xffffffffu, x, o);
        const float yo = __shfl_xor_sync(0xffffffffu, y, o);
        x += xo;
        y += yo;
    }
}

// grid: B * H * SPLIT blocks (block = (b * H + h) * SPLIT + row block); block: 2 * N threads.
// r, w, k, v, a, b: [B, T, H, N]; g: [B, T, H] or nullptr (0.5); y: [B, T, H, N] in IO;
// part: fp32 [B, T, H, N] scratch for the gated partial of the direction that reaches a token
// first (may be y itself when IO is float: the partial and the final value are the same element,
// read and rewritten by one thread).
//
// __launch_bounds__(2N, 1): without the minimum-blocks hint ptxas aims at 3-4 resident blocks per
// SM (<= 168 / 128 registers) and, depending on its version, spills a few bytes; the grids
// pick_split chooses put one block on an SM, so registers (<= ~220) are worth more than residency.
//
// The body is one inlined device function shared by the inference kernel (bi_wkv7_kernel, SAVE
// off: the save code is compiled out; registers, shared memory and code size at sm_90 are those
// of the body compiled as the kernel itself) and the training forward (bi_wkv7_train_kernel, SAVE
// on), which also writes, per direction, what the backward (bi_wkv7_cupy_bwd.cu) needs:
//   sa_out fp32 [2, B, T, H, N]: sa of the token (direction-major: dir 0 forward, 1 reverse);
//   ckpt   fp32 [2, B, H, NCK, N, N], NCK = ceil(T / CP): slot c holds the state (row-major
//          S[i][j]) after scan step min(c * CP + CP - 1, T - 1); scan step s is token s (forward)
//          or T - 1 - s (reverse). The last slot is the final state also when T % CP != 0.
template <typename IO, int N, int SPLIT, int CP, bool SAVE>
__device__ __forceinline__ void bi_wkv7_body(const IO* __restrict__ r, const IO* __restrict__ w,
                                             const IO* __restrict__ k, const IO* __restrict__ v,
                                             const IO* __restrict__ a, const IO* __restrict__ b,
                                             const IO* __restrict__ g, IO* y, float* part, float* sa_out,
                                             float* ckpt, int B, int T, int H) {
    constexpr int TC = wkv_chunk<IO, SPLIT>::TC;
    constexpr int THREADS = 2 * N;
    constexpr int KPT = N / SPLIT;  // key columns per thread
    constexpr int R = N / SPLIT;    // value rows per block (per direction)
    constexpr int VEC = wkv_io<IO>::VEC;
    constexpr int NV = N / VEC;      // 16-byte units per N-vector
    constexpr int UV = 5 * NV;       // units of r, w, k, a, b per (direction, token)
    constexpr int U1 = UV + R / VEC; // ... plus this block's slice of v
    constexpr int UNITS = 2 * TC * U1;
    constexpr int UPT = (UNITS + THREADS - 1) / THREADS;  // prefetch registers (uint4) per thread
    static_assert(SPLIT >= 1 && SPLIT <= 32 && (SPLIT & (SPLIT - 1)) == 0, "SPLIT: power of two <= 32");
    static_assert(N % 32 == 0 && KPT % 4 == 0 && R % VEC == 0, "N: multiple of 32 with N/SPLIT >= VEC");
    static_assert(2 * TC <= THREADS, "one gate per (direction, token) thread");

    // Chunk staging buffer, fp32 (w already turned into the decay d). [dir][token][r d k a b][N].
    __shared__ __align__(16) float s_vec[2][TC][5][N];
    __shared__ __align__(16) float s_v[2][TC][R];
    __shared__ float s_g[2][TC];  // gate factor: g for the forward rows, 1 - g for the reverse rows

    const int tid = threadIdx.x;
    const int dir = tid / N;  // 0: forward, 1: reverse (N % 32 == 0: a warp never mixes them)
    const int lt = tid - dir * N;
    const int rl = lt / SPLIT;     // value row within the block
    const int lane_part = lt % SPLIT;  // which float4 granules of the row: (c * SPLIT + lane_part)
    int blk = blockIdx.x;
    const int rb = blk % SPLIT;
    blk /= SPLIT;
    const int h = blk % H;
    const int bb = blk / H;
    if (bb >= B) return;  // whole block: uniform
    const int row0 = rb * R;
    const int row = row0 + rl;
    const long long tok_stride = (long long)H * N;
    const long long base = (long long)bb * T * tok_stride + (long long)h * N;  // token 0 of (bb, h)
    const long long gbase = (long long)bb * T * H + h;

    // Step schedule: step s handles token s (forward) and token T-1-s (reverse). Phase 1 is steps
    // [0, m), phase 2 steps [m, T); chunks of TC steps never straddle m.
    const int m = (T + 1) / 2;
    const int nc1 = (m + TC - 1) / TC;
    const int nc = nc1 + (T - m + TC - 1) / TC;

    uint4 pf[UPT];  // next chunk's inputs, raw, in flight while the current chunk computes
    float pg = 0.f;

    // Call f(i, d, j, rem) for each of this thread's prefetch units i that falls in the chunk's
    // first n steps: direction d, step j of the chunk, rem the unit within that (direction, step)
    // (r, w, k, a, b vectors first, then the block's slice of v). prefetch and stage share it.
    auto for_each_unit = [&](int n, auto&& f) {
#pragma unroll
        for (int i = 0; i < UPT; ++i) {
            const int u = tid + i * THREADS;
            if (UNITS % THREADS == 0 || u < UNITS) {
                const int dj = u / U1;
                const int rem = u - dj * U1;
                const int d = dj / TC;
                const int j = dj - d * TC;
                if (j < n) f(i, d, j, rem);
            }
        }
    };

    // Issue the global loads of the chunk starting at step cs (n steps) into pf / pg.
    auto prefetch = [&](int cs, int n) {
        for_each_unit(n, [&](int i, int d, int j, int rem) {
            const int t = d == 0 ? cs + j : T - 1 - (cs + j);
            long long off = base + (long long)t * tok_stride;
            const IO* src;
            if (rem < UV) {
                const int q = rem / NV;
                off += (rem - q * NV) * VEC;
                src = q == 0 ? r : q == 1 ? w : q == 2 ? k : q == 3 ? a : b;
            } else {
                off += row0 + (rem - UV) * VEC;
                src = v;
            }
            pf[i] = __ldg(reinterpret_cast<const uint4*>(src + off));
        });
        if (tid < 2 * TC) {
            const int d = tid / TC;
            const int j = tid - d * TC;
            if (j < n) {
                const int t = d == 0 ? cs + j : T - 1 - (cs + j);
                const float gv = g != nullptr ? wkv_io<IO>::to_float(g[gbase + (long long)t * H]) : 0.5f;
                pg = d == 0 ? gv : 1.f - gv;
            }
        }
    };

    // Convert pf / pg to fp32 (w -> d = exp(-exp(w))) and write them to the staging buffer.
    auto stage = [&](int n) {
        for_each_unit(n, [&](int i, int d, int j, int rem) {
            float f[VEC];
            wkv_io<IO>::unpack(pf[i], f);
            float* dst;
            if (rem < UV) {
                const int q = rem / NV;
                if (q == 1) {
#pragma unroll
                    for (int e = 0; e < VEC; ++e) f[e] = expf(-expf(f[e]));
                }
                dst = &s_vec[d][j][q][(rem - q * NV) * VEC];
            } else {
                dst = &s_v[d][j][(rem - UV) * VEC];
            }
#pragma unroll
            for (int e = 0; e < VEC; e += 4)
                *reinterpret_cast<float4*>(dst + e) = make_float4(f[e], f[e + 1], f[e + 2], f[e + 3]);
        });
        if (tid < 2 * TC) {
            const int d = tid / TC;
            const int j = tid - d * TC;
            if (j < n) s_g[d][j] = pg;
        }
    };

    float S[KPT];  // this lane's slice of value row `row`: columns (c * SPLIT + lane_part) * 4 + e
#pragma unroll
    for (int c = 0; c < KPT; ++c) S[c] = 0.f;
    float held = 0.f;  // reverse rows, odd T: the middle token's gated output, merged at the end

    auto chunk_start = [&](int q) { return q < nc1 ? q * TC : m + (q - nc1) * TC; };
    auto chunk_len = [&](int q, int cs) {
        const int end = q < nc1 ? m : T;
        return end - cs < TC ? end - cs : TC;
    };

    if (nc > 0) prefetch(0, chunk_len(0, 0));
    for (int q = 0; q < nc; ++q) {
        const int cs = chunk_start(q);
        const int n = chunk_len(q, cs);
        const bool phase1 = q < nc1;
        // Gate merge of step j's output yv of this lane's row. Lane 0 of the row group owns the
        // row's output in both phases (the same lane for both directions' partial of a token).
        auto merge = [&](int j, float yv) {
            if (lane_part != 0) return;
            const int s = cs + j;
            const int t = dir == 0 ? s : T - 1 - s;
            const float val = s_g[dir][j] * yv;
            const long long idx = base + (long long)t * tok_stride + row;
            if (phase1) {
                if (dir == 1 && t == s)
                    held = val;  // odd T, middle token: the forward row writes its partial now
                else
                    part[idx] = val;  // first to reach token t
            } else {
                y[idx] = wkv_io<IO>::from_float(part[idx] + val);  // second: add and write y
            }
        };
        __syncthreads();  // everyone is done reading the previous chunk (and, at the first phase-2
                          // chunk, done writing every phase-1 partial: the merge's ordering point)
        stage(n);
        __syncthreads();  // the chunk is staged
        if (q + 1 < nc) {
            const int cs1 = chunk_start(q + 1);
            prefetch(cs1, chunk_len(q + 1, cs1));
        }
        // Step j of the chunk: sa = S a_j, S = S diag(d_j) + sa b_j^T + v_j k_j^T, y_j = S r_j.
        // y_j is computed in step j+1's pass over S (y_j = S_j r_j and sa_{j+1} = S_j a_{j+1} read
        // the same state), so the two reductions share one shuffle chain and the store of y_j does
        // not stall the in-order issue on its own reduction; the chunk's last y after the loop.
        for (int j = 0; j < n; ++j) {
            const float* vec = &s_vec[dir][j][0][0];
            // r of the previous step (at j == 0 a stand-in whose result is discarded: one wasted
            // dot per chunk keeps the loop branch-free and the register allocation tight)
            const float* prev = &s_vec[dir][j > 0 ? j - 1 : 0][0][0];
            float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f, y0 = 0.f, y1 = 0.f, y2 = 0.f, y3 = 0.f;
#pragma unroll
            for (int c = 0; c < KPT / 4; ++c) {
                const int col = (c * SPLIT + lane_part) * 4;
                const float4 av = *reinterpret_cast<const float4*>(vec + 3 * N + col);
                const float4 rv = *reinterpret_cast<const float4*>(prev + col);
                a0 = fmaf(S[4 * c], av.x, a0);
                a1 = fmaf(S[4 * c + 1], av.y, a1);
                a2 = fmaf(S[4 * c + 2], av.z, a2);
                a3 = fmaf(S[4 * c + 3], av.w, a3);
                y0 = fmaf(S[4 * c], rv.x, y0);
                y1 = fmaf(S[4 * c + 1], rv.y, y1);
                y2 = fmaf(S[4 * c + 2], rv.z, y2);
                y3 = fmaf(S[4 * c + 3], rv.w, y3);
            }
            float sa = (a0 + a1) + (a2 + a3);
            float yv = (y0 + y1) + (y2 + y3);
            wkv_group_sum2<SPLIT>(sa, yv);
            if (SAVE && lane_part == 0) {
                const int s = cs + j;
                sa_out[(long long)dir * B * T * tok_stride + base + (long long)(dir == 0 ? s : T - 1 - s) * tok_stride +
                       row] = sa;
            }
            if (j > 0) merge(j - 1, yv);
            const float vi = s_v[dir][j][rl];
#pragma unroll
            for (int c = 0; c < KPT / 4; ++c) {
                const int col = (c * SPLIT + lane_part) * 4;
                const float4 dv = *reinterpret_cast<const float4*>(vec + N + col);
                const float4 kv = *reinterpret_cast<const float4*>(vec + 2 * N + col);
                const float4 bv = *reinterpret_cast<const float4*>(vec + 4 * N + col);
                S[4 * c] = fmaf(S[4 * c], dv.x, fmaf(sa, bv.x, vi * kv.x));
                S[4 * c + 1] = fmaf(S[4 * c + 1], dv.y, fmaf(sa, bv.y, vi * kv.y));
                S[4 * c + 2] = fmaf(S[4 * c + 2], dv.z, fmaf(sa, bv.z, vi * kv.z));
                S[4 * c + 3] = fmaf(S[4 * c + 3], dv.w, fmaf(sa, bv.w, vi * kv.w));
            }
            if (SAVE) {  // checkpoint slot s / CP after its last step (or after the scan's last step)
                const int s = cs + j;
                if (s % CP == CP - 1 || s == T - 1) {
                    const int nck = (T + CP - 1) / CP;
                    float* dst =
                        ckpt + (((long long)(dir * B + bb) * H + h) * nck + s / CP) * N * N + (long long)row * N;
#pragma unroll
                    for (int c = 0; c < KPT / 4; ++c)
                        *reinterpret_cast<float4*>(dst + (c * SPLIT + lane_part) * 4) =
                            make_float4(S[4 * c], S[4 * c + 1], S[4 * c + 2], S[4 * c + 3]);
                }
            }
        }
        {  // y of the chunk's last step, before the next chunk's barrier lets the buffer be restaged
            const float* last = &s_vec[dir][n - 1][0][0];
            float y0 = 0.f, y1 = 0.f, y2 = 0.f, y3 = 0.f;
#pragma unroll
            for (int c = 0; c < KPT / 4; ++c) {
                const float4 rv = *reinterpret_cast<const float4*>(last + (c * SPLIT + lane_part) * 4);
                y0 = fmaf(S[4 * c], rv.x, y0);
                y1 = fmaf(S[4 * c + 1], rv.y, y1);
                y2 = fmaf(S[4 * c + 2], rv.z, y2);
                y3 = fmaf(S[4 * c + 3], rv.w, y3);
            }
            merge(n - 1, wkv_group_sum<SPLIT>((y0 + y1) + (y2 + y3)));
        }
    }
    __syncthreads();  // the middle token's forward partial is visible
    if ((T & 1) && dir == 1 && lane_part == 0) {
        const long long idx = base + (long long)(T / 2) * tok_stride + row;
        y[idx] = wkv_io<IO>::from_float(part[idx] + held);
    }
}

// The inference forward: grid / block / arguments as described above bi_wkv7_body.
template <typename IO, int N, int SPLIT>
__global__ void __launch_bounds__(2 * N, 1)
    bi_wkv7_kernel(const IO* __restrict__ r, const IO* __restrict__ w, const IO* __restrict__ k,
                   const IO* __restrict__ v, const IO* __restrict__ a, const IO* __restrict__ b,
                   const IO* __restrict__ g, IO* y, float* part, int B, int T, int H) {
    bi_wkv7_body<IO, N, SPLIT, 1, false>(r, w, k, v, a, b, g, y, part, nullptr, nullptr, B, T, H);
}

// The training forward: the same, plus sa_out and ckpt (layouts above bi_wkv7_body), CP tokens per
// checkpoint (any T >= 1: the last slot may cover fewer than CP steps).
template <typename IO, int N, int SPLIT, int CP>
__global__ void __launch_bounds__(2 * N, 1)
    bi_wkv7_train_kernel(const IO* __restrict__ r, const IO* __restrict__ w, const IO* __restrict__ k,
                         const IO* __restrict__ v, const IO* __restrict__ a, const IO* __restrict__ b,
                         const IO* __restrict__ g, IO* y, float* part, float* sa_out, float* ckpt, int B, int T,
                         int H) {
    bi_wkv7_body<IO, N, SPLIT, CP, true>(r, w, k, v, a, b, g, y, part, sa_out, ckpt, B, T, H);
}
