#include "ops/cuda/kernels.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <numeric>
#include <type_traits>
#include <vector>

#include "core/cuda/caching_allocator.h"
#include "core/cuda/cuda_check.h"
#include "core/error.h"
#include "ops/attention_visibility.h"
#include "ops/cuda/cuda_context.h"
#include "ops/cuda/flash_attention.h"
#include "ops/cuda/moe_block.h"
#include "ops/gelu.h"
#include "ops/kernels.h"

namespace g4::cuda {

namespace {

using i64 = std::int64_t;
constexpr int kThreads = 256;

int blocks_for(i64 n) {
  return static_cast<int>(std::min<i64>((n + kThreads - 1) / kThreads, 65535 * 8));
}

// The device type of a table's storage type S (ops/kernels.h): float, or __nv_bfloat16 for Bf16Bits; and the
// element loads and stores every kernel uses (fp32 arithmetic; a bf16 store rounds to nearest even).
template <class S>
struct DeviceTypeOf {
  using type = S;
};
template <>
struct DeviceTypeOf<Bf16Bits> {
  using type = __nv_bfloat16;
};
template <class S>
using Dev = typename DeviceTypeOf<S>::type;
template <class S>
Dev<S>* dev(S* p) {
  return reinterpret_cast<Dev<S>*>(p);
}
template <class S>
const Dev<S>* dev(const S* p) {
  return reinterpret_cast<const Dev<S>*>(p);
}

__device__ __forceinline__ float ld(float x) {
  return x;
}
__device__ __forceinline__ float ld(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
template <class T>
__device__ __forceinline__ T st(float v);
template <>
__device__ __forceinline__ float st<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 st<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// A device copy of a host array, from the caching allocator (freed when the returned pointer dies).
template <class T>
std::shared_ptr<std::byte[]> upload(const T* host, i64 count) {
  const std::uint64_t bytes = static_cast<std::uint64_t>(std::max<i64>(count, 1)) * sizeof(T);
  std::shared_ptr<std::byte[]> d = cuda_allocator().allocate(bytes);
  if (count > 0) G4_CUDA_CHECK(cudaMemcpy(d.get(), host, count * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

cublasHandle_t cublas() {
  static cublasHandle_t handle = [] {
    cublasHandle_t h = nullptr;
    G4_CUBLAS_CHECK(cublasCreate(&h));
    G4_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_PEDANTIC_MATH));  // fp32 as written: no TF32
    return h;
  }();
  return handle;
}

// The handle of the bf16 GEMMs: tensor cores with fp32 accumulation, no reduced-precision split-K reductions.
cublasHandle_t cublas_bf16() {
  static cublasHandle_t handle = [] {
    cublasHandle_t h = nullptr;
    G4_CUBLAS_CHECK(cublasCreate(&h));
    G4_CUBLAS_CHECK(cublasSetMathMode(
        h,
        static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    return h;
  }();
  return handle;
}

// ---- elementwise

template <class T>
__global__ void add_kernel(T* x, const T* y, i64 n) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x)
    x[i] = st<T>(ld(x[i]) + ld(y[i]));
}
template <class T>
__global__ void scale_kernel(const T* x, float f, T* y, i64 n) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x)
    y[i] = st<T>(ld(x[i]) * f);
}
template <class T>
__global__ void clamp_kernel(T* x, float lo, float hi, i64 n) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x) {
    const float v = ld(x[i]);
    x[i] = st<T>(v < lo ? lo : (v > hi ? hi : v));
  }
}
template <class T>
__global__ void clamp_backward_kernel(T* dy, const T* x, float lo, float hi, i64 n) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x) {
    const float v = ld(x[i]);
    if (!(v >= lo && v <= hi)) dy[i] = st<T>(0.0f);
  }
}
template <class From, class To>
__global__ void convert_kernel(const From* x, To* y, i64 n) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x)
    y[i] = st<To>(ld(x[i]));
}

template <class T>
__global__ void geglu_kernel(const T* gate, const T* up, T* out, i64 n) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x)
    out[i] = st<T>(gelu_tanh(ld(gate[i])) * ld(up[i]));
}
template <class T>
__global__ void geglu_backward_kernel(const T* gate, const T* up, const T* dout, T* dgate, T* dup, i64 n) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x) {
    const float g = ld(gate[i]), u = ld(up[i]), d = ld(dout[i]);
    dgate[i] = st<T>(d * u * gelu_tanh_grad(g));
    dup[i] = st<T>(d * gelu_tanh(g));
  }
}

__global__ void softcap_kernel(float* x, i64 n, float cap) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x)
    x[i] = static_cast<float>(tanh(static_cast<double>(x[i]) / cap) * cap);
}
__global__ void softcap_backward_kernel(const float* capped, float* grad, i64 n, float cap) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x) {
    const double t = static_cast<double>(capped[i]) / cap;
    grad[i] = static_cast<float>(grad[i] * (1.0 - t * t));
  }
}

// x [A, M, B]: slice index of the middle axis.
template <class T>
__global__ void middle_slice_kernel(const T* x, i64 A, i64 M, i64 B, i64 index, T* out, bool add) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < A * B; i += i64{gridDim.x} * blockDim.x) {
    const i64 a = i / B, b = i % B;
    T& xe = const_cast<T*>(x)[(a * M + index) * B + b];
    if (add)
      xe = st<T>(ld(xe) + ld(out[i]));
    else
      out[i] = xe;
  }
}

// ---- embedding: rows gathered; the backward sums each distinct id's tokens in token order.

