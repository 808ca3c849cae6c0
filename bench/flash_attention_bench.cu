// flash_attention_bench.cu: times g4moe's CUDA flash attention (ops/cuda/flash_attention.h) at Gemma 4
// shapes, batch 1: head_dim 256 with 16 query / 8 KV heads and a sliding window of 1024 (causal), and
// head_dim 512 with 16 query / 2 KV heads (causal), for each sequence length of --seq (default 4096,16384).
//
//   g4_bench_flash [--seq 4096,16384] [--iters 10]
//
// Each timing is the median of --iters runs (bench/cuda_timer.h). FLOPs count only the visible (query, key)
// pairs: forward 4·D·pairs·Nq (QKᵀ and PV), backward 2.5x the forward (dV, dP, dQ, dK and the recomputed S;
// the implementation also recomputes S and dP a second time in its dQ kernel, which is not counted), so
// forward+backward = 3.5x the forward.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include <cuda_bf16.h>

#include "core/cuda/cuda_check.h"
#include "cuda_timer.h"
#include "ops/cuda/device_buffer.h"
#include "ops/cuda/flash_attention.h"

using namespace g4::cuda;
using bf16 = __nv_bfloat16;

namespace {

// Deterministic pseudo-random bf16 values of standard deviation ~`scale` (uniform, hashed index).
__global__ void fill_random(bf16* x, std::int64_t n, std::uint32_t seed, float scale) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::uint32_t h = static_cast<std::uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    const float u = (h & 0xffffff) / 16777216.0f - 0.5f;  // uniform, std 0.29
    x[i] = __float2bfloat16(u * 3.46f * scale);
  }
}

DeviceBuffer random_bf16(std::int64_t n, std::uint32_t seed, float scale) {
  DeviceBuffer b(static_cast<std::size_t>(n) * 2);
  fill_random<<<1024, 256>>>(static_cast<bf16*>(b.data()), n, seed, scale);
  G4_CUDA_CHECK_LAUNCH();
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::int64_t> seqs{4096, 16384};
  int iters = 10;
  for (int a = 1; a < argc; ++a) {
    if (!std::strcmp(argv[a], "--seq") && a + 1 < argc) {
      seqs.clear();
      std::stringstream ss(argv[++a]);
      std::string item;
      while (std::getline(ss, item, ',')) seqs.push_back(std::stoll(item));
    } else if (!std::strcmp(argv[a], "--iters") && a + 1 < argc) {
      iters = std::atoi(argv[++a]);
    }
  }
  struct Shape {
    int D, Nq, Nkv;
    std::int64_t window;
  };
  const Shape shapes[] = {{256, 16, 8, 1024}, {512, 16, 2, 0}};
  cudaStream_t stream;
  G4_CUDA_CHECK(cudaStreamCreate(&stream));
  bench::Timer timer{stream, iters};
  std::printf("%-5s %-4s %-4s %-7s %-7s %12s %10s %10s %12s %10s\n", "D", "Nq", "Nkv", "window", "S", "pairs",
              "fwd_ms", "fwd_TF/s", "fwd+bwd_ms", "f+b_TF/s");
  for (const Shape& sh : shapes)
    for (std::int64_t S : seqs) {
      std::vector<std::int64_t> first(S), last(S);
      double pairs = 0;
      for (std::int64_t i = 0; i < S; ++i) {
        first[i] = sh.window > 0 ? std::max<std::int64_t>(0, i - sh.window + 1) : 0;
        last[i] = i;
        pairs += static_cast<double>(last[i] - first[i] + 1);
      }
      DeviceBuffer d_first(S * 8), d_last(S * 8);
      G4_CUDA_CHECK(cudaMemcpy(d_first.data(), first.data(), S * 8, cudaMemcpyHostToDevice));
      G4_CUDA_CHECK(cudaMemcpy(d_last.data(), last.data(), S * 8, cudaMemcpyHostToDevice));
      const std::int64_t nq = S * sh.Nq * sh.D, nk = S * sh.Nkv * sh.D;
      DeviceBuffer q = random_bf16(nq, 1, 0.3f), k = random_bf16(nk, 2, 0.3f), v = random_bf16(nk, 3, 1.0f),
                   dout = random_bf16(nq, 4, 1.0f);
      DeviceBuffer out(nq * 2), lse(S * sh.Nq * 4), dq(nq * 2), dk(nk * 2), dv(nk * 2);
      FlashVisibility vis;
      vis.queries = vis.keys = S;
      vis.first = static_cast<const std::int64_t*>(d_first.data());
      vis.last = static_cast<const std::int64_t*>(d_last.data());
      auto c = [](const DeviceBuffer& b) { return static_cast<const bf16*>(b.data()); };
      auto m = [](DeviceBuffer& b) { return static_cast<bf16*>(b.data()); };
      auto fwd = [&] {
        flash_attention_forward(c(q), c(k), c(v), vis, sh.Nq, sh.Nkv, sh.D, m(out),
                                static_cast<float*>(lse.data()), stream);
      };
      auto bwd = [&] {
        flash_attention_backward(c(q), c(k), c(v), c(out), c(dout), static_cast<const float*>(lse.data()),
                                 vis, sh.Nq, sh.Nkv, sh.D, m(dq), m(dk), m(dv), stream);
      };
      const double f_ms = timer.median_ms(fwd);
      const double fb_ms = timer.median_ms([&] {
        fwd();
        bwd();
      });
      const double flops = 4.0 * sh.D * pairs * sh.Nq;
      std::printf("%-5d %-4d %-4d %-7lld %-7lld %12.0f %10.3f %10.1f %12.3f %10.1f\n", sh.D, sh.Nq, sh.Nkv,
                  static_cast<long long>(sh.window), static_cast<long long>(S), pairs, f_ms,
                  flops / f_ms * 1e-9, fb_ms, 3.5 * flops / fb_ms * 1e-9);
    }
  G4_CUDA_CHECK(cudaStreamDestroy(stream));
  return 0;
}
