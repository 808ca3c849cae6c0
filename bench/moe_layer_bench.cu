// moe_layer_bench.cu: times g4moe's CUDA MoE experts layer at 26B-A4B shapes (H 2816, I 704, E 128, top-8),
// forward and forward+backward, with routing from a real Gemma4Gate on random data and from a balanced gate,
// next to the measured cuBLAS bf16 dense peak and cuBLAS's grouped GEMM; each grouped GEMM is also timed
// alone.
//
//   g4_bench_moe [--tokens 4096,16384] [--iters 20] [--rounds 3] [--variants NAME,...] [--routing-dir DIR]
//                [--json FILE]
// Each timing is the median of --iters runs; the layer's variants (gathers fused into the GEMM loads, or
// materialised) are timed in --rounds interleaved rounds and the median over rounds is recorded.
// With --routing-dir, the routings used are written there (indices int32 [T,8], weights fp32 [T,8]) so that
// bench/moe_peers.py times the PyTorch peers on the very same routing. FLOPs: forward = 2 T K 3 I H; fwd+bwd
// = 3x.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <cuda_bf16.h>

#include "core/cuda/cuda_check.h"
#include "cuda_timer.h"
#include "ops/cuda/cuda_context.h"
#include "ops/cuda/device_buffer.h"
#include "ops/cuda/grouped_gemm.h"
#include "ops/cuda/moe_experts.h"
#include "ops/cuda/moe_gate.h"
#include "ops/cuda/moe_permute.h"
#include "ops/cuda/weighted_geglu.h"

using namespace g4::cuda;
using bf16 = __nv_bfloat16;