template <class T>
__global__ void gather_rows_kernel(const T* table, const i64* ids, i64 count, i64 width, float scale,
                                   T* out) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < count * width;
       i += i64{gridDim.x} * blockDim.x)
    out[i] = st<T>(ld(table[ids[i / width] * width + i % width]) * scale);
}

// Block u handles distinct id ids_sorted[first[u]]; tokens[first[u] .. first[u+1]) are its tokens, ascending.
template <class T>
__global__ void scatter_rows_kernel(const T* d, const i64* tokens, const i64* first, const i64* row_of,
                                    i64 width, float scale, float* table) {
  const i64 u = blockIdx.x;
  float* row = table + row_of[u] * width;
  for (i64 c = threadIdx.x; c < width; c += blockDim.x) {
    float acc = row[c];
    for (i64 j = first[u]; j < first[u + 1]; ++j) acc += ld(d[tokens[j] * width + c]) * scale;
    row[c] = acc;
  }
}

// ---- RMSNorm, one block per row, statistics in double (as ops/cpu/rms_norm.cpp).

__device__ double block_sum(double v, double* shared) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  double total = 0;
  if (threadIdx.x == 0) {
    for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) total += shared[w];
    shared[32] = total;
  }
  __syncthreads();
  total = shared[32];
  __syncthreads();
  return total;
}

template <class T>
__global__ void rms_norm_kernel(const T* x, const T* w, T* y, i64 dim, float eps) {
  __shared__ double shared[33];
  const T* xr = x + blockIdx.x * dim;
  T* yr = y + blockIdx.x * dim;
  double s = 0;
  for (i64 i = threadIdx.x; i < dim; i += blockDim.x) s += static_cast<double>(ld(xr[i])) * ld(xr[i]);
  const double inv = 1.0 / sqrt(block_sum(s, shared) / static_cast<double>(dim) + static_cast<double>(eps));
  for (i64 i = threadIdx.x; i < dim; i += blockDim.x) {
    const double v = ld(xr[i]) * inv;
    yr[i] = st<T>(static_cast<float>(w ? v * ld(w[i]) : v));
  }
}

// dx per row; inv of each row kept for the weight gradient.
template <class T>
__global__ void rms_norm_backward_kernel(const T* x, const T* w, const T* dy, T* dx, double* inv_out, i64 dim,
                                         float eps) {
  __shared__ double shared[33];
  const i64 r = blockIdx.x;
  const T *xr = x + r * dim, *dyr = dy + r * dim;
  T* dxr = dx + r * dim;
  double s = 0;
  for (i64 i = threadIdx.x; i < dim; i += blockDim.x) s += static_cast<double>(ld(xr[i])) * ld(xr[i]);
  const double inv = 1.0 / sqrt(block_sum(s, shared) / static_cast<double>(dim) + static_cast<double>(eps));
  double dot = 0;
  for (i64 i = threadIdx.x; i < dim; i += blockDim.x) {
    const double dn = w ? static_cast<double>(ld(dyr[i])) * ld(w[i]) : ld(dyr[i]);
    dot += dn * ld(xr[i]) * inv;
  }
  const double mean_dot = block_sum(dot, shared) / static_cast<double>(dim);
  for (i64 i = threadIdx.x; i < dim; i += blockDim.x) {
    const double dn = w ? static_cast<double>(ld(dyr[i])) * ld(w[i]) : ld(dyr[i]);
    dxr[i] = st<T>(static_cast<float>(inv * (dn - ld(xr[i]) * inv * mean_dot)));
  }
  if (threadIdx.x == 0) inv_out[r] = inv;
}

// dweight[i] += Σ_r dy[r,i] · x[r,i] · inv[r] in two deterministic passes: partial[c, i] over the rows of
// chunk c (rows in order; grid: column blocks × chunks), then the chunks in order per column.
constexpr i64 kWeightGradRows = 128;

template <class T>
__global__ void rms_norm_weight_grad_partial_kernel(const T* x, const T* dy, const double* inv, i64 rows,
                                                    i64 dim, double* partial) {
  const i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x;
  if (i >= dim) return;
  const i64 chunks = (rows + kWeightGradRows - 1) / kWeightGradRows;
  for (i64 chunk = blockIdx.y; chunk < chunks; chunk += gridDim.y) {  // grid.y is capped at 65535
    double acc = 0;
    const i64 end = std::min(rows, (chunk + 1) * kWeightGradRows);
    for (i64 r = chunk * kWeightGradRows; r < end; ++r)
      acc += static_cast<double>(ld(dy[r * dim + i])) * ld(x[r * dim + i]) * inv[r];
    partial[chunk * dim + i] = acc;
  }
}

__global__ void rms_norm_weight_grad_sum_kernel(const double* partial, i64 chunks, i64 dim, float* dweight) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < dim; i += i64{gridDim.x} * blockDim.x) {
    double acc = 0;
    for (i64 c = 0; c < chunks; ++c) acc += partial[c * dim + i];
    dweight[i] += static_cast<float>(acc);
  }
}

// ---- optimizer

__global__ void adamw_kernel(float* w, const float* g, float* m, float* v, i64 n, AdamWStepConstants k) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x)
    adamw_element(w[i], g[i], m[i], v[i], k);
}

// Partial sums of squares per block (fixed grid), then one block adds them in order.
__global__ void squares_kernel(const float* x, i64 n, double* partial) {
  __shared__ double shared[33];
  double s = 0;
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x)
    s += static_cast<double>(x[i]) * x[i];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// ---- RoPE on x [T, heads, D] with the host table's cos/sin rows [T, D] (uploaded per call).

