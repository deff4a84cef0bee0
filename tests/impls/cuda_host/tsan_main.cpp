// ThreadSanitizer driver of the CUDA C kernels: built by wkvbench/hostemu/build.py with -fsanitize=thread (an
// executable: TSan must start with the process), it runs float32 instances at tiny sizes on the
// host emulation, every block of a launch alive at once (cuda_shim.h), so a race between threads
// of a block or between blocks is reported. B = H = 1, N = 64, deterministic inputs; prints one
// checksum per run (NaN or not, the sanitizer's report is what the tests read).
//   tsan_main fwd SPLIT T...      inference forward bi_wkv7_kernel<float, 64, SPLIT>, gate on
//   tsan_main train SPLIT T...    training forward (CP = 8) and bi_wkv7_bwd_kernel, gate on
//   tsan_main catflip T...        catflip training forward and backward (T a multiple of 8)
// SPLIT: 2 or 8 (the instances this driver compiles, to keep the sanitized build small).
// The race mutants' build (-DWKV_TSAN_MUTANTS) keeps fwd and train at SPLIT 2: its sources carry
// switches (the tests' text substitutions) that drop the barrier or atomic numbered by the
// environment variable WKV_MUTANT, 0 (the default) dropping none.
#include "cuda_shim.h"

#include <cstdlib>

inline int wkv_mutant = 0;  // the mutant this run enacts (WKV_MUTANT)
// What a mutated `atomicAdd(` calls: a plain read-add-write when the run enacts mutant `which`.
inline float wkv_mutant_atomic_add(int which, float* p, float x) {
    if (wkv_mutant != which) return atomicAdd(p, x);
    const float old = *p;
    *p = old + x;
    return old;
}

#include "bi_wkv7_catflip.cu"
#include "bi_wkv7_cupy.cu"
#include "bi_wkv7_cupy_bwd.cu"

#include <cstring>
#include <string>

namespace {
constexpr int N = 64;

std::vector<float> values(std::size_t n, unsigned seed, float lo, float hi) {
    std::vector<float> out(n);
    unsigned long long s = 0x9e3779b97f4a7c15ull * (seed + 1);
    for (auto& x : out) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x = lo + (hi - lo) * static_cast<float>((s >> 40) & 0xffffff) / 16777216.f;
    }
    return out;
}

struct Inputs {
    explicit Inputs(int B, int T, int H)
        : n(static_cast<std::size_t>(B) * T * H * N),
          r(values(n, 1, -1.f, 1.f)),
          w(values(n, 2, -3.f, -0.6f)),
          k(values(n, 3, -0.3f, 0.3f)),
          v(values(n, 4, -1.f, 1.f)),
          a(values(n, 5, -0.1f, 0.1f)),
          b(values(n, 6, -0.1f, 0.1f)),
          dy(values(n, 7, -1.f, 1.f)),
          g(values(static_cast<std::size_t>(B) * T * H, 8, 0.f, 1.f)) {}
    std::size_t n;
    std::vector<float> r, w, k, v, a, b, dy, g;
};

double checksum(const std::vector<float>& x) {
    double s = 0;
    for (float e : x) s += e;
    return s;
}

template <int SPLIT>
void fwd(int T) {
    const int B = 1, H = 1;
    Inputs x(B, T, H);
    std::vector<float> y(x.n, NAN);
    cuda_host::launch(&bi_wkv7_kernel<float, N, SPLIT>, B * H * SPLIT, 2 * N, x.r.data(), x.w.data(), x.k.data(),
                      x.v.data(), x.a.data(), x.b.data(), x.g.data(), y.data(), y.data(), B, T, H);
    std::printf("fwd SPLIT=%d T=%d y %.6e\n", SPLIT, T, checksum(y));
}