namespace {

constexpr int H = 2816, I = 704, E = 128, K = 8;

// The layer's variants timed side by side, and the name each one's json keys carry.
struct BenchVariant {
  const char* name;
  bool fused_gather;  // false: the layer materialises the gathers of x and dy (GatherMode)
};
constexpr BenchVariant kAllBenchVariants[] = {{"fused", true}, {"materialised", false}};
// The variants this run times (--variants NAME,...; default all).
std::vector<BenchVariant> g_bench_variants(std::begin(kAllBenchVariants), std::end(kAllBenchVariants));

__device__ float hash_normal(unsigned long long i, unsigned seed) {
  // Two hashed uniforms through Box-Muller: deterministic, cheap, good enough for benchmark data.
  unsigned long long z = i * 0x9E3779B97F4A7C15ull + seed * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  float u1 = ((z & 0xffffffu) + 1) / 16777217.0f, u2 = ((z >> 24) & 0xffffffu) / 16777216.0f;
  return sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
}
__global__ void fill_bf16(bf16* p, std::size_t n, float scale, unsigned seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    p[i] = __float2bfloat16_rn(hash_normal(i, seed) * scale);
}
__global__ void fill_f32(float* p, std::size_t n, float scale, float offset, unsigned seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    p[i] = offset + (scale == 0.0f ? 0.0f : hash_normal(i, seed) * scale);
}
__global__ void balanced_routing(int* idx, float* w, std::size_t tokens) {
  std::size_t s = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x;
  if (s >= tokens * K) return;
  idx[s] = static_cast<int>(s % E);  // FakeBalancedGate: (t K + k) mod E
  w[s] = 1.0f / K;
}

void fill(bf16* p, std::size_t n, float scale, unsigned seed) {
  fill_bf16<<<1024, 256>>>(p, n, scale, seed);
  G4_CUDA_CHECK_LAUNCH();
}

using bench::Timer;

std::map<std::string, double> results;
void record(const std::string& key, double v) {
  results[key] = v;
  std::printf("%-52s %10.4f\n", key.c_str(), v);
  std::fflush(stdout);
}

double dense_peak(CudaContext& ctx, const Timer& timer) {
  const int n = 8192;
  DeviceBuffer a(std::size_t(n) * n * 2), b(std::size_t(n) * n * 2), c(std::size_t(n) * n * 2);
  fill(a.as<bf16>(), std::size_t(n) * n, 1.0f, 1);
  fill(b.as<bf16>(), std::size_t(n) * n, 1.0f, 2);
  const float one = 1.0f, zero = 0.0f;
  double ms = timer.median_ms([&] {
    G4_CUBLAS_CHECK(cublasGemmEx(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a.data(), CUDA_R_16BF,
                                 n, b.data(), CUDA_R_16BF, n, &zero, c.data(), CUDA_R_16BF, n,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  });
  return 2.0 * n * double(n) * n / ms / 1e9;
}

// cuBLAS grouped GEMM for h = X @ W_gu[e] (needs the per-expert counts on the host). Returns ms; out gets h.
double cublas_grouped_gate_up(CudaContext& ctx, const Timer& timer, const std::vector<int>& offsets,
                              const bf16* x, const bf16* wgu, bf16* out) {
  std::vector<int> m, n, k, lda, ldb, ldc, gsize;
  std::vector<const void*> A, B;
  std::vector<void*> C;
  std::vector<float> alpha, beta;
  for (int e = 0; e < E; ++e) {
    int rows = offsets[e + 1] - offsets[e];
    if (rows == 0) continue;
    // Column-major view: h_e^T [2I, rows] = W_e^T-as-[2I, H] * X_e^T [H, rows]
    m.push_back(2 * I);
    n.push_back(rows);
    k.push_back(H);
    lda.push_back(2 * I);
    ldb.push_back(H);
    ldc.push_back(2 * I);
    A.push_back(wgu + std::size_t(e) * H * 2 * I);
    B.push_back(x + std::size_t(offsets[e]) * H);
    C.push_back(out + std::size_t(offsets[e]) * 2 * I);
    alpha.push_back(1.0f);
    beta.push_back(0.0f);
    gsize.push_back(1);
  }
  int groups = static_cast<int>(m.size());
  std::vector<cublasOperation_t> ta(groups, CUBLAS_OP_N), tb(groups, CUBLAS_OP_N);
  DeviceBuffer dA(groups * sizeof(void*)), dB(groups * sizeof(void*)), dC(groups * sizeof(void*));
  G4_CUDA_CHECK(cudaMemcpy(dA.data(), A.data(), groups * sizeof(void*), cudaMemcpyHostToDevice));
  G4_CUDA_CHECK(cudaMemcpy(dB.data(), B.data(), groups * sizeof(void*), cudaMemcpyHostToDevice));
  G4_CUDA_CHECK(cudaMemcpy(dC.data(), C.data(), groups * sizeof(void*), cudaMemcpyHostToDevice));
  return timer.median_ms([&] {
    G4_CUBLAS_CHECK(cublasGemmGroupedBatchedEx(
        ctx.cublas(), ta.data(), tb.data(), m.data(), n.data(), k.data(), alpha.data(), dA.as<const void*>(),
        CUDA_R_16BF, lda.data(), dB.as<const void*>(), CUDA_R_16BF, ldb.data(), beta.data(), dC.as<void*>(),
        CUDA_R_16BF, ldc.data(), groups, gsize.data(), CUBLAS_COMPUTE_32F));
  });
}

double rel_diff_bf16(const bf16* a, const bf16* b, std::size_t n) {
  std::vector<bf16> ha(n), hb(n);
  G4_CUDA_CHECK(cudaMemcpy(ha.data(), a, n * 2, cudaMemcpyDeviceToHost));
  G4_CUDA_CHECK(cudaMemcpy(hb.data(), b, n * 2, cudaMemcpyDeviceToHost));
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double x = __bfloat162float(ha[i]), y = __bfloat162float(hb[i]);
    if (!std::isfinite(x)) return INFINITY;
    num += (x - y) * (x - y);
    den += y * y;
  }
  return std::sqrt(num / den);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void run_tokens(CudaContext& ctx, const Timer& timer, int T, double peak, const std::string& routing_dir,
                int rounds) {
  const double fwd_flops = 2.0 * T * K * 3.0 * I * H;
  cudaStream_t st = ctx.stream();
  std::size_t ngu = std::size_t(E) * H * 2 * I, nd = std::size_t(E) * I * H;
  DeviceBuffer x(std::size_t(T) * H * 2), dy(std::size_t(T) * H * 2), y(std::size_t(T) * H * 2),
      dx(std::size_t(T) * H * 2), wgu(ngu * 2), wd(nd * 2), gwgu(ngu * 2), gwd(nd * 2);
  fill(x.as<bf16>(), std::size_t(T) * H, 1.0f, 10);
  fill(dy.as<bf16>(), std::size_t(T) * H, 1.0f, 11);
  fill(wgu.as<bf16>(), ngu, 1.0f / std::sqrt(float(H)), 12);
  fill(wd.as<bf16>(), nd, 1.0f / std::sqrt(float(I)), 13);
  DeviceBuffer idx(std::size_t(T) * K * 4), w(std::size_t(T) * K * 4), dw(std::size_t(T) * K * 4);

  // Gate (also timed): random router weights, scale 1.
  GateShape gs{T, H, E, K, 1e-6f};
  DeviceBuffer proj(std::size_t(E) * H * 4), scale(H * 4), rms(T * 4), ns(std::size_t(T) * H * 4),
      logits(std::size_t(T) * E * 4), gscratch(moe_gate_backward_scratch_floats(gs) * 4),
      gdx(std::size_t(T) * H * 4), gdproj(std::size_t(E) * H * 4), gdscale(H * 4);
  fill_f32<<<256, 256>>>(proj.as<float>(), std::size_t(E) * H, 1.0f, 0.0f, 14);
  G4_CUDA_CHECK_LAUNCH();
  fill_f32<<<16, 256>>>(scale.as<float>(), H, 0.0f, 1.0f, 15);
  G4_CUDA_CHECK_LAUNCH();
  G4_CUDA_CHECK(cudaDeviceSynchronize());
  GateSaved saved{rms.as<float>(), ns.as<float>(), logits.as<float>(), idx.as<int>(), w.as<float>()};
  std::string tag = std::to_string(T);
  tag.insert(0, 1, 'T');  // (not "T" + to_string: GCC 12 -Wrestrict false positive)
  record("gate_fwd_ms_" + tag, timer.median_ms([&] {
    moe_gate_forward(ctx, gs, x.as<bf16>(), proj.as<float>(), scale.as<float>(), saved);
  }));
  record("gate_bwd_ms_" + tag, timer.median_ms([&] {
    moe_gate_backward(ctx, gs, x.as<bf16>(), proj.as<float>(), scale.as<float>(), saved, w.as<float>(),
                      gscratch.as<float>(), gdx.as<float>(), gdproj.as<float>(), gdscale.as<float>());
  }));

  MoeExpertsCuda experts(ctx, {T, H, I, E, K});
  ExpertWeights ew{wgu.as<bf16>(), wd.as<bf16>()};
  ExpertGrads eg{gwgu.data(), gwd.data(), false};
  for (const char* routing : {"gate", "balanced"}) {
    if (std::strcmp(routing, "gate") == 0) {
      moe_gate_forward(ctx, gs, x.as<bf16>(), proj.as<float>(), scale.as<float>(), saved);
    } else {
      balanced_routing<<<(T * K + 255) / 256, 256, 0, st>>>(idx.as<int>(), w.as<float>(), T);
      G4_CUDA_CHECK_LAUNCH();
    }
    ctx.synchronize();
    if (!routing_dir.empty()) {
      std::vector<int> hi(std::size_t(T) * K);
      std::vector<float> hw(std::size_t(T) * K);
      G4_CUDA_CHECK(cudaMemcpy(hi.data(), idx.data(), hi.size() * 4, cudaMemcpyDeviceToHost));
      G4_CUDA_CHECK(cudaMemcpy(hw.data(), w.data(), hw.size() * 4, cudaMemcpyDeviceToHost));
      std::string base = routing_dir + "/" + routing + "_" + tag;
      std::ofstream(base + "_idx.bin", std::ios::binary)
          .write(reinterpret_cast<char*>(hi.data()), hi.size() * 4);
      std::ofstream(base + "_w.bin", std::ios::binary)
          .write(reinterpret_cast<char*>(hw.data()), hw.size() * 4);
    }
    // The variants (g_bench_variants), timed in `rounds` interleaved rounds (each round times every variant
    // once); the median over rounds is recorded, so that drift of the clocks during the run falls on all
    // alike. Keys without a variant suffix repeat the numbers of the layer's default.
    const int npol = static_cast<int>(g_bench_variants.size());
    const GatherMode default_mode = experts.gather_mode();
    const bool default_fused = experts.gathers_fused(T);  // under the layer's default GatherMode
    std::vector<std::vector<double>> f_runs(npol), fb_runs(npol);
    for (int round = 0; round < rounds; ++round)
      for (int v = 0; v < npol; ++v) {
        experts.set_gather_mode(g_bench_variants[v].fused_gather ? GatherMode::fused
                                                                 : GatherMode::materialised);
        auto fwd = [&] {
          experts.forward(T, x.as<bf16>(), w.as<float>(), idx.as<int>(), nullptr, ew, y.as<bf16>());
        };
        auto fwdbwd = [&] {
          fwd();
          experts.backward(dy.as<bf16>(), ew, eg, dx.as<bf16>(), dw.as<float>());
        };
        f_runs[v].push_back(timer.median_ms(fwd));
        fb_runs[v].push_back(timer.median_ms(fwdbwd));
      }
    for (int v = 0; v < npol; ++v) {
      const BenchVariant& bp = g_bench_variants[v];
      const double f = median(f_runs[v]), fb = median(fb_runs[v]);
      for (std::string suffix : {std::string("_").append(bp.name), std::string()}) {
        // No suffix: the layer as it runs by default.
        if (suffix.empty() && bp.fused_gather != default_fused) continue;
        std::string key = std::string(routing) + "_" + tag + suffix;
        record("g4_fwd_ms_" + key, f);
        record("g4_fwd_tflops_" + key, fwd_flops / f / 1e9);
        record("g4_fwdbwd_ms_" + key, fb);
        record("g4_fwdbwd_tflops_" + key, 3 * fwd_flops / fb / 1e9);
        record("g4_fwdbwd_frac_peak_" + key, 3 * fwd_flops / fb / 1e9 / peak);
      }
    }
    experts.set_gather_mode(default_mode);
  }

  // Per-kernel breakdown on the gate routing: rerun the forward, then time each piece alone.
  moe_gate_forward(ctx, gs, x.as<bf16>(), proj.as<float>(), scale.as<float>(), saved);
  experts.forward(T, x.as<bf16>(), w.as<float>(), idx.as<int>(), nullptr, ew, y.as<bf16>());
  ctx.synchronize();
  std::vector<int> offsets(E + 1), tiles(E + 1);
  G4_CUDA_CHECK(cudaMemcpy(offsets.data(), experts.expert_offsets(), (E + 1) * 4, cudaMemcpyDeviceToHost));
  int M = offsets[E];
  int max_count = 0, min_count = M;
  for (int e = 0; e < E; ++e) {
    max_count = std::max(max_count, offsets[e + 1] - offsets[e]);
    min_count = std::min(min_count, offsets[e + 1] - offsets[e]);
  }
  record("gate_routing_rows_per_expert_min_" + tag, min_count);
  record("gate_routing_rows_per_expert_max_" + tag, max_count);
  for (int e = 0; e <= E; ++e) tiles[e] = 0;
  for (int e = 0; e < E; ++e) tiles[e + 1] = tiles[e] + (offsets[e + 1] - offsets[e] + 127) / 128;
  DeviceBuffer doff(std::size_t(E + 1) * 4), dtile(std::size_t(E + 1) * 4);
  G4_CUDA_CHECK(cudaMemcpy(doff.data(), offsets.data(), (E + 1) * 4, cudaMemcpyHostToDevice));
  G4_CUDA_CHECK(cudaMemcpy(dtile.data(), tiles.data(), (E + 1) * 4, cudaMemcpyHostToDevice));
  std::size_t rows = std::size_t(T) * K;
  DeviceBuffer xp(rows * H * 2), hbuf(rows * 2 * I * 2), hcub(rows * 2 * I * 2), abuf(rows * I * 2),
      obuf(rows * H * 2), dhbuf(rows * 2 * I * 2), dpbuf(rows * 4), rw(rows * 4), rt(rows * 4);
  fill(xp.as<bf16>(), rows * H, 1.0f, 20);
  fill(abuf.as<bf16>(), rows * I, 1.0f, 21);
  fill(dhbuf.as<bf16>(), rows * 2 * I, 1.0f, 22);
  fill_f32<<<256, 256>>>(rw.as<float>(), rows, 0.0f, 0.125f, 0);
  G4_CUDA_CHECK_LAUNCH();
  // Each GEMM timed once a round for `rounds` rounds; the medians are recorded after the last round (as the
  // layer timings above).
  std::map<std::string, std::pair<double, std::vector<double>>> gemm_runs;  // name -> (flops, times)
  auto gemm_report = [&](const std::string& name, double flops, const std::function<void()>& fn) {
    auto& entry = gemm_runs[name];
    entry.first = flops;
    entry.second.push_back(timer.median_ms(fn));
  };
  const double f1 = 2.0 * M * H * 2.0 * I, f2 = 2.0 * M * I * H;
  for (int round = 0; round < rounds; ++round) {
    {
      const std::string p = "gemm";
      gemm_report(p + "_fwd_gate_up", f1, [&] {
        grouped_gemm_rows(
            {xp.as<bf16>(), H, nullptr, wgu.as<bf16>(), std::int64_t(H) * 2 * I, false, hbuf.as<bf16>(),
             2 * I, H, 2 * I, E, std::int64_t(rows), doff.as<int>(), dtile.as<int>()},
            st);
      });
      gemm_report(p + "_fwd_down", f2, [&] {
        grouped_gemm_rows({abuf.as<bf16>(), I, nullptr, wd.as<bf16>(), std::int64_t(I) * H, false,
                           obuf.as<bf16>(), H, I, H, E, std::int64_t(rows), doff.as<int>(), dtile.as<int>()},
                          st);
      });
      gemm_report(p + "_dgrad_down", f2, [&] {
        grouped_gemm_rows({obuf.as<bf16>(), H, nullptr, wd.as<bf16>(), std::int64_t(I) * H, true,
                           abuf.as<bf16>(), I, H, I, E, std::int64_t(rows), doff.as<int>(), dtile.as<int>()},
                          st);
      });
      gemm_report(p + "_dgrad_gate_up", f1, [&] {
        grouped_gemm_rows(
            {dhbuf.as<bf16>(), 2 * I, nullptr, wgu.as<bf16>(), std::int64_t(H) * 2 * I, true, obuf.as<bf16>(),
             H, 2 * I, H, E, std::int64_t(rows), doff.as<int>(), dtile.as<int>()},
            st);
      });
      // The two rows GEMMs whose A the layer gathers (x and dy through row_token, inside the loads).
      gemm_report(p + "_fwd_gate_up_gathered", f1, [&] {
        grouped_gemm_rows(
            {x.as<bf16>(), H, experts.row_token(), wgu.as<bf16>(), std::int64_t(H) * 2 * I, false,
             hbuf.as<bf16>(), 2 * I, H, 2 * I, E, std::int64_t(rows), doff.as<int>(), dtile.as<int>()},
            st);
      });
      gemm_report(p + "_dgrad_down_gathered", f2, [&] {
        grouped_gemm_rows({dy.as<bf16>(), H, experts.row_token(), wd.as<bf16>(), std::int64_t(I) * H, true,
                           abuf.as<bf16>(), I, H, I, E, std::int64_t(rows), doff.as<int>(), dtile.as<int>()},
                          st);
      });
      gemm_report(p + "_wgrad_down", f2, [&] {
        grouped_gemm_weight_grad({abuf.as<bf16>(), I, nullptr, obuf.as<bf16>(), H, nullptr, gwd.data(), false,
                                  false, I, H, E, doff.as<int>()},
                                 st);
      });
      gemm_report(p + "_wgrad_gate_up", f1, [&] {
        grouped_gemm_weight_grad({xp.as<bf16>(), H, nullptr, dhbuf.as<bf16>(), 2 * I, nullptr, gwgu.data(),
                                  false, false, H, 2 * I, E, doff.as<int>()},
                                 st);
      });
    }
  }
  for (const auto& [name, runs] : gemm_runs) {
    const double ms = median(runs.second);
    record(name + "_ms_" + tag, ms);
    record(name + "_tflops_" + tag, runs.first / ms / 1e9);
    record(name + "_frac_peak_" + tag, runs.first / ms / 1e9 / peak);
  }
  // cuBLAS grouped GEMM on the same problem, and the agreement of the two.
  grouped_gemm_rows(
      {xp.as<bf16>(), H, nullptr, wgu.as<bf16>(), std::int64_t(H) * 2 * I, false, hbuf.as<bf16>(), 2 * I, H,
       2 * I, E, std::int64_t(rows), doff.as<int>(), dtile.as<int>()},
      st);
  double cub = cublas_grouped_gate_up(ctx, timer, offsets, xp.as<bf16>(), wgu.as<bf16>(), hcub.as<bf16>());
  record("cublas_grouped_fwd_gate_up_ms_" + tag, cub);
  record("cublas_grouped_fwd_gate_up_tflops_" + tag, f1 / cub / 1e9);
  ctx.synchronize();
  record("g4_vs_cublas_gate_up_rel_diff_" + tag,
         rel_diff_bf16(hbuf.as<bf16>(), hcub.as<bf16>(), std::size_t(M) * 2 * I));
  // The element-wise kernels alone.
  DeviceBuffer scratch(moe_permute_scratch_ints(T, K, E) * 4), off2((E + 1) * 4), tile2((E + 1) * 4),
      slot(rows * 4);
  MoePermutation perm{off2.as<int>(), tile2.as<int>(), rt.as<int>(), rw.as<float>(), slot.as<int>()};
  record("permute_ms_" + tag, timer.median_ms([&] {
    moe_permute(idx.as<int>(), w.as<float>(), nullptr, T, K, E, scratch.as<int>(), perm, st);
  }));
  record("gather_ms_" + tag, timer.median_ms([&] {
    moe_gather_rows(x.as<bf16>(), rt.as<int>(), off2.as<int>() + E, rows, H, xp.as<bf16>(), st);
  }));
  record("geglu_fwd_ms_" + tag, timer.median_ms([&] {
    weighted_geglu_forward(hbuf.as<bf16>(), rw.as<float>(), off2.as<int>() + E, rows, I, abuf.as<bf16>(), st);
  }));
  record("geglu_bwd_ms_" + tag, timer.median_ms([&] {
    weighted_geglu_backward(hbuf.as<bf16>(), rw.as<float>(), abuf.as<bf16>(), off2.as<int>() + E, rows, I,
                            dhbuf.as<bf16>(), dpbuf.as<float>(), st);
  }));
  record("combine_ms_" + tag, timer.median_ms([&] {
    moe_combine_rows(obuf.as<bf16>(), slot.as<int>(), T, K, H, y.as<bf16>(), st);
  }));
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> v;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) v.push_back(std::stoi(item));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> tokens{4096, 16384};
  int iters = 20, rounds = 3;
  std::string routing_dir, json;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--tokens")
      tokens = parse_list(argv[i + 1]);
    else if (a == "--iters")
      iters = std::stoi(argv[i + 1]);
    else if (a == "--rounds")
      rounds = std::stoi(argv[i + 1]);
    else if (a == "--variants") {
      g_bench_variants.clear();
      std::stringstream names(argv[i + 1]);
      for (std::string name; std::getline(names, name, ',');) {
        auto it = std::find_if(std::begin(kAllBenchVariants), std::end(kAllBenchVariants),
                               [&](const BenchVariant& bp) { return name == bp.name; });
        if (it == std::end(kAllBenchVariants)) {
          std::fprintf(stderr, "g4_bench_moe: error: unknown variant %s (--variants)\n", name.c_str());
          return 2;
        }
        g_bench_variants.push_back(*it);
      }
    } else if (a == "--routing-dir")
      routing_dir = argv[i + 1];
    else if (a == "--json")
      json = argv[i + 1];
    else {
      std::fprintf(stderr, "g4_bench_moe: error: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    CudaContext ctx;
    cudaDeviceProp prop;
    G4_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
    Timer timer{ctx.stream(), iters};
    double peak = dense_peak(ctx, timer);
    record("cublas_dense_bf16_8192_tflops", peak);
    for (int T : tokens) run_tokens(ctx, timer, T, peak, routing_dir, rounds);
    // The peak again after all the work, to show clock drift over the run (percentages use the first).
    record("cublas_dense_bf16_8192_tflops_end", dense_peak(ctx, timer));
    if (!json.empty()) {
      std::ofstream out(json);
      out << "{\n";
      std::size_t n = 0;
      for (auto& [k, v] : results) out << "  \"" << k << "\": " << v << (++n < results.size() ? ",\n" : "\n");
      out << "}\n";
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "g4_bench_moe: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
