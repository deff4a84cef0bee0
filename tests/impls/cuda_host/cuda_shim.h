// Host emulation of the few CUDA features wkvbench's CUDA C kernels use, so the SAME .cu source
// compiles with g++ (-std=c++20) and runs on the CPU in tests.
//
// Model: a launch runs its blocks one after another; each block is one std::thread per CUDA
// thread (the threads are created once per launch and walk the grid together), so
//   * __shared__ variables are function statics (one copy, reused by the next block),
//   * threadIdx / blockIdx are thread_local,
//   * __syncthreads() is a std::barrier across the block's threads,
//   * __shfl_xor_sync(mask, x, lanemask) exchanges through a block-wide buffer and one barrier.
//     That is only valid when every thread of the block executes the shuffle together
//     (uniform control flow, full mask), which is how the kernels here use it,
//   * atomicAdd(float*, float) is std::atomic_ref<float>::fetch_add.
// Defining WKV_HOST_EMULATION makes a kernel source skip its inline-PTX pieces; the IEEE half
// conversions they stand for are supplied below through _Float16 (round to nearest even).
#pragma once

#define WKV_HOST_EMULATION 1

#include <atomic>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct uint4 {
    unsigned x, y, z, w;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;

namespace cuda_host {
inline std::barrier<>* block_barrier = nullptr;
inline float shuffle_buffer[2][1024];
}  // namespace cuda_host

inline void __syncthreads() { cuda_host::block_barrier->arrive_and_wait(); }

// One barrier per shuffle: consecutive shuffles alternate between two exchange buffers, so a
// buffer is rewritten two shuffles later, i.e. only after every thread has passed the barrier of
// the shuffle in between -- which it reaches after reading this one.
inline float __shfl_xor_sync(unsigned /*mask*/, float x, int lane_mask) {
    static thread_local unsigned parity = 0;
    float* buf = cuda_host::shuffle_buffer[parity];
    parity ^= 1u;
    const unsigned t = threadIdx.x;
    buf[t] = x;
    __syncthreads();
    return buf[t ^ static_cast<unsigned>(lane_mask)];
}

inline float __uint_as_float(unsigned u) { return std::bit_cast<float>(u); }
inline unsigned __float_as_uint(float f) { return std::bit_cast<unsigned>(f); }
template <class T>
inline T __ldg(const T* p) {
    return *p;
}
inline float atomicAdd(float* p, float x) { return std::atomic_ref<float>(*p).fetch_add(x); }

inline float wkv_half_to_float(unsigned short h) { return static_cast<float>(std::bit_cast<_Float16>(h)); }
inline unsigned short wkv_float_to_half(float f) { return std::bit_cast<unsigned short>(static_cast<_Float16>(f)); }

namespace cuda_host {
// kernel<<<grid, block>>>(args...), 1-D grid and block; returns when every block has finished.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), unsigned grid, unsigned block, Args... args) {
    if (block == 0 || block > 1024) return;
    std::barrier<> bar(static_cast<std::ptrdiff_t>(block));
    block_barrier = &bar;
    blockDim = dim3{block, 1, 1};
    gridDim = dim3{grid, 1, 1};
    std::vector<std::thread> threads;
    threads.reserve(block);
    for (unsigned t = 0; t < block; ++t) {
        threads.emplace_back([&, t] {
            threadIdx = dim3{t, 0, 0};
            for (unsigned bx = 0; bx < grid; ++bx) {
                blockIdx = dim3{bx, 0, 0};
                kernel(args...);
                bar.arrive_and_wait();  // the block is over before its statics are reused
            }
        });
    }
    for (auto& th : threads) th.join();
    block_barrier = nullptr;
}
}  // namespace cuda_host
