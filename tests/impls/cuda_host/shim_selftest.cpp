// Checks of cuda_shim.h's own model (run by tests/impls/test_cuda_host_races.py, one mode per
// process; exit 0 and "ok" on success). The concurrency checks would deadlock, not fail, under a
// shim that ran blocks (or a block's warps) one after another: the tests run them with a timeout.
//   blocks    block 0 waits for a flag that only block 1 sets: every block of a launch is alive
//   shared    each block fills its __shared__ array with its index: storage is per block
//   warps     warp 1 waits for a flag that warp 0 sets right after a shuffle: a shuffle holds its
//             own warp only
//   mask      lanes 0-15 shuffle with mask 0xffff while lanes 16-31 do not call it
//   bad-block / bad-grid / over-cap / bad-mask   launch shapes and a mask the shim refuses (abort)
#include "cuda_shim.h"

#include <string>

namespace {
int flag = 0;
float out[2048];

__global__ void blocks_kernel() {
    if (blockIdx.x == 1 && threadIdx.x == 0) std::atomic_ref<int>(flag).store(1);
    if (blockIdx.x == 0)
        while (std::atomic_ref<int>(flag).load() == 0) std::this_thread::yield();
}

__global__ void shared_kernel() {
    auto& s = ::cuda_host::block_shared<float[64], 0>();  // `__shared__ float s[64];` as build.py rewrites it
    s[threadIdx.x] = static_cast<float>(blockIdx.x);
    __syncthreads();
    out[blockIdx.x * 64 + threadIdx.x] = s[(threadIdx.x + 1) % 64];
}

__global__ void warps_kernel() {
    if (threadIdx.x < 32) {
        out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, static_cast<float>(threadIdx.x), 1);
        if (threadIdx.x == 0) std::atomic_ref<int>(flag).store(1);
    } else {
        while (std::atomic_ref<int>(flag).load() == 0) std::this_thread::yield();
    }
}

__global__ void mask_kernel() {
    if (threadIdx.x < 16) out[threadIdx.x] = __shfl_xor_sync(0xffffu, static_cast<float>(threadIdx.x), 3);
}

__global__ void bad_mask_kernel() { out[threadIdx.x] = __shfl_xor_sync(0xffffu, 1.f, 16); }

__global__ void nothing() {}
}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "blocks") {
        cuda_host::launch(&blocks_kernel, 2, 32);
    } else if (mode == "shared") {
        cuda_host::launch(&shared_kernel, 8, 64);
        for (int i = 0; i < 8 * 64; ++i)
            if (out[i] != static_cast<float>(i / 64)) cuda_host::fail("shared: element %llu reads %llu", i, out[i]);
    } else if (mode == "warps") {
        cuda_host::launch(&warps_kernel, 1, 64);
        for (int i = 0; i < 32; ++i)
            if (out[i] != static_cast<float>(i ^ 1)) cuda_host::fail("warps: lane %llu", i);
    } else if (mode == "mask") {
        cuda_host::launch(&mask_kernel, 1, 32);
        for (int i = 0; i < 16; ++i)
            if (out[i] != static_cast<float>(i ^ 3)) cuda_host::fail("mask: lane %llu", i);
    } else if (mode == "bad-block") {
        cuda_host::launch(&nothing, 1, 1025);
    } else if (mode == "bad-grid") {
        cuda_host::launch(&nothing, 0, 32);
    } else if (mode == "over-cap") {
        cuda_host::launch(&nothing, 9, 1024);
    } else if (mode == "bad-mask") {
        cuda_host::launch(&bad_mask_kernel, 1, 32);
    } else {
        cuda_host::fail("unknown mode");
    }
    std::printf("ok\n");
    return 0;
}
