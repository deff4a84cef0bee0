// Host emulation of the few CUDA features wkvbench's CUDA C kernels use, so the SAME .cu source
// compiles with g++ (-std=c++20) and runs on the CPU (build.py builds it; the tests and `wkvbench
// count` run it).
//
// Model: a launch starts one std::thread per CUDA thread of EVERY block, all alive together, so
// blocks run concurrently as on a GPU (a race between blocks is a real race here, visible to
// ThreadSanitizer and to the results):
//   * __shared__ variables live per block: build.py rewrites each declaration
//     `__shared__ T name[dims];` into `auto& name = ::cuda_host::block_shared<T[dims], ID>();`
//     (same line, so line numbers hold); the storage is created by the first thread of the block
//     that reaches the declaration and starts as all-ones bytes (float NaN), like uninitialised
//     shared memory. A `__shared__` left unrewritten does not compile;
//   * threadIdx / blockIdx are thread_local;
//   * __syncthreads() is a barrier of the block's threads (a thread leaving the kernel drops out
//     of it, as an exited thread does on a GPU); waits sleep on Linux futexes;
//   * __shfl_xor_sync(mask, x, lanemask) synchronises only the lanes of its warp named in mask:
//     each waits until every live lane of the mask has deposited its value, then reads its
//     partner's. A calling lane outside the mask, a partner outside it, a mask naming lanes the
//     block does not have, or lanes of one warp disagreeing on the mask abort with a message;
//   * atomicAdd(float*, float) is std::atomic_ref<float>::fetch_add (a real atomic);
//   * a launch with 0 or more than 1024 threads per block, an empty grid, or more threads in all
//     than the cap (CUDA_HOST_MAX_THREADS, default 8192) aborts with a message.
// Defining WKV_HOST_EMULATION makes a kernel source skip its inline-PTX pieces; the IEEE half
// conversions they stand for are supplied below through _Float16 (round to nearest even).
#pragma once

#define WKV_HOST_EMULATION 1

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ cuda_host_shared_declaration_not_rewritten_by_build_py
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
[[noreturn]] inline void fail(const char* what, unsigned long long a = 0, unsigned long long b = 0,
                              unsigned long long c = 0) {
    std::fprintf(stderr, "cuda_host: ");
    std::fprintf(stderr, what, a, b, c);
    std::fprintf(stderr, "\n");
    std::fflush(stderr);
    std::abort();
}