template <int SPLIT>
void train(int T) {
    const int B = 1, H = 1, CP = 8, nck = (T + CP - 1) / CP;
    Inputs x(B, T, H);
    std::vector<float> y(x.n, NAN), sa(2 * x.n, NAN), ckpt(2ull * B * H * nck * N * N, NAN);
    cuda_host::launch(&bi_wkv7_train_kernel<float, N, SPLIT, CP>, B * H * SPLIT, 2 * N, x.r.data(), x.w.data(),
                      x.k.data(), x.v.data(), x.a.data(), x.b.data(), x.g.data(), y.data(), y.data(), sa.data(),
                      ckpt.data(), B, T, H);
    std::vector<float> grads[6];
    for (auto& gr : grads) gr.assign(x.n, 0.f);
    std::vector<float> dg(static_cast<std::size_t>(B) * T * H, 0.f);
    cuda_host::launch(&bi_wkv7_bwd_kernel<float, N, CP>, 2 * B * H, 2 * N, x.r.data(), x.w.data(), x.k.data(),
                      x.v.data(), x.a.data(), x.b.data(), x.g.data(), x.dy.data(), sa.data(), ckpt.data(),
                      grads[0].data(), grads[1].data(), grads[2].data(), grads[3].data(), grads[4].data(),
                      grads[5].data(), dg.data(), B, T, H);
    std::printf("train SPLIT=%d T=%d y %.6e dr %.6e da %.6e dg %.6e\n", SPLIT, T, checksum(y), checksum(grads[0]),
                checksum(grads[4]), checksum(dg));
}

void catflip(int T) {
#ifdef WKV_TSAN_MUTANTS
    cuda_host::fail("catflip: not in this build (T = %llu)", T);
#else
    const int B2 = 2, H = 1, CP = cf_cp<float>::value;
    if (T % CP != 0) cuda_host::fail("catflip: T = %llu is not a multiple of %llu", T, CP);
    Inputs x(B2, T, H);
    std::vector<float> y(x.n, NAN), sa(x.n, NAN), ckpt(static_cast<std::size_t>(B2) * H * (T / CP) * N * N, NAN);
    cuda_host::launch(&wkv7_catflip_fwd<float, N, true>, B2 * H, N, x.r.data(), x.w.data(), x.k.data(), x.v.data(),
                      x.a.data(), x.b.data(), y.data(), sa.data(), ckpt.data(), B2, T, H);
    std::vector<float> grads[6];
    for (auto& gr : grads) gr.assign(x.n, NAN);
    cuda_host::launch(&wkv7_catflip_bwd<float, N>, B2 * H, 2 * N, x.r.data(), x.w.data(), x.k.data(), x.v.data(),
                      x.a.data(), x.b.data(), x.dy.data(), sa.data(), ckpt.data(), grads[0].data(), grads[1].data(),
                      grads[2].data(), grads[3].data(), grads[4].data(), grads[5].data(), B2, T, H);
    std::printf("catflip T=%d y %.6e dr %.6e da %.6e\n", T, checksum(y), checksum(grads[0]), checksum(grads[4]));
#endif
}
}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) cuda_host::fail("usage: tsan_main fwd|train SPLIT T... | catflip T...");
    if (const char* env = std::getenv("WKV_MUTANT")) wkv_mutant = std::atoi(env);
    const std::string mode = argv[1];
    const bool split_arg = mode == "fwd" || mode == "train";
    const int split = split_arg ? std::atoi(argv[2]) : 0;
    if (split_arg && split != 2 && split != 8) cuda_host::fail("SPLIT must be 2 or 8, got %llu", split);
    for (int i = split_arg ? 3 : 2; i < argc; ++i) {
        const int T = std::atoi(argv[i]);
        if (T < 1) cuda_host::fail("T must be >= 1");
        if (mode == "fwd")
#ifdef WKV_TSAN_MUTANTS
            split == 2 ? fwd<2>(T) : cuda_host::fail("SPLIT 8: not in this build");
#else
            split == 2 ? fwd<2>(T) : fwd<8>(T);
#endif
        else if (mode == "train")
#ifdef WKV_TSAN_MUTANTS
            split == 2 ? train<2>(T) : cuda_host::fail("SPLIT 8: not in this build");
#else
            split == 2 ? train<2>(T) : train<8>(T);
#endif
        else if (mode == "catflip")
            catflip(T);
        else
            cuda_host::fail("unknown mode");
    }
    return 0;
}
