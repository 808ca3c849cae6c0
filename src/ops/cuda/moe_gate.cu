// moe_gate.cu: the router's norm (block per token), logits through cuBLAS SGEMM, and a warp-per-token softmax
// with top-k; the backward mirrors them (softmax/renormalisation backward per token, two SGEMMs, norm
// backward, and a deterministic two-pass column reduction for d_scale).
#include "ops/cuda/moe_gate.h"

#include <cmath>

#include "core/cuda/cuda_check.h"

namespace g4::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int NORM_THREADS = 256;
constexpr int MAX_E_PER_LANE = 32;  // E <= 1024
constexpr int SCALE_ROWS = 128;     // tokens per partial sum of d_scale

__device__ float block_sum(float v, float* shared) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) total += shared[w];
  return total;
}

__global__ void norm_forward_kernel(const bf16* x, const float* scale, int hidden, float eps, float root,
                                    float* rms, float* ns) {
  __shared__ float shared[32];
  std::int64_t t = blockIdx.x;
  const bf16* xr = x + t * hidden;
  float ss = 0.0f;
  for (int h = threadIdx.x; h < hidden; h += blockDim.x) {
    float v = __bfloat162float(xr[h]);
    ss += v * v;
  }
  float r = 1.0f / sqrtf(block_sum(ss, shared) / hidden + eps);
  if (threadIdx.x == 0) rms[t] = r;
  for (int h = threadIdx.x; h < hidden; h += blockDim.x) {
    float n = __bfloat162float(__float2bfloat16_rn(__bfloat162float(xr[h]) * r));
    ns[t * hidden + h] = n * scale[h] * root;
  }
}

// Loads the token's logits into registers (lane owns experts lane, lane+32, ...) and returns them as probs.
__device__ void softmax_row(const float* logits, int experts, float (&p)[MAX_E_PER_LANE]) {
  int lane = threadIdx.x % 32;
  float mx = -INFINITY;
#pragma unroll
  for (int i = 0; i < MAX_E_PER_LANE; ++i) {
    int e = lane + 32 * i;
    p[i] = e < experts ? logits[e] : -INFINITY;
    mx = fmaxf(mx, p[i]);
  }
  for (int o = 16; o > 0; o /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < MAX_E_PER_LANE; ++i) {
    p[i] = (lane + 32 * i) < experts ? expf(p[i] - mx) : 0.0f;
    sum += p[i];
  }
  for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
#pragma unroll
  for (int i = 0; i < MAX_E_PER_LANE; ++i) p[i] /= sum;
}

// Top-k by k rounds of a warp arg-max; selected[j] = expert of rank j, value[j] its prob (all lanes agree).
template <int KMAX>
__device__ void top_k(float (&p)[MAX_E_PER_LANE], int experts, int k, int (&selected)[KMAX],
                      float (&value)[KMAX]) {
  int lane = threadIdx.x % 32;
  unsigned taken = 0;  // bit i: this lane's expert lane + 32 i already chosen
  for (int j = 0; j < k; ++j) {
    float best = -1.0f;
    int best_e = experts;
#pragma unroll
    for (int i = 0; i < MAX_E_PER_LANE; ++i) {
      int e = lane + 32 * i;
      if (e < experts && !(taken >> i & 1u) && p[i] > best) {
        best = p[i];
        best_e = e;
      }
    }
    for (int o = 16; o > 0; o /= 2) {
      float ob = __shfl_xor_sync(0xffffffffu, best, o);
      int oe = __shfl_xor_sync(0xffffffffu, best_e, o);
      if (ob > best || (ob == best && oe < best_e)) {
        best = ob;
        best_e = oe;
      }
    }
    selected[j] = best_e;
    value[j] = best;
    if (best_e % 32 == lane) taken |= 1u << (best_e / 32);
  }
}

constexpr int KMAX = 32;

__global__ void softmax_topk_kernel(const float* logits, std::int64_t tokens, int experts, int k,
                                    float* weights, int* indices) {
  std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (t >= tokens) return;
  float p[MAX_E_PER_LANE];
  softmax_row(logits + t * experts, experts, p);
  int sel[KMAX];
  float val[KMAX];
  top_k<KMAX>(p, experts, k, sel, val);
  float sum = 0.0f;
  for (int j = 0; j < k; ++j) sum += val[j];
  sum = fmaxf(sum, 1e-20f);
  int lane = threadIdx.x % 32;
  for (int j = lane; j < k; j += 32) {
    // Register arrays indexed by a run-time j: fine here, the router is tiny next to the experts.
    weights[t * k + j] = __bfloat162float(__float2bfloat16_rn(val[j] / sum));
    indices[t * k + j] = sel[j];
  }
}

