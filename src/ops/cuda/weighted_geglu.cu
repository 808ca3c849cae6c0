// weighted_geglu.cu: one warp per permuted row, 16-byte loads, fp32 math (see weighted_geglu.h).
#include "ops/cuda/weighted_geglu.h"

#include "core/cuda/cuda_check.h"

namespace g4::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int ROWS_PER_BLOCK = 4;
constexpr float kC = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kKappa = 0.044715f;

struct Gelu {
  float value, slope;
};
__device__ __forceinline__ Gelu gelu_tanh(float x) {
  float t = tanhf(kC * (x + kKappa * x * x * x));
  return {0.5f * x * (1.0f + t),
          0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * kC * (1.0f + 3.0f * kKappa * x * x)};
}

__global__ void forward_kernel(const bf16* h, const float* p, const int* offsets_end, int inter, bf16* a) {
  std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * ROWS_PER_BLOCK + threadIdx.x / 32;
  if (row >= *offsets_end) return;
  int lane = threadIdx.x % 32;
  const bf16* hr = h + row * 2 * inter;
  float w = p[row];
  for (int c = lane; c < inter / 8; c += 32) {
    uint4 gv = reinterpret_cast<const uint4*>(hr)[c];
    uint4 uv = reinterpret_cast<const uint4*>(hr + inter)[c];
    const bf16* g = reinterpret_cast<const bf16*>(&gv);
    const bf16* u = reinterpret_cast<const bf16*>(&uv);
    uint4 ov;
    bf16* o = reinterpret_cast<bf16*>(&ov);
#pragma unroll
    for (int i = 0; i < 8; ++i)
      o[i] = __float2bfloat16_rn(gelu_tanh(__bfloat162float(g[i])).value * __bfloat162float(u[i]) * w);
    reinterpret_cast<uint4*>(a + row * inter)[c] = ov;
  }
}

__global__ void backward_kernel(const bf16* h, const float* p, const bf16* da, const int* offsets_end,
                                int inter, bf16* dh, float* dp) {
  std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * ROWS_PER_BLOCK + threadIdx.x / 32;
  if (row >= *offsets_end) return;
  int lane = threadIdx.x % 32;
  const bf16* hr = h + row * 2 * inter;
  bf16* dhr = dh + row * 2 * inter;
  float w = p[row];
  float dw = 0.0f;
  for (int c = lane; c < inter / 8; c += 32) {
    uint4 gv = reinterpret_cast<const uint4*>(hr)[c];
    uint4 uv = reinterpret_cast<const uint4*>(hr + inter)[c];
    uint4 dv = reinterpret_cast<const uint4*>(da + row * inter)[c];
    const bf16* g = reinterpret_cast<const bf16*>(&gv);
    const bf16* u = reinterpret_cast<const bf16*>(&uv);
    const bf16* d = reinterpret_cast<const bf16*>(&dv);
    uint4 dgv, duv;
    bf16* dg = reinterpret_cast<bf16*>(&dgv);
    bf16* du = reinterpret_cast<bf16*>(&duv);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      Gelu ge = gelu_tanh(__bfloat162float(g[i]));
      float up = __bfloat162float(u[i]), grad = __bfloat162float(d[i]);
      dg[i] = __float2bfloat16_rn(grad * w * ge.slope * up);
      du[i] = __float2bfloat16_rn(grad * w * ge.value);
      dw += ge.value * up * grad;
    }
    reinterpret_cast<uint4*>(dhr)[c] = dgv;
    reinterpret_cast<uint4*>(dhr + inter)[c] = duv;
  }
#pragma unroll
  for (int o = 16; o > 0; o /= 2) dw += __shfl_xor_sync(0xffffffffu, dw, o);
  if (lane == 0) dp[row] = dw;
}

unsigned blocks_for(std::int64_t rows) {
  return static_cast<unsigned>((rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
}

}  // namespace

void weighted_geglu_forward(const bf16* h, const float* p, const int* offsets_end, std::int64_t max_rows,
                            int inter, bf16* a, cudaStream_t stream) {
  check(inter % 8 == 0, "weighted_geglu: intermediate size ", inter, " not a multiple of 8");
  if (max_rows == 0) return;
  forward_kernel<<<blocks_for(max_rows), ROWS_PER_BLOCK * 32, 0, stream>>>(h, p, offsets_end, inter, a);
  G4_CUDA_CHECK_LAUNCH();
}

void weighted_geglu_backward(const bf16* h, const float* p, const bf16* da, const int* offsets_end,
                             std::int64_t max_rows, int inter, bf16* dh, float* dp, cudaStream_t stream) {
  check(inter % 8 == 0, "weighted_geglu: intermediate size ", inter, " not a multiple of 8");
  if (max_rows == 0) return;
  backward_kernel<<<blocks_for(max_rows), ROWS_PER_BLOCK * 32, 0, stream>>>(h, p, da, offsets_end, inter, dh,
                                                                            dp);
  G4_CUDA_CHECK_LAUNCH();
}

}  // namespace g4::cuda