template <class T>
__global__ void rope_kernel(T* x, const float* cos_t, const float* sin_t, i64 tokens, int heads, int D,
                            bool backward) {
  const int half = D / 2;
  const i64 n = tokens * heads * half;
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x) {
    const int j = static_cast<int>(i % half);
    const i64 th = i / half, t = th / heads;
    T* v = x + th * D;
    const float* c = cos_t + t * D;
    const float* s = sin_t + t * D;
    const float a = ld(v[j]), b = ld(v[j + half]);
    if (!backward) {
      v[j] = st<T>(a * c[j] - b * s[j]);
      v[j + half] = st<T>(b * c[j + half] + a * s[j + half]);
    } else {  // the rotation's transpose
      v[j] = st<T>(a * c[j] + b * s[j + half]);
      v[j + half] = st<T>(-a * s[j] + b * c[j + half]);
    }
  }
}

// ---- causal-LM loss, one block per position (b, t) predicting labels[b, t + 1]; row statistics in double.

constexpr i64 kIgnore = -100;

__device__ double block_max(double v, double* shared) {
  for (int o = 16; o > 0; o /= 2) v = fmax(v, __shfl_down_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    double m = shared[0];
    for (int w = 1; w < static_cast<int>(blockDim.x / 32); ++w) m = fmax(m, shared[w]);
    shared[32] = m;
  }
  __syncthreads();
  const double m = shared[32];
  __syncthreads();
  return m;
}

// loss[p] = logsumexp(row) - row[targets[p]] for counted positions, 0 (and not counted) otherwise. With
// dlogits, writes the gradient row instead: (softmax - onehot) / normaliser, or zeros.
__global__ void loss_kernel(const float* logits, const i64* targets, i64 V, double* loss, float* dlogits,
                            double normaliser) {
  __shared__ double shared[33];
  const i64 p = blockIdx.x;
  const i64 label = targets[p];
  const float* row = logits + p * V;
  if (label == kIgnore) {
    if (dlogits)
      for (i64 j = threadIdx.x; j < V; j += blockDim.x) dlogits[p * V + j] = 0.0f;
    else if (threadIdx.x == 0)
      loss[p] = 0.0;
    return;
  }
  double m = -INFINITY;
  for (i64 j = threadIdx.x; j < V; j += blockDim.x) m = fmax(m, static_cast<double>(row[j]));
  m = block_max(m, shared);
  double d = 0;
  for (i64 j = threadIdx.x; j < V; j += blockDim.x) d += exp(row[j] - m);
  d = block_sum(d, shared);
  if (dlogits) {
    for (i64 j = threadIdx.x; j < V; j += blockDim.x)
      dlogits[p * V + j] = static_cast<float>((exp(row[j] - m) / d - (j == label ? 1.0 : 0.0)) / normaliser);
  } else if (threadIdx.x == 0) {
    loss[p] = log(d) + m - row[label];
  }
}

// ---- attention over one packed row: q [Sq, Nq, D], k/v [Sk, Nkv, D], what each query sees given by its
// first/last visible key (ops/attention_visibility.h's RowBounds) and the key mask. The plain reference
// version: scores recomputed where needed, O(S) memory, no atomics; the flash kernels replace it for speed.
// Softmax as the CPU's: fp32 scores, max over visible keys, exp(diff) flushed to 0 below -80, denominator in
// double, p = exp · (float)(1 / denominator); a query that sees nothing gets a zero row.

struct RowView {
  const i64* first;
  const i64* last;
  const std::uint8_t* key_mask;
  __device__ bool visible(i64 i, i64 j) const {
    return j >= first[i] && j <= last[i] && (!key_mask || key_mask[j]);
  }
};

// Each thread owns the elements d = threadIdx.x + c · blockDim.x (c < kMaxPerThread) of a row of D: the
// reference kernels' accumulators live in registers, so bf16 outputs are rounded once.
constexpr int kAttentionThreads = 128;
constexpr int kMaxPerThread = 8;  // head_dim up to 1024

// Scores of query row (i, head h) against key j: a block-wide dot product over D (threads stride D).
template <class T>
__device__ float dot_block(const T* a, const T* b, int D, float* shared) {
  float partial = 0;
  for (int d = threadIdx.x; d < D; d += blockDim.x) partial += ld(a[d]) * ld(b[d]);
  for (int o = 16; o > 0; o /= 2) partial += __shfl_down_sync(0xffffffffu, partial, o);
  if (threadIdx.x % 32 == 0) shared[threadIdx.x / 32] = partial;
  __syncthreads();
  float total = 0;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) total += shared[w];
  __syncthreads();
  return total;
}

// One block per (query i, query head h): the row's max score m, 1/denominator inv (0 when it sees nothing).
template <class T>
__device__ void row_stats(const T* qi, const T* k, RowView rows, i64 i, int g, int Nkv, int D, float* shared,
                          float* m_out, float* inv_out) {
  float m = -INFINITY;
  for (i64 j = rows.first[i]; j <= rows.last[i]; ++j)
    if (rows.visible(i, j)) m = fmaxf(m, dot_block(qi, k + (j * Nkv + g) * D, D, shared));
  if (m == -INFINITY) {
    *m_out = 0.0f;
    *inv_out = 0.0f;
    return;
  }
  double denom = 0;
  for (i64 j = rows.first[i]; j <= rows.last[i]; ++j) {
    if (!rows.visible(i, j)) continue;
    const float diff = dot_block(qi, k + (j * Nkv + g) * D, D, shared) - m;
    denom += diff > -80.0f ? expf(diff) : 0.0f;
  }
  *m_out = m;
  *inv_out = static_cast<float>(1.0 / denom);
}

__device__ float prob(float score, float m, float inv) {
  const float diff = score - m;
  return inv != 0.0f && diff > -80.0f ? expf(diff) * inv : 0.0f;
}