// dlogits[t, :] from d_weights[t, :] through renormalisation and softmax.
__global__ void softmax_topk_backward_kernel(const float* logits, const int* indices, const float* d_weights,
                                             std::int64_t tokens, int experts, int k, float* dlogits) {
  std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (t >= tokens) return;
  int lane = threadIdx.x % 32;
  float p[MAX_E_PER_LANE];
  softmax_row(logits + t * experts, experts, p);
  // Gather the selected probs (each lane reads them from the owner lane) and the sum S.
  float s = 0.0f, dot = 0.0f;  // S = sum p_k; dot = sum dw_k * w_k
  float gsel[KMAX], psel[KMAX];
  for (int j = 0; j < k; ++j) {
    int e = indices[t * k + j];
    float pe = 0.0f;
#pragma unroll
    for (int i = 0; i < MAX_E_PER_LANE; ++i)
      if (e == lane + 32 * i) pe = p[i];
    pe = __shfl_sync(0xffffffffu, pe, e % 32);
    psel[j] = pe;
    s += pe;
  }
  s = fmaxf(s, 1e-20f);
  for (int j = 0; j < k; ++j) dot += d_weights[t * k + j] * (psel[j] / s);
  // dp_k = (dw_k - dot) / S at the selected experts; softmax backward: dl_e = p_e (dp_e - sum_k dp_k p_k).
  float inner = 0.0f;
  for (int j = 0; j < k; ++j) {
    gsel[j] = (d_weights[t * k + j] - dot) / s;
    inner += gsel[j] * psel[j];
  }
#pragma unroll
  for (int i = 0; i < MAX_E_PER_LANE; ++i) {
    int e = lane + 32 * i;
    if (e >= experts) continue;
    float dp = 0.0f;
    for (int j = 0; j < k; ++j)
      if (indices[t * k + j] == e) dp = gsel[j];
    dlogits[t * experts + e] = p[i] * (dp - inner);
  }
}

// dx = r * dn - x * r^3 / H * sum_h dn * x, with dn = d_ns * scale * root.
__global__ void norm_backward_kernel(const bf16* x, const float* scale, const float* rms, const float* d_ns,
                                     int hidden, float root, float* dx) {
  __shared__ float shared[32];
  std::int64_t t = blockIdx.x;
  const bf16* xr = x + t * hidden;
  const float* g = d_ns + t * hidden;
  float r = rms[t];
  float dot = 0.0f;
  for (int h = threadIdx.x; h < hidden; h += blockDim.x)
    dot += g[h] * scale[h] * root * __bfloat162float(xr[h]);
  dot = block_sum(dot, shared);
  float c = r * r * r * dot / hidden;
  for (int h = threadIdx.x; h < hidden; h += blockDim.x) {
    float dn = g[h] * scale[h] * root;
    dx[t * hidden + h] = r * dn - __bfloat162float(xr[h]) * c;
  }
}

// partial[b, h] = sum over tokens of chunk b of d_ns[t, h] * bf16(x[t, h] * r[t]) * root.
__global__ void scale_grad_partial_kernel(const bf16* x, const float* rms, const float* d_ns,
                                          std::int64_t tokens, int hidden, float root, float* partial) {
  int h = blockIdx.x * blockDim.x + threadIdx.x;
  if (h >= hidden) return;
  std::int64_t t0 = static_cast<std::int64_t>(blockIdx.y) * SCALE_ROWS;
  std::int64_t t1 = t0 + SCALE_ROWS < tokens ? t0 + SCALE_ROWS : tokens;
  float acc = 0.0f;
  for (std::int64_t t = t0; t < t1; ++t) {
    float n = __bfloat162float(__float2bfloat16_rn(__bfloat162float(x[t * hidden + h]) * rms[t]));
    acc += d_ns[t * hidden + h] * n * root;
  }
  partial[blockIdx.y * hidden + h] = acc;
}

__global__ void scale_grad_reduce_kernel(const float* partial, int chunks, int hidden, float* d_scale) {
  int h = blockIdx.x * blockDim.x + threadIdx.x;
  if (h >= hidden) return;
  float acc = 0.0f;
  for (int b = 0; b < chunks; ++b) acc += partial[b * hidden + h];
  d_scale[h] += acc;
}

int scale_chunks(std::int64_t tokens) {
  return static_cast<int>((tokens + SCALE_ROWS - 1) / SCALE_ROWS);
}

