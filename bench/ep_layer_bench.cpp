// ep_layer_bench.cpp: what the GPU expert-parallel layer (dist/nccl_moe_alltoall.h) costs on top of the
// one-GPU experts layer (ops/cuda/moe_experts.h) at 26B-A4B shapes (H 2816, I 704, E 128, top-8), forward and
// forward+backward, balanced routing ((t·K + k) mod E, weights 1/K, NeMo's FakeBalancedGate).
//
// One rank (the only GPU machine lent so far): every row goes through the route/pack kernels, the counts'
// host sync and NCCL self-sends, so the difference to MoeExpertsCuda is the dispatcher's own overhead, the
// single-GPU proxy of issue 8. Under `mpirun -np N` (N GPUs, an MPI build) each rank times its share of a
// EP = N layer with the same per-rank tokens; the one-GPU layer is then timed on each rank's own tokens over
// all experts, for reference only.
//
// Usage: g4_bench_ep [--tokens 4096,16384] [--repeat 10]; prints one JSON line per size (rank 0).
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/cuda/cuda_check.h"
#include "cuda_timer.h"
#include "dist/communicator.h"
#include "dist/nccl_communicator.h"
#include "moe/nccl_alltoall_dispatcher.h"
#include "ops/cuda/cuda_context.h"
#include "ops/cuda/device_buffer.h"
#include "ops/cuda/moe_experts.h"

namespace {

using g4::cuda::CudaContext;
using g4::cuda::DeviceBuffer;

// Small random bf16 values (an LCG: no cuRAND dependency), so the GEMMs see ordinary data.
DeviceBuffer random_bf16(std::size_t n, std::uint32_t seed, float scale) {
  std::vector<std::uint16_t> host(n);
  std::uint32_t s = seed;
  for (auto& v : host) {
    s = s * 1664525u + 1013904223u;
    const float f = (static_cast<float>(s >> 8) / 16777216.0f - 0.5f) * scale;
    std::uint32_t bits;
    std::memcpy(&bits, &f, 4);
    v = static_cast<std::uint16_t>(bits >> 16);
  }
  DeviceBuffer d(n * 2);
  G4_CUDA_CHECK(cudaMemcpy(d.data(), host.data(), n * 2, cudaMemcpyHostToDevice));
  return d;
}

std::vector<std::int64_t> parse_list(const char* text) {
  std::vector<std::int64_t> out;
  for (const char* p = text; *p;) {
    out.push_back(std::strtoll(p, nullptr, 10));
    p = std::strchr(p, ',');
    if (!p) break;
    ++p;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::int64_t> sizes = {4096, 16384};
  int repeat = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--tokens")) sizes = parse_list(argv[i + 1]);
    if (!std::strcmp(argv[i], "--repeat")) repeat = std::max(1, std::atoi(argv[i + 1]));
  }
  const int H = 2816, I = 704, E = 128, K = 8;
  g4::NcclCommunicator ep(g4::world_communicator());
  CudaContext ctx(ep.device());
  const std::int64_t T_max = *std::max_element(sizes.begin(), sizes.end());

  // All experts on every rank (the one-GPU reference needs them); the EP layer reads its own block.
  const std::size_t n_gu = std::size_t(E) * H * 2 * I, n_d = std::size_t(E) * I * H;
  DeviceBuffer gate_up = random_bf16(n_gu, 1, 0.04f), down = random_bf16(n_d, 2, 0.08f);
  DeviceBuffer x = random_bf16(std::size_t(T_max) * H, 3, 2.0f),
               dy = random_bf16(std::size_t(T_max) * H, 4, 2.0f);
  std::vector<int> idx(T_max * K);
  std::vector<float> w(T_max * K, 1.0f / K);
  for (std::int64_t s = 0; s < T_max * K; ++s) idx[s] = static_cast<int>((s + ep.rank() * 7) % E);
  DeviceBuffer d_idx(idx.size() * 4), d_w(w.size() * 4);
  G4_CUDA_CHECK(cudaMemcpy(d_idx.data(), idx.data(), idx.size() * 4, cudaMemcpyHostToDevice));
  G4_CUDA_CHECK(cudaMemcpy(d_w.data(), w.data(), w.size() * 4, cudaMemcpyHostToDevice));
  DeviceBuffer y(std::size_t(T_max) * H * 2), dx(std::size_t(T_max) * H * 2), d_weights(T_max * K * 4);
  DeviceBuffer g_gu(n_gu * 2), g_d(n_d * 2);  // bf16, overwritten

  for (std::int64_t T : sizes) {
    g4::cuda::MoeExpertsCuda one(ctx, {T, H, I, E, K});
    g4::NcclMoeAlltoall layer(ctx, ep, {T, H, I, E, K});
    const g4::ExpertRange r = layer.local_experts();
    const auto* gu = gate_up.as<__nv_bfloat16>();
    const auto* dn = down.as<__nv_bfloat16>();
    g4::cuda::ExpertWeights all{gu, dn};
    g4::cuda::ExpertWeights local{gu + r.start * H * 2 * I, dn + r.start * I * H};
    g4::cuda::ExpertGrads grads_all{g_gu.data(), g_d.data(), false};
    g4::cuda::ExpertGrads grads_local{g_gu.as<__nv_bfloat16>() + r.start * H * 2 * I,
                                      g_d.as<__nv_bfloat16>() + r.start * I * H, false};
    auto one_fwd = [&] {
      one.forward(T, x.as<__nv_bfloat16>(), d_w.as<float>(), d_idx.as<int>(), nullptr, all,
                  y.as<__nv_bfloat16>());
    };
    auto one_fwdbwd = [&] {
      one_fwd();
      one.backward(dy.as<__nv_bfloat16>(), all, grads_all, dx.as<__nv_bfloat16>(), d_weights.as<float>());
    };
    auto ep_fwd = [&] {
      layer.forward(T, x.as<__nv_bfloat16>(), d_w.as<float>(), d_idx.as<int>(), nullptr, local,
                    y.as<__nv_bfloat16>());
    };
    auto ep_fwdbwd = [&] {
      ep_fwd();
      layer.backward(dy.as<__nv_bfloat16>(), local, grads_local, dx.as<__nv_bfloat16>(),
                     d_weights.as<float>());
    };
    const g4::cuda::bench::Timer timer{ctx.stream(), repeat};
    const double a = timer.median_ms(one_fwd), b = timer.median_ms(one_fwdbwd);
    const double c = timer.median_ms(ep_fwd), d = timer.median_ms(ep_fwdbwd);
    std::int64_t sent = 0, received = 0;
    for (auto v : layer.send_counts()) sent += v;
    for (auto v : layer.recv_counts()) received += v;
    if (ep.rank() == 0)
      std::printf(
          "{\"ranks\": %d, \"tokens_per_rank\": %lld, \"rows_sent\": %lld, \"rows_received\": %lld, "
          "\"one_gpu_fwd_ms\": %.3f, \"one_gpu_fwdbwd_ms\": %.3f, \"ep_fwd_ms\": %.3f, \"ep_fwdbwd_ms\": "
          "%.3f, "
          "\"ep_overhead_fwd\": %.3f, \"ep_overhead_fwdbwd\": %.3f}\n",
          ep.size(), static_cast<long long>(T), static_cast<long long>(sent),
          static_cast<long long>(received), a, b, c, d, c / a, d / b);
  }
  return 0;
}