// acc[c] += f · row[d] for the thread's elements.
template <class T>
__device__ void add_scaled_row(float* acc, float f, const T* row, int D) {
#pragma unroll
  for (int c = 0; c < kMaxPerThread; ++c) {
    const int d = threadIdx.x + c * blockDim.x;
    if (d < D) acc[c] += f * ld(row[d]);
  }
}
template <class T>
__device__ void load_row(float* acc, const T* row, int D) {
#pragma unroll
  for (int c = 0; c < kMaxPerThread; ++c) {
    const int d = threadIdx.x + c * blockDim.x;
    acc[c] = d < D ? ld(row[d]) : 0.0f;
  }
}
template <class T>
__device__ void store_row(T* row, const float* acc, int D) {
#pragma unroll
  for (int c = 0; c < kMaxPerThread; ++c) {
    const int d = threadIdx.x + c * blockDim.x;
    if (d < D) row[d] = st<T>(acc[c]);
  }
}

template <class T>
__global__ void attention_forward_kernel(const T* q, const T* k, const T* v, RowView rows, int Nq, int Nkv,
                                         int D, T* out) {
  __shared__ float shared[32];
  const i64 i = blockIdx.x;
  const int h = blockIdx.y, g = h / (Nq / Nkv);
  const T* qi = q + (i * Nq + h) * D;
  float m, inv;
  row_stats(qi, k, rows, i, g, Nkv, D, shared, &m, &inv);
  float acc[kMaxPerThread] = {};
  for (i64 j = rows.first[i]; j <= rows.last[i] && inv != 0.0f; ++j) {
    if (!rows.visible(i, j)) continue;
    const float p = prob(dot_block(qi, k + (j * Nkv + g) * D, D, shared), m, inv);
    add_scaled_row(acc, p, v + (j * Nkv + g) * D, D);
  }
  store_row(out + (i * Nq + h) * D, acc, D);
}

// Backward, pass 1, one block per (i, h): stats, D_i = Σ_j p_ij dP_ij (dP_ij = dout_i · v_j), and
// dq_i = Σ_j p_ij (dP_ij - D_i) k_j (overwritten).
template <class T>
__global__ void attention_dq_kernel(const T* q, const T* k, const T* v, const T* dout, RowView rows, int Nq,
                                    int Nkv, int D, T* dq, float* stats) {
  __shared__ float shared[32];
  const i64 i = blockIdx.x;
  const int h = blockIdx.y, g = h / (Nq / Nkv);
  const T* qi = q + (i * Nq + h) * D;
  const T* doi = dout + (i * Nq + h) * D;
  float m, inv;
  row_stats(qi, k, rows, i, g, Nkv, D, shared, &m, &inv);
  float Di = 0;
  for (i64 j = rows.first[i]; j <= rows.last[i] && inv != 0.0f; ++j) {
    if (!rows.visible(i, j)) continue;
    const float p = prob(dot_block(qi, k + (j * Nkv + g) * D, D, shared), m, inv);
    Di += p * dot_block(doi, v + (j * Nkv + g) * D, D, shared);
  }
  float acc[kMaxPerThread] = {};
  for (i64 j = rows.first[i]; j <= rows.last[i] && inv != 0.0f; ++j) {
    if (!rows.visible(i, j)) continue;
    const float p = prob(dot_block(qi, k + (j * Nkv + g) * D, D, shared), m, inv);
    const float ds = p * (dot_block(doi, v + (j * Nkv + g) * D, D, shared) - Di);
    add_scaled_row(acc, ds, k + (j * Nkv + g) * D, D);
  }
  store_row(dq + (i * Nq + h) * D, acc, D);
  if (threadIdx.x == 0) {
    float* st = stats + (i * Nq + h) * 3;
    st[0] = m;
    st[1] = inv;
    st[2] = Di;
  }
}

// Backward, pass 2, one block per (key j, KV head g): dk_j += Σ_{h in g, i} ds_ij q_i and
// dv_j += Σ_{h in g, i} p_ij dout_i, heads then queries in ascending order (no atomics).
template <class T>
__global__ void attention_dkv_kernel(const T* q, const T* k, const T* v, const T* dout, RowView rows, i64 Sq,
                                     int Nq, int Nkv, int D, const float* stats, T* dk, T* dv) {
  __shared__ float shared[32];
  const i64 j = blockIdx.x;
  const int g = blockIdx.y, group = Nq / Nkv;
  const T* kj = k + (j * Nkv + g) * D;
  const T* vj = v + (j * Nkv + g) * D;
  T* dkj = dk + (j * Nkv + g) * D;
  T* dvj = dv + (j * Nkv + g) * D;
  float acc_k[kMaxPerThread], acc_v[kMaxPerThread];
  load_row(acc_k, dkj, D);
  load_row(acc_v, dvj, D);
  for (int h = g * group; h < (g + 1) * group; ++h)
    for (i64 i = 0; i < Sq; ++i) {
      if (!rows.visible(i, j)) continue;
      const float* st = stats + (i * Nq + h) * 3;
      if (st[1] == 0.0f) continue;
      const T* qi = q + (i * Nq + h) * D;
      const T* doi = dout + (i * Nq + h) * D;
      const float p = prob(dot_block(qi, kj, D, shared), st[0], st[1]);
      const float ds = p * (dot_block(doi, vj, D, shared) - st[2]);
      add_scaled_row(acc_k, ds, qi, D);
      add_scaled_row(acc_v, p, doi, D);
    }
  store_row(dkj, acc_k, D);
  store_row(dvj, acc_v, D);
}

