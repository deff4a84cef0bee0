// Global-memory access counter of the host emulation (wkvbench/hostemu/count.py drives it).
//
// The driver's translation unit -- shim, kernel source, driver -- is compiled with
// -fsanitize=kernel-address and asan-instrumentation-with-call-threshold=0 (build.py, count=True):
// g++ then calls __asan_{load,store}{1,2,4,8,16}_noabort(addr), or __asan_{load,store}N_noabort(addr,
// size), before EVERY memory access it keeps after optimisation, and links no sanitizer runtime.
// This file defines those callbacks. It is compiled WITHOUT the sanitizer (its own accesses would
// call the callbacks again).
//
// Only accesses whose first byte lies in a registered buffer are counted: the caller registers
// [base, base + bytes) of each tensor a launch receives before the launch; shared memory, the stack
// and the shim's own data fall outside and are not counted. Per buffer: bytes and accesses loaded,
// stored and read-modify-written (atomicAdd, which the shim routes to wkvc_atomic_add in a counting
// build), and one flag per byte loaded / stored for the distinct footprint. Counters are relaxed
// atomics (every CUDA thread is a std::thread here).
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace {
constexpr int kMaxBuffers = 64;

struct Buffer {
    std::uintptr_t base = 0, end = 0;
    std::unique_ptr<std::uint8_t[]> touched[2];  // 0: loaded, 1: stored (one flag per byte)
    std::atomic<std::uint64_t> bytes[3] = {0, 0, 0};  // load, store, atomic
    std::atomic<std::uint64_t> count[3] = {0, 0, 0};
};

Buffer buffers[kMaxBuffers];
int used = 0;
std::uintptr_t lo = UINTPTR_MAX, hi = 0;  // the registered buffers' hull (a quick reject)

inline void note(std::uintptr_t addr, std::size_t size, int kind) {
    if (addr < lo || addr >= hi) return;
    for (int i = 0; i < used; ++i) {
        Buffer& b = buffers[i];
        if (addr < b.base || addr >= b.end) continue;
        const std::size_t n = addr + size <= b.end ? size : b.end - addr;
        b.bytes[kind].fetch_add(n, std::memory_order_relaxed);
        b.count[kind].fetch_add(1, std::memory_order_relaxed);
        const std::size_t off = addr - b.base;
        for (int k = 0; k < 2; ++k) {
            if (kind == k || kind == 2) {
                for (std::size_t j = 0; j < n; ++j)
                    std::atomic_ref<std::uint8_t>(b.touched[k][off + j]).store(1, std::memory_order_relaxed);
            }
        }
        return;
    }
}
}  // namespace

extern "C" {
// Forget every buffer and count.
void wkvc_clear() {
    for (int i = 0; i < used; ++i) {
        Buffer& b = buffers[i];
        b.base = b.end = 0;
        b.touched[0].reset();
        b.touched[1].reset();
        for (int k = 0; k < 3; ++k) {
            b.bytes[k].store(0);
            b.count[k].store(0);
        }
    }
    used = 0;
    lo = UINTPTR_MAX;
    hi = 0;
}

// Register [base, base + bytes); returns its index, -1 when full, -2 when it overlaps a registered one.
int wkvc_add(std::uint64_t base, std::uint64_t bytes) {
    if (used == kMaxBuffers) return -1;
    const std::uintptr_t b0 = base, b1 = base + bytes;
    for (int i = 0; i < used; ++i)
        if (b0 < buffers[i].end && buffers[i].base < b1) return -2;
    Buffer& b = buffers[used];
    b.base = b0;
    b.end = b1;
    for (auto& t : b.touched) t = std::make_unique<std::uint8_t[]>(bytes);  // zeroed
    if (b0 < lo) lo = b0;
    if (b1 > hi) hi = b1;
    return used++;
}

// Buffer i's bytes and accesses: out = {load, store, atomic bytes, loads, stores, atomics}.
void wkvc_stats(int i, std::uint64_t* out) {
    for (int k = 0; k < 3; ++k) {
        out[k] = buffers[i].bytes[k].load();
        out[3 + k] = buffers[i].count[k].load();
    }
}

// Buffer i's flags, one byte per byte of the buffer: kind 0 loaded, 1 stored.
const std::uint8_t* wkvc_touched(int i, int kind) { return buffers[i].touched[kind].get(); }

// atomicAdd of a counting build: one read-modify-write of 4 bytes.
float wkvc_atomic_add(float* p, float x) {
    note(reinterpret_cast<std::uintptr_t>(p), sizeof(float), 2);
    return std::atomic_ref<float>(*p).fetch_add(x);
}

#define WKVC_SIZED(n)                                                                    \
    void __asan_load##n##_noabort(std::uintptr_t a) { note(a, n, 0); }                   \
    void __asan_store##n##_noabort(std::uintptr_t a) { note(a, n, 1); }
WKVC_SIZED(1)
WKVC_SIZED(2)
WKVC_SIZED(4)
WKVC_SIZED(8)
WKVC_SIZED(16)
#undef WKVC_SIZED
void __asan_loadN_noabort(std::uintptr_t a, std::size_t n) { note(a, n, 0); }
void __asan_storeN_noabort(std::uintptr_t a, std::size_t n) { note(a, n, 1); }
void __asan_handle_no_return() {}
}