// Sleeping until a 32-bit word changes, and waking its sleepers: Linux futexes (no spinning, no
// mutex to re-acquire after a wake-up: thousands of threads on a few cores).
inline void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t seen) {
    static_assert(sizeof(std::atomic<std::uint32_t>) == 4);
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
}
inline void futex_wake_all(std::atomic<std::uint32_t>& word) {
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

// __syncthreads of one block: arrivals counted under a mutex, the wait on the generation word.
struct BlockBarrier {
    explicit BlockBarrier(unsigned threads) : expected(threads) {}
    void arrive(bool drop) {  // drop: the thread leaves the kernel (counts as arrived from now on)
        std::unique_lock<std::mutex> lock(m);
        const std::uint32_t gen = generation.load(std::memory_order_relaxed);
        drop ? --expected : ++arrived;
        if (arrived == expected && (arrived > 0 || drop)) {
            arrived = 0;
            generation.store(gen + 1, std::memory_order_release);
            lock.unlock();
            futex_wake_all(generation);
            return;
        }
        lock.unlock();
        if (drop) return;
        while (generation.load(std::memory_order_acquire) == gen) futex_wait(generation, gen);
    }
    std::mutex m;
    unsigned expected, arrived = 0;
    std::atomic<std::uint32_t> generation{0};
};

// The lanes of one warp and their shuffle exchange (one exchange at a time: the next one starts
// when every lane of the previous one has read its result).
struct Warp {
    std::mutex m;
    unsigned present = 0;  // lanes the block has
    unsigned exited = 0;   // lanes that left the kernel
    unsigned arrived = 0, mask = 0;
    std::atomic<std::uint32_t> readers{0}, generation{0};
    float buf[32] = {};
};

struct Block {
    explicit Block(unsigned threads) : bar(threads), warps((threads + 31) / 32) {
        for (unsigned w = 0; w < warps.size(); ++w) {
            const unsigned n = threads - 32 * w < 32 ? threads - 32 * w : 32;
            warps[w].present = n == 32 ? 0xffffffffu : (1u << n) - 1u;
        }
    }
    ~Block() {
        for (auto& kv : shared) std::free(kv.second);
    }
    BlockBarrier bar;
    std::vector<Warp> warps;
    std::mutex shared_mutex;
    std::map<int, void*> shared;  // __shared__ declaration id -> this block's storage
};

inline thread_local Block* current_block = nullptr;

// This block's instance of the __shared__ variable declared with id ID (see the rewrite above).
template <class T, int ID>
T& block_shared() {
    Block* blk = current_block;
    std::lock_guard<std::mutex> lock(blk->shared_mutex);
    void*& p = blk->shared[ID];
    if (p == nullptr) {
        const std::size_t bytes = (sizeof(T) + 63) / 64 * 64;
        p = std::aligned_alloc(64, bytes);
        if (p == nullptr) fail("could not allocate %llu bytes of shared memory", bytes);
        std::memset(p, 0xff, bytes);
    }
    return *static_cast<T*>(p);
}

// The warp's live lanes named in mask, once every one of them has arrived.
inline bool warp_complete(const Warp& w) { return w.arrived == static_cast<unsigned>(std::popcount(w.mask & ~w.exited)); }

// The exchange is complete: its lanes may read (the caller holds w.m).
inline void warp_release(Warp& w) {
    w.readers.store(w.arrived, std::memory_order_relaxed);
    w.arrived = 0;
    w.generation.fetch_add(1, std::memory_order_release);
    futex_wake_all(w.generation);
}

inline void thread_exit() {  // the calling thread leaves the kernel
    Block* blk = current_block;
    Warp& w = blk->warps[threadIdx.x / 32];
    {
        std::lock_guard<std::mutex> lock(w.m);
        w.exited |= 1u << (threadIdx.x % 32);
        if (w.arrived > 0 && warp_complete(w)) warp_release(w);  // the lanes waiting on this one go on
    }
    blk->bar.arrive(true);
}

inline unsigned long long max_threads() {
    const char* env = std::getenv("CUDA_HOST_MAX_THREADS");
    return env != nullptr ? std::strtoull(env, nullptr, 10) : 8192ull;
}
}  // namespace cuda_host

inline void __syncthreads() { cuda_host::current_block->bar.arrive(false); }

inline float __shfl_xor_sync(unsigned mask, float x, int lane_mask) {
    cuda_host::Warp& w = cuda_host::current_block->warps[threadIdx.x / 32];
    const unsigned lane = threadIdx.x % 32;
    if (lane_mask < 0 || lane_mask > 31) cuda_host::fail("__shfl_xor_sync: lane mask %llu is not in [0, 32)", lane_mask);
    const unsigned src = lane ^ static_cast<unsigned>(lane_mask);
    if (!((mask >> lane) & 1u))
        cuda_host::fail("__shfl_xor_sync: lane %llu calls with mask %#llx, which does not name it", lane, mask);
    if (mask & ~w.present)
        cuda_host::fail("__shfl_xor_sync: mask %#llx names lanes the warp does not have (%#llx)", mask, w.present);
    if (!((mask >> src) & 1u))
        cuda_host::fail("__shfl_xor_sync: lane %llu reads lane %llu, which mask %#llx does not name", lane, src, mask);
    std::unique_lock<std::mutex> lock(w.m);
    for (std::uint32_t r; (r = w.readers.load(std::memory_order_acquire)) != 0;) {  // the last exchange is read out
        lock.unlock();
        cuda_host::futex_wait(w.readers, r);
        lock.lock();
    }
    if (w.arrived == 0)
        w.mask = mask;
    else if (w.mask != mask)
        cuda_host::fail("__shfl_xor_sync: lanes of one warp pass different masks (%#llx, %#llx)", w.mask, mask);
    if ((w.exited >> src) & 1u) cuda_host::fail("__shfl_xor_sync: lane %llu reads lane %llu, which has exited", lane, src);
    const std::uint32_t gen = w.generation.load(std::memory_order_relaxed);
    w.buf[lane] = x;
    ++w.arrived;
    if (cuda_host::warp_complete(w)) {
        cuda_host::warp_release(w);
        lock.unlock();
    } else {
        lock.unlock();
        while (w.generation.load(std::memory_order_acquire) == gen) cuda_host::futex_wait(w.generation, gen);
    }
    const float out = w.buf[src];
    if (w.readers.fetch_sub(1, std::memory_order_acq_rel) == 1) cuda_host::futex_wake_all(w.readers);
    return out;
}