// ---- host entry points (ops/kernels.h signatures), templated on the table's storage type S

template <class S>
void add_inplace(S* x, const S* y, i64 n) {
  if (n == 0) return;
  add_kernel<<<blocks_for(n), kThreads>>>(dev(x), dev(y), n);
  G4_CUDA_CHECK_LAUNCH();
}
template <class S>
void scale_inplace(S* x, float f, i64 n) {
  if (n == 0) return;
  scale_kernel<<<blocks_for(n), kThreads>>>(dev(x), f, dev(x), n);
  G4_CUDA_CHECK_LAUNCH();
}
template <class S>
void scale_copy(const S* x, float f, S* y, i64 n) {
  if (n == 0) return;
  scale_kernel<<<blocks_for(n), kThreads>>>(dev(x), f, dev(y), n);
  G4_CUDA_CHECK_LAUNCH();
}
template <class S>
void clamp_inplace(S* x, float lo, float hi, i64 n) {
  if (n == 0) return;
  clamp_kernel<<<blocks_for(n), kThreads>>>(dev(x), lo, hi, n);
  G4_CUDA_CHECK_LAUNCH();
}
template <class S>
void clamp_backward(S* dy, const S* x, float lo, float hi, i64 n) {
  if (n == 0) return;
  clamp_backward_kernel<<<blocks_for(n), kThreads>>>(dev(dy), dev(x), lo, hi, n);
  G4_CUDA_CHECK_LAUNCH();
}
template <class S>
void copy(const S* x, S* y, i64 n) {
  if (n > 0) G4_CUDA_CHECK(cudaMemcpyAsync(y, x, n * sizeof(S), cudaMemcpyDeviceToDevice, nullptr));
}
template <class S>
void zero(S* x, i64 n) {
  if (n > 0) G4_CUDA_CHECK(cudaMemsetAsync(x, 0, n * sizeof(S), nullptr));
}
template <class From, class To>
void convert(const From* x, To* y, i64 n) {
  if (n == 0) return;
  convert_kernel<<<blocks_for(n), kThreads>>>(dev(x), dev(y), n);
  G4_CUDA_CHECK_LAUNCH();
}
template <class S>
void gather_rows(const S* table, const i64* ids, i64 count, i64 width, float scale, S* out) {
  if (count * width == 0) return;
  const auto d_ids = upload(ids, count);
  gather_rows_kernel<<<blocks_for(count * width), kThreads>>>(
      dev(table), reinterpret_cast<const i64*>(d_ids.get()), count, width, scale, dev(out));
  G4_CUDA_CHECK_LAUNCH();
}
template <class S>
void scatter_add_rows(const S* d, const i64* ids, i64 count, i64 width, float scale, float* table) {
  if (count * width == 0) return;
  std::vector<i64> tokens(static_cast<std::size_t>(count));
  std::iota(tokens.begin(), tokens.end(), i64{0});
  std::stable_sort(tokens.begin(), tokens.end(), [&](i64 a, i64 b) { return ids[a] < ids[b]; });
  std::vector<i64> first, row_of;
  for (i64 j = 0; j < count; ++j)
    if (j == 0 || ids[tokens[j]] != ids[tokens[j - 1]]) {
      first.push_back(j);
      row_of.push_back(ids[tokens[j]]);
    }
  first.push_back(count);
  const auto d_tokens = upload(tokens.data(), count), d_first = upload(first.data(), first.size()),
             d_rows = upload(row_of.data(), row_of.size());
  scatter_rows_kernel<<<static_cast<unsigned>(row_of.size()), kThreads>>>(
      dev(d), reinterpret_cast<const i64*>(d_tokens.get()), reinterpret_cast<const i64*>(d_first.get()),
      reinterpret_cast<const i64*>(d_rows.get()), width, scale, table);
  G4_CUDA_CHECK_LAUNCH();
}