void check_shape(const GateShape& s) {
  check(s.experts > 0 && s.experts <= 32 * MAX_E_PER_LANE, "moe_gate: expert count ", s.experts,
        " outside 1..1024");
  check(s.top_k > 0 && s.top_k <= s.experts && s.top_k <= KMAX, "moe_gate: top_k ", s.top_k, " outside 1..",
        s.experts < KMAX ? s.experts : KMAX);
}

}  // namespace

std::int64_t moe_gate_backward_scratch_floats(const GateShape& s) {
  // dlogits [T, E], d_ns [T, H], partial sums of d_scale [chunks, H]
  return s.tokens * s.experts + s.tokens * s.hidden +
         static_cast<std::int64_t>(scale_chunks(s.tokens)) * s.hidden;
}

void moe_gate_forward(CudaContext& ctx, const GateShape& s, const bf16* x, const float* proj,
                      const float* scale, const GateSaved& saved) {
  check_shape(s);
  if (s.tokens == 0) return;
  float root = 1.0f / std::sqrt(static_cast<float>(s.hidden));
  cudaStream_t stream = ctx.stream();
  norm_forward_kernel<<<static_cast<unsigned>(s.tokens), NORM_THREADS, 0, stream>>>(
      x, scale, s.hidden, s.eps, root, saved.rms, saved.ns);
  G4_CUDA_CHECK_LAUNCH();
  const float one = 1.0f, zero = 0.0f;
  // Column-major view: logits^T [E, T] = proj (as [H, E])^T * ns^T [H, T].
  G4_CUBLAS_CHECK(cublasSgemm(ctx.cublas(), CUBLAS_OP_T, CUBLAS_OP_N, s.experts, static_cast<int>(s.tokens),
                              s.hidden, &one, proj, s.hidden, saved.ns, s.hidden, &zero, saved.logits,
                              s.experts));
  unsigned blocks = static_cast<unsigned>((s.tokens + 3) / 4);
  softmax_topk_kernel<<<blocks, 128, 0, stream>>>(saved.logits, s.tokens, s.experts, s.top_k, saved.weights,
                                                  saved.indices);
  G4_CUDA_CHECK_LAUNCH();
}

void moe_gate_backward(CudaContext& ctx, const GateShape& s, const bf16* x, const float* proj,
                       const float* scale, const GateSaved& saved, const float* d_weights, float* scratch,
                       float* dx, float* d_proj, float* d_scale) {
  check_shape(s);
  if (s.tokens == 0) return;
  float root = 1.0f / std::sqrt(static_cast<float>(s.hidden));
  cudaStream_t stream = ctx.stream();
  float* dlogits = scratch;
  float* d_ns = dlogits + s.tokens * s.experts;
  float* partial = d_ns + s.tokens * s.hidden;
  unsigned blocks = static_cast<unsigned>((s.tokens + 3) / 4);
  softmax_topk_backward_kernel<<<blocks, 128, 0, stream>>>(saved.logits, saved.indices, d_weights, s.tokens,
                                                           s.experts, s.top_k, dlogits);
  G4_CUDA_CHECK_LAUNCH();
  const float one = 1.0f, zero = 0.0f;
  int T = static_cast<int>(s.tokens);
  // d_ns^T [H, T] = proj^T-as-[H, E] * dlogits^T [E, T]
  G4_CUBLAS_CHECK(cublasSgemm(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, s.hidden, T, s.experts, &one, proj,
                              s.hidden, dlogits, s.experts, &zero, d_ns, s.hidden));
  // d_proj as [H, E] += ns^T [H, T] * dlogits [T, E]
  G4_CUBLAS_CHECK(cublasSgemm(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_T, s.hidden, s.experts, T, &one, saved.ns,
                              s.hidden, dlogits, s.experts, &one, d_proj, s.hidden));
  norm_backward_kernel<<<static_cast<unsigned>(s.tokens), NORM_THREADS, 0, stream>>>(
      x, scale, saved.rms, d_ns, s.hidden, root, dx);
  G4_CUDA_CHECK_LAUNCH();
  int chunks = scale_chunks(s.tokens);
  dim3 grid((s.hidden + 255) / 256, chunks);
  scale_grad_partial_kernel<<<grid, 256, 0, stream>>>(x, saved.rms, d_ns, s.tokens, s.hidden, root, partial);
  G4_CUDA_CHECK_LAUNCH();
  scale_grad_reduce_kernel<<<(s.hidden + 255) / 256, 256, 0, stream>>>(partial, chunks, s.hidden, d_scale);
  G4_CUDA_CHECK_LAUNCH();
}

}  // namespace g4::cuda