inline float __uint_as_float(unsigned u) { return std::bit_cast<float>(u); }
inline unsigned __float_as_uint(float f) { return std::bit_cast<unsigned>(f); }
template <class T>
inline T __ldg(const T* p) {
    return *p;
}
#ifdef WKV_HOST_COUNT
// A counting build (build.py, count=True): the add runs in mem_counter.cpp, counted as one
// read-modify-write (the compare-and-swap loop of an inline one would count as a load alone).
extern "C" float wkvc_atomic_add(float* p, float x);
inline float atomicAdd(float* p, float x) { return wkvc_atomic_add(p, x); }
#else
inline float atomicAdd(float* p, float x) { return std::atomic_ref<float>(*p).fetch_add(x); }
#endif

inline float wkv_half_to_float(unsigned short h) { return static_cast<float>(std::bit_cast<_Float16>(h)); }
inline unsigned short wkv_float_to_half(float f) { return std::bit_cast<unsigned short>(static_cast<_Float16>(f)); }

namespace cuda_host {
// kernel<<<grid, block>>>(args...), 1-D grid and block: every thread of every block is started,
// then all are joined; returns when every block has finished.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), unsigned grid, unsigned block, Args... args) {
    if (block == 0 || block > 1024) fail("launch: %llu threads per block (a block has 1 to 1024)", block);
    if (grid == 0 || grid > 0x7fffffffu) fail("launch: %llu blocks (a 1-D grid has 1 to 2^31 - 1)", grid);
    const unsigned long long total = 1ull * grid * block, cap = max_threads();
    if (total > cap)
        fail("launch: %llu blocks x %llu threads = %llu threads would be alive at once, over the emulation's cap "
             "(CUDA_HOST_MAX_THREADS); use a smaller case",
             grid, block, total);
    blockDim = dim3{block, 1, 1};
    gridDim = dim3{grid, 1, 1};
    std::vector<std::unique_ptr<Block>> blocks;
    blocks.reserve(grid);
    for (unsigned bx = 0; bx < grid; ++bx) blocks.push_back(std::make_unique<Block>(block));
    std::vector<std::thread> threads;
    threads.reserve(total);
    for (unsigned bx = 0; bx < grid; ++bx) {
        for (unsigned t = 0; t < block; ++t) {
            try {
                threads.emplace_back([&, bx, t] {
                    threadIdx = dim3{t, 0, 0};
                    blockIdx = dim3{bx, 0, 0};
                    current_block = blocks[bx].get();
                    kernel(args...);
                    thread_exit();
                });
            } catch (const std::system_error&) {
                fail("launch: could not start thread %llu of %llu (lower CUDA_HOST_MAX_THREADS)", threads.size(),
                     total);
            }
        }
    }
    for (auto& th : threads) th.join();
}
}  // namespace cuda_host