// Row-major GEMMs through column-major cuBLAS: a row-major [R, C] matrix is a column-major [C, R] one.
// f32: SGEMM in full fp32 (no TF32); bf16: tensor cores, fp32 accumulation, C in bf16 or f32.
template <class S>
cudaDataType_t cuda_type() {
  return std::is_same_v<S, float> ? CUDA_R_32F : CUDA_R_16BF;
}
// C (col-major [m, n]) = opA(A) · opB(B) (+ C).
template <class S, class C>
void gemm(cublasOperation_t op_a, cublasOperation_t op_b, i64 m, i64 n, i64 k, const S* a, i64 lda,
          const S* b, i64 ldb, C* c, i64 ldc, bool accumulate) {
  if (m * n == 0) return;
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  if constexpr (std::is_same_v<S, float> && std::is_same_v<C, float>) {
    G4_CUBLAS_CHECK(cublasSgemm(cublas(), op_a, op_b, static_cast<int>(m), static_cast<int>(n),
                                static_cast<int>(k), &one, a, static_cast<int>(lda), b, static_cast<int>(ldb),
                                &beta, c, static_cast<int>(ldc)));
  } else {
    G4_CUBLAS_CHECK(cublasGemmEx(cublas_bf16(), op_a, op_b, static_cast<int>(m), static_cast<int>(n),
                                 static_cast<int>(k), &one, a, cuda_type<S>(), static_cast<int>(lda), b,
                                 cuda_type<S>(), static_cast<int>(ldb), &beta, c, cuda_type<C>(),
                                 static_cast<int>(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
}
template <class S, class Y>
void linear_into(const S* x, const S* w, Y* y, i64 M, i64 N, i64 K, bool accumulate) {
  gemm(CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, w, K, x, K, y, N, accumulate);
}
template <class S>
void linear_forward(const S* x, const S* w, S* y, i64 M, i64 N, i64 K, bool accumulate) {
  linear_into(x, w, y, M, N, K, accumulate);
}
template <class S>
void linear_forward_f32(const S* x, const S* w, float* y, i64 M, i64 N, i64 K) {
  linear_into(x, w, y, M, N, K, false);
}
template <class S>
void matmul_nn(const S* a, const S* b, S* c, i64 M, i64 N, i64 K, bool accumulate) {
  gemm(CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, b, N, a, K, c, N, accumulate);
}
template <class S>
void matmul_tn(const S* a, const S* b, float* c, i64 M, i64 N, i64 K, bool accumulate) {
  gemm(CUBLAS_OP_N, CUBLAS_OP_T, N, M, K, b, N, a, M, c, N, accumulate);
}

template <class S>
void rms_norm_forward(const S* x, const S* w, S* y, i64 rows, i64 dim, float eps) {
  if (rows == 0) return;
  rms_norm_kernel<<<static_cast<unsigned>(rows), kThreads>>>(dev(x), dev(w), dev(y), dim, eps);
  G4_CUDA_CHECK_LAUNCH();
}
template <class S>
void rms_norm_backward(const S* x, const S* w, const S* dy, S* dx, float* dweight, i64 rows, i64 dim,
                       float eps) {
  if (rows == 0) return;
  const std::shared_ptr<std::byte[]> inv = cuda_allocator().allocate(rows * sizeof(double));
  auto* inv_rows = reinterpret_cast<double*>(inv.get());
  rms_norm_backward_kernel<<<static_cast<unsigned>(rows), kThreads>>>(dev(x), dev(w), dev(dy), dev(dx),
                                                                      inv_rows, dim, eps);
  G4_CUDA_CHECK_LAUNCH();
  if (w && dweight) {
    const i64 chunks = (rows + kWeightGradRows - 1) / kWeightGradRows;
    const std::shared_ptr<std::byte[]> partial = cuda_allocator().allocate(chunks * dim * sizeof(double));
    auto* part = reinterpret_cast<double*>(partial.get());
    rms_norm_weight_grad_partial_kernel<<<dim3(static_cast<unsigned>((dim + kThreads - 1) / kThreads),
                                               static_cast<unsigned>(std::min<i64>(chunks, 65535))),
                                          kThreads>>>(dev(x), dev(dy), inv_rows, rows, dim, part);
    G4_CUDA_CHECK_LAUNCH();
    rms_norm_weight_grad_sum_kernel<<<blocks_for(dim), kThreads>>>(part, chunks, dim, dweight);
    G4_CUDA_CHECK_LAUNCH();
  }
}

template <class S>
void rope_run(S* x, const RopeTable& table, i64 tokens, int heads, bool backward) {
  const i64 n = tokens * heads * (table.head_dim / 2);
  if (n == 0) return;
  const auto c = upload(table.cos.data(), static_cast<i64>(table.cos.size()));
  const auto sn = upload(table.sin.data(), static_cast<i64>(table.sin.size()));
  rope_kernel<<<blocks_for(n), kThreads>>>(dev(x), reinterpret_cast<const float*>(c.get()),
                                           reinterpret_cast<const float*>(sn.get()), tokens, heads,
                                           table.head_dim, backward);
  G4_CUDA_CHECK_LAUNCH();
}
template <class S>
void rope_apply(S* x, const RopeTable& table, i64 tokens, int heads) {
  rope_run(x, table, tokens, heads, false);
}
template <class S>
void rope_backward(S* dx, const RopeTable& table, i64 tokens, int heads) {
  rope_run(dx, table, tokens, heads, true);
}

LossResult token_loss(const float* logits, const i64* targets, i64 N, i64 V) {
  LossResult r;
  if (N == 0) return r;
  const auto d_targets = upload(targets, N);
  const std::shared_ptr<std::byte[]> loss = cuda_allocator().allocate(N * sizeof(double));
  loss_kernel<<<static_cast<unsigned>(N), kThreads>>>(logits, reinterpret_cast<const i64*>(d_targets.get()),
                                                      V, reinterpret_cast<double*>(loss.get()), nullptr, 1.0);
  G4_CUDA_CHECK_LAUNCH();
  std::vector<double> host(static_cast<std::size_t>(N));
  G4_CUDA_CHECK(cudaMemcpy(host.data(), loss.get(), N * sizeof(double), cudaMemcpyDeviceToHost));
  for (i64 p = 0; p < N; ++p)
    if (targets[p] != kIgnore) {
      r.loss_sum += host[p];
      r.num_tokens += 1;
    }
  return r;
}

void token_loss_backward(const float* logits, const i64* targets, float* dlogits, i64 N, i64 V,
                         double normaliser) {
  if (N == 0) return;
  const auto d_targets = upload(targets, N);
  loss_kernel<<<static_cast<unsigned>(N), kThreads>>>(logits, reinterpret_cast<const i64*>(d_targets.get()),
                                                      V, nullptr, dlogits, normaliser);
  G4_CUDA_CHECK_LAUNCH();
}

// Position t of a row of S predicts labels[t + 1]; the last position of every row predicts nothing.
std::vector<i64> shifted_targets(const i64* labels, i64 B, i64 S) {
  std::vector<i64> targets(static_cast<std::size_t>(B * S), kIgnore);
  for (i64 p = 0; p < B * S; ++p)
    if (p % S + 1 < S) targets[static_cast<std::size_t>(p)] = labels[p + 1];
  return targets;
}

LossResult causal_lm_loss(const float* logits, const i64* labels, i64 B, i64 S, i64 V) {
  return token_loss(logits, shifted_targets(labels, B, S).data(), B * S, V);
}

void causal_lm_loss_backward(const float* logits, const i64* labels, float* dlogits, i64 B, i64 S, i64 V,
                             double normaliser) {
  token_loss_backward(logits, shifted_targets(labels, B, S).data(), dlogits, B * S, V, normaliser);
}

// The row's visibility on the device: first/last per query and the key mask, uploaded.
struct DeviceRows {
  std::shared_ptr<std::byte[]> first, last, mask;
  RowView view;
};
DeviceRows device_rows(const AttentionVisibility& visibility) {
  const RowBounds bounds = visible_row_bounds(visibility);
  DeviceRows r;
  r.first = upload(bounds.first.data(), visibility.queries);
  r.last = upload(bounds.last.data(), visibility.queries);
  if (visibility.key_mask) r.mask = upload(visibility.key_mask, visibility.keys);
  r.view = {reinterpret_cast<const i64*>(r.first.get()), reinterpret_cast<const i64*>(r.last.get()),
            reinterpret_cast<const std::uint8_t*>(r.mask.get())};
  return r;
}

void require_reference_head_dim(int D) {
  if (D > kAttentionThreads * kMaxPerThread)
    fail("attention on CUDA: head_dim ", D, " is above the reference kernels' ",
         kAttentionThreads * kMaxPerThread);
}

// bf16 at head_dim 256 and 512 (every Gemma 4 attention layer) runs the flash kernels (ops/cuda/
// flash_attention.h); f32 and other head dims the reference kernels above.
template <class S>
bool flash_attention_serves(int D) {
  return std::is_same_v<S, Bf16Bits> && (D == 256 || D == 512);
}

FlashVisibility flash_visibility(const AttentionVisibility& visibility, const DeviceRows& rows) {
  return {visibility.queries, visibility.keys, rows.view.first, rows.view.last, rows.view.key_mask};
}

template <class T>
std::shared_ptr<std::byte[]> allocate_of(i64 count) {
  return cuda_allocator().allocate(static_cast<std::uint64_t>(std::max<i64>(count, 1)) * sizeof(T));
}

template <class S>
void attention_forward(const S* q, const S* k, const S* v, const AttentionVisibility& visibility, S* out,
                       int Nq, int Nkv, int D) {
  if (visibility.queries == 0) return;
  const DeviceRows rows = device_rows(visibility);
  if constexpr (std::is_same_v<S, Bf16Bits>) {
    if (flash_attention_serves<S>(D)) {
      const auto lse = allocate_of<float>(static_cast<i64>(Nq) * visibility.queries);
      flash_attention_forward(dev(q), dev(k), dev(v), flash_visibility(visibility, rows), Nq, Nkv, D,
                              dev(out), reinterpret_cast<float*>(lse.get()), cudaStreamLegacy);
      return;
    }
  }
  require_reference_head_dim(D);
  attention_forward_kernel<<<dim3(static_cast<unsigned>(visibility.queries), Nq), kAttentionThreads>>>(
      dev(q), dev(k), dev(v), rows.view, Nq, Nkv, D, dev(out));
  G4_CUDA_CHECK_LAUNCH();
}

template <class S>
void attention_backward(const S* q, const S* k, const S* v, const AttentionVisibility& visibility,
                        const S* dout, S* dq, S* dk, S* dv, int Nq, int Nkv, int D) {
  if (visibility.queries == 0) return;
  const DeviceRows rows = device_rows(visibility);
  if constexpr (std::is_same_v<S, Bf16Bits>) {
    if (flash_attention_serves<S>(D)) {
      // The op interface saves no forward state: the forward runs again for out and the log-sum-exp. The
      // flash backward overwrites its dK/dV, which the op accumulates (+=) into the caller's.
      const FlashVisibility vis = flash_visibility(visibility, rows);
      const i64 q_elems = visibility.queries * Nq * D, kv_elems = visibility.keys * Nkv * D;
      const auto out = allocate_of<S>(q_elems),
                 lse = allocate_of<float>(static_cast<i64>(Nq) * visibility.queries),
                 dk_new = allocate_of<S>(kv_elems), dv_new = allocate_of<S>(kv_elems);
      auto* o = reinterpret_cast<__nv_bfloat16*>(out.get());
      auto* l = reinterpret_cast<float*>(lse.get());
      flash_attention_forward(dev(q), dev(k), dev(v), vis, Nq, Nkv, D, o, l, cudaStreamLegacy);
      flash_attention_backward(dev(q), dev(k), dev(v), o, dev(dout), l, vis, Nq, Nkv, D, dev(dq),
                               reinterpret_cast<__nv_bfloat16*>(dk_new.get()),
                               reinterpret_cast<__nv_bfloat16*>(dv_new.get()), cudaStreamLegacy);
      add_inplace(dk, reinterpret_cast<const S*>(dk_new.get()), kv_elems);
      add_inplace(dv, reinterpret_cast<const S*>(dv_new.get()), kv_elems);
      return;
    }
  }
  require_reference_head_dim(D);
  const std::shared_ptr<std::byte[]> stats =
      cuda_allocator().allocate(static_cast<std::uint64_t>(visibility.queries) * Nq * 3 * sizeof(float));
  auto* st = reinterpret_cast<float*>(stats.get());
  attention_dq_kernel<<<dim3(static_cast<unsigned>(visibility.queries), Nq), kAttentionThreads>>>(
      dev(q), dev(k), dev(v), dev(dout), rows.view, Nq, Nkv, D, dev(dq), st);
  G4_CUDA_CHECK_LAUNCH();
  if (visibility.keys == 0) return;
  attention_dkv_kernel<<<dim3(static_cast<unsigned>(visibility.keys), Nkv), kAttentionThreads>>>(
      dev(q), dev(k), dev(v), dev(dout), rows.view, visibility.queries, Nq, Nkv, D, st, dev(dk), dev(dv));
  G4_CUDA_CHECK_LAUNCH();
}

template <class S>
void geglu_forward(const S* gate, const S* up, S* out, i64 n) {
  if (n == 0) return;
  geglu_kernel<<<blocks_for(n), kThreads>>>(dev(gate), dev(up), dev(out), n);
  G4_CUDA_CHECK_LAUNCH();
}
template <class S>
void geglu_backward(const S* gate, const S* up, const S* dout, S* dgate, S* dup, i64 n) {
  if (n == 0) return;
  geglu_backward_kernel<<<blocks_for(n), kThreads>>>(dev(gate), dev(up), dev(dout), dev(dgate), dev(dup), n);
  G4_CUDA_CHECK_LAUNCH();
}
template <class S>
void middle_slice_copy(const S* x, i64 A, i64 M, i64 B, i64 index, S* out) {
  if (A * B == 0) return;
  middle_slice_kernel<<<blocks_for(A * B), kThreads>>>(dev(x), A, M, B, index, dev(out), false);
  G4_CUDA_CHECK_LAUNCH();
}
template <class S>
void middle_slice_add(S* x, i64 A, i64 M, i64 B, i64 index, const S* d) {
  if (A * B == 0) return;
  middle_slice_kernel<<<blocks_for(A * B), kThreads>>>(dev(x), A, M, B, index, const_cast<Dev<S>*>(dev(d)),
                                                       true);
  G4_CUDA_CHECK_LAUNCH();
}
void softcap_forward(float* x, i64 n, float cap) {
  if (n == 0) return;
  softcap_kernel<<<blocks_for(n), kThreads>>>(x, n, cap);
  G4_CUDA_CHECK_LAUNCH();
}
void softcap_backward(const float* capped, float* grad, i64 n, float cap) {
  if (n == 0) return;
  softcap_backward_kernel<<<blocks_for(n), kThreads>>>(capped, grad, n, cap);
  G4_CUDA_CHECK_LAUNCH();
}
void adamw_update(float* w, const float* g, float* m, float* v, i64 n, const AdamWStepConstants& k) {
  if (n == 0) return;
  adamw_kernel<<<blocks_for(n), kThreads>>>(w, g, m, v, n, k);
  G4_CUDA_CHECK_LAUNCH();
}
double sum_of_squares(const float* x, i64 n) {
  if (n == 0) return 0.0;
  constexpr int kBlocks = 256;
  const std::shared_ptr<std::byte[]> partial = cuda_allocator().allocate(kBlocks * sizeof(double));
  squares_kernel<<<kBlocks, kThreads>>>(x, n, reinterpret_cast<double*>(partial.get()));
  G4_CUDA_CHECK_LAUNCH();
  std::vector<double> host(kBlocks);
  G4_CUDA_CHECK(cudaMemcpy(host.data(), partial.get(), kBlocks * sizeof(double), cudaMemcpyDeviceToHost));
  double total = 0;
  for (double p : host) total += p;
  return total;
}

}  // namespace

Allocator& cuda_device_allocator(const char* what) {
  check(cuda_device_available(), what, " needs a CUDA device, and none is usable on this machine");
  install_cuda_kernels();
  return cuda_allocator();
}

// The entries every storage type has.
template <class S>
void fill_storage_kernels(KernelTable<S>& k) {
  k.add_inplace = add_inplace<S>;
  k.scale_inplace = scale_inplace<S>;
  k.scale_copy = scale_copy<S>;
  k.clamp_inplace = clamp_inplace<S>;
  k.clamp_backward = clamp_backward<S>;
  k.copy = copy<S>;
  k.zero = zero<S>;
  k.to_f32 = convert<S, float>;
  k.from_f32 = convert<float, S>;
  k.gather_rows = gather_rows<S>;
  k.scatter_add_rows = scatter_add_rows<S>;
  k.linear_forward = linear_forward<S>;
  k.linear_forward_f32 = linear_forward_f32<S>;
  k.matmul_nn = matmul_nn<S>;
  k.matmul_tn = matmul_tn<S>;
  k.rms_norm_forward = rms_norm_forward<S>;
  k.rms_norm_backward = rms_norm_backward<S>;
  k.rope_apply = rope_apply<S>;
  k.rope_backward = rope_backward<S>;
  k.attention_forward = attention_forward<S>;
  k.attention_backward = attention_backward<S>;
  k.geglu_forward = geglu_forward<S>;
  k.geglu_backward = geglu_backward<S>;
  k.middle_slice_copy = middle_slice_copy<S>;
  k.middle_slice_add = middle_slice_add<S>;
}

void install_cuda_kernels() {
  static std::once_flag once;
  std::call_once(once, [] {
    Kernels& k = cuda_kernels();
    fill_storage_kernels(k);
    k.causal_lm_loss = causal_lm_loss;
    k.causal_lm_loss_backward = causal_lm_loss_backward;
    k.token_loss = token_loss;
    k.token_loss_backward = token_loss_backward;
    k.softcap_forward = softcap_forward;
    k.softcap_backward = softcap_backward;
    k.adamw_update = adamw_update;
    k.sum_of_squares = sum_of_squares;
    fill_storage_kernels(cuda_bf16_kernels());
    install_cuda_moe_block();
    set_default_activation_allocator(cuda_allocator());
  });
}

}  // namespace g4::cuda
