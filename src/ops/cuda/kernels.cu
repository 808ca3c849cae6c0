#include "ops/cuda/kernels.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <numeric>
#include <vector>

#include "core/cuda/caching_allocator.h"
#include "core/cuda/cuda_check.h"
#include "core/error.h"
#include "ops/cpu/attention.h"
#include "ops/cpu/gelu.h"
#include "ops/cuda/cuda_context.h"
#include "ops/kernels.h"

namespace g4::cuda {

namespace {

using i64 = std::int64_t;
constexpr int kThreads = 256;

int blocks_for(i64 n) {
  return static_cast<int>(std::min<i64>((n + kThreads - 1) / kThreads, 65535 * 8));
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

// ---- elementwise

__global__ void add_kernel(float* x, const float* y, i64 n) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x)
    x[i] += y[i];
}
__global__ void scale_kernel(const float* x, float f, float* y, i64 n) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x)
    y[i] = x[i] * f;
}

__global__ void geglu_kernel(const float* gate, const float* up, float* out, i64 n) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x)
    out[i] = gelu_tanh(gate[i]) * up[i];
}
__global__ void geglu_backward_kernel(const float* gate, const float* up, const float* dout, float* dgate,
                                      float* dup, i64 n) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x) {
    dgate[i] = dout[i] * up[i] * gelu_tanh_grad(gate[i]);
    dup[i] = dout[i] * gelu_tanh(gate[i]);
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
__global__ void middle_slice_kernel(const float* x, i64 A, i64 M, i64 B, i64 index, float* out, bool add) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < A * B; i += i64{gridDim.x} * blockDim.x) {
    const i64 a = i / B, b = i % B;
    if (add)
      const_cast<float*>(x)[(a * M + index) * B + b] += out[i];
    else
      out[i] = x[(a * M + index) * B + b];
  }
}

// ---- embedding: rows gathered; the backward sums each distinct id's tokens in token order.

__global__ void gather_rows_kernel(const float* table, const i64* ids, i64 count, i64 width, float scale,
                                   float* out) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < count * width;
       i += i64{gridDim.x} * blockDim.x)
    out[i] = table[ids[i / width] * width + i % width] * scale;
}

// Block u handles distinct id ids_sorted[first[u]]; tokens[first[u] .. first[u+1]) are its tokens, ascending.
__global__ void scatter_rows_kernel(const float* d, const i64* tokens, const i64* first, const i64* row_of,
                                    i64 width, float scale, float* table) {
  const i64 u = blockIdx.x;
  float* row = table + row_of[u] * width;
  for (i64 c = threadIdx.x; c < width; c += blockDim.x) {
    float acc = row[c];
    for (i64 j = first[u]; j < first[u + 1]; ++j) acc += d[tokens[j] * width + c] * scale;
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

__global__ void rms_norm_kernel(const float* x, const float* w, float* y, i64 dim, float eps) {
  __shared__ double shared[33];
  const float* xr = x + blockIdx.x * dim;
  float* yr = y + blockIdx.x * dim;
  double s = 0;
  for (i64 i = threadIdx.x; i < dim; i += blockDim.x) s += static_cast<double>(xr[i]) * xr[i];
  const double inv = 1.0 / sqrt(block_sum(s, shared) / static_cast<double>(dim) + static_cast<double>(eps));
  for (i64 i = threadIdx.x; i < dim; i += blockDim.x) {
    const double v = xr[i] * inv;
    yr[i] = static_cast<float>(w ? v * w[i] : v);
  }
}

// dx per row; inv of each row kept for the weight gradient.
__global__ void rms_norm_backward_kernel(const float* x, const float* w, const float* dy, float* dx,
                                         double* inv_out, i64 dim, float eps) {
  __shared__ double shared[33];
  const i64 r = blockIdx.x;
  const float *xr = x + r * dim, *dyr = dy + r * dim;
  float* dxr = dx + r * dim;
  double s = 0;
  for (i64 i = threadIdx.x; i < dim; i += blockDim.x) s += static_cast<double>(xr[i]) * xr[i];
  const double inv = 1.0 / sqrt(block_sum(s, shared) / static_cast<double>(dim) + static_cast<double>(eps));
  double dot = 0;
  for (i64 i = threadIdx.x; i < dim; i += blockDim.x) {
    const double dn = w ? static_cast<double>(dyr[i]) * w[i] : dyr[i];
    dot += dn * xr[i] * inv;
  }
  const double mean_dot = block_sum(dot, shared) / static_cast<double>(dim);
  for (i64 i = threadIdx.x; i < dim; i += blockDim.x) {
    const double dn = w ? static_cast<double>(dyr[i]) * w[i] : dyr[i];
    dxr[i] = static_cast<float>(inv * (dn - xr[i] * inv * mean_dot));
  }
  if (threadIdx.x == 0) inv_out[r] = inv;
}

// dweight[i] += Σ_r dy[r,i] · x[r,i] · inv[r], rows in order (one thread per column).
__global__ void rms_norm_weight_grad_kernel(const float* x, const float* dy, const double* inv, i64 rows,
                                            i64 dim, float* dweight) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < dim; i += i64{gridDim.x} * blockDim.x) {
    double acc = 0;
    for (i64 r = 0; r < rows; ++r) acc += static_cast<double>(dy[r * dim + i]) * x[r * dim + i] * inv[r];
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

__global__ void rope_kernel(float* x, const float* cos_t, const float* sin_t, i64 tokens, int heads, int D,
                            bool backward) {
  const int half = D / 2;
  const i64 n = tokens * heads * half;
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x) {
    const int j = static_cast<int>(i % half);
    const i64 th = i / half, t = th / heads;
    float* v = x + th * D;
    const float* c = cos_t + t * D;
    const float* s = sin_t + t * D;
    const float a = v[j], b = v[j + half];
    if (!backward) {
      v[j] = a * c[j] - b * s[j];
      v[j + half] = b * c[j + half] + a * s[j + half];
    } else {  // the rotation's transpose
      v[j] = a * c[j] + b * s[j + half];
      v[j + half] = -a * s[j] + b * c[j + half];
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

// loss[p] = logsumexp(row) - row[label] for counted positions, 0 (and not counted) otherwise. With dlogits,
// writes the gradient row instead: (softmax - onehot) / normaliser, or zeros.
__global__ void loss_kernel(const float* logits, const i64* labels, i64 S, i64 V, double* loss,
                            float* dlogits, double normaliser) {
  __shared__ double shared[33];
  const i64 p = blockIdx.x, t = p % S;
  const i64 label = t + 1 < S ? labels[p + 1] : kIgnore;
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
// first/last visible key (ops/cpu/attention.h's RowBounds) and the key mask. The plain reference version:
// scores recomputed where needed, O(S) memory, no atomics; the flash kernels replace it for speed. Softmax as
// the CPU's: fp32 scores, max over visible keys, exp(diff) flushed to 0 below -80, denominator in double,
// p = exp · (float)(1 / denominator); a query that sees nothing gets a zero row.

struct RowView {
  const i64* first;
  const i64* last;
  const std::uint8_t* key_mask;
  __device__ bool visible(i64 i, i64 j) const {
    return j >= first[i] && j <= last[i] && (!key_mask || key_mask[j]);
  }
};

// Scores of query row (i, head h) against key j: a block-wide dot product over D (threads stride D).
__device__ float dot_block(const float* a, const float* b, int D, float* shared) {
  float partial = 0;
  for (int d = threadIdx.x; d < D; d += blockDim.x) partial += a[d] * b[d];
  for (int o = 16; o > 0; o /= 2) partial += __shfl_down_sync(0xffffffffu, partial, o);
  if (threadIdx.x % 32 == 0) shared[threadIdx.x / 32] = partial;
  __syncthreads();
  float total = 0;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) total += shared[w];
  __syncthreads();
  return total;
}

// One block per (query i, query head h): the row's max score m, 1/denominator inv (0 when it sees nothing).
__device__ void row_stats(const float* qi, const float* k, RowView rows, i64 i, int g, int Nkv, int D,
                          float* shared, float* m_out, float* inv_out) {
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

__global__ void attention_forward_kernel(const float* q, const float* k, const float* v, RowView rows, int Nq,
                                         int Nkv, int D, float* out) {
  __shared__ float shared[32];
  const i64 i = blockIdx.x;
  const int h = blockIdx.y, g = h / (Nq / Nkv);
  const float* qi = q + (i * Nq + h) * D;
  float m, inv;
  row_stats(qi, k, rows, i, g, Nkv, D, shared, &m, &inv);
  float* o = out + (i * Nq + h) * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) o[d] = 0.0f;
  if (inv == 0.0f) return;
  for (i64 j = rows.first[i]; j <= rows.last[i]; ++j) {
    if (!rows.visible(i, j)) continue;
    const float p = prob(dot_block(qi, k + (j * Nkv + g) * D, D, shared), m, inv);
    for (int d = threadIdx.x; d < D; d += blockDim.x) o[d] += p * v[(j * Nkv + g) * D + d];
  }
}

// Backward, pass 1, one block per (i, h): stats, D_i = Σ_j p_ij dP_ij (dP_ij = dout_i · v_j), and
// dq_i = Σ_j p_ij (dP_ij - D_i) k_j (overwritten).
__global__ void attention_dq_kernel(const float* q, const float* k, const float* v, const float* dout,
                                    RowView rows, int Nq, int Nkv, int D, float* dq, float* stats) {
  __shared__ float shared[32];
  const i64 i = blockIdx.x;
  const int h = blockIdx.y, g = h / (Nq / Nkv);
  const float* qi = q + (i * Nq + h) * D;
  const float* doi = dout + (i * Nq + h) * D;
  float m, inv;
  row_stats(qi, k, rows, i, g, Nkv, D, shared, &m, &inv);
  float Di = 0;
  for (i64 j = rows.first[i]; j <= rows.last[i] && inv != 0.0f; ++j) {
    if (!rows.visible(i, j)) continue;
    const float p = prob(dot_block(qi, k + (j * Nkv + g) * D, D, shared), m, inv);
    Di += p * dot_block(doi, v + (j * Nkv + g) * D, D, shared);
  }
  float* dqi = dq + (i * Nq + h) * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) dqi[d] = 0.0f;
  for (i64 j = rows.first[i]; j <= rows.last[i] && inv != 0.0f; ++j) {
    if (!rows.visible(i, j)) continue;
    const float p = prob(dot_block(qi, k + (j * Nkv + g) * D, D, shared), m, inv);
    const float ds = p * (dot_block(doi, v + (j * Nkv + g) * D, D, shared) - Di);
    for (int d = threadIdx.x; d < D; d += blockDim.x) dqi[d] += ds * k[(j * Nkv + g) * D + d];
  }
  if (threadIdx.x == 0) {
    float* st = stats + (i * Nq + h) * 3;
    st[0] = m;
    st[1] = inv;
    st[2] = Di;
  }
}

// Backward, pass 2, one block per (key j, KV head g): dk_j += Σ_{h in g, i} ds_ij q_i and
// dv_j += Σ_{h in g, i} p_ij dout_i, heads then queries in ascending order (no atomics).
__global__ void attention_dkv_kernel(const float* q, const float* k, const float* v, const float* dout,
                                     RowView rows, i64 Sq, int Nq, int Nkv, int D, const float* stats,
                                     float* dk, float* dv) {
  __shared__ float shared[32];
  const i64 j = blockIdx.x;
  const int g = blockIdx.y, group = Nq / Nkv;
  const float* kj = k + (j * Nkv + g) * D;
  const float* vj = v + (j * Nkv + g) * D;
  float* dkj = dk + (j * Nkv + g) * D;
  float* dvj = dv + (j * Nkv + g) * D;
  for (int h = g * group; h < (g + 1) * group; ++h)
    for (i64 i = 0; i < Sq; ++i) {
      if (!rows.visible(i, j)) continue;
      const float* st = stats + (i * Nq + h) * 3;
      if (st[1] == 0.0f) continue;
      const float* qi = q + (i * Nq + h) * D;
      const float* doi = dout + (i * Nq + h) * D;
      const float p = prob(dot_block(qi, kj, D, shared), st[0], st[1]);
      const float ds = p * (dot_block(doi, vj, D, shared) - st[2]);
      for (int d = threadIdx.x; d < D; d += blockDim.x) {
        dkj[d] += ds * qi[d];
        dvj[d] += p * doi[d];
      }
    }
}

// ---- host entry points (ops/kernels.h signatures)

void add_inplace(float* x, const float* y, i64 n) {
  if (n == 0) return;
  add_kernel<<<blocks_for(n), kThreads>>>(x, y, n);
  G4_CUDA_CHECK_LAUNCH();
}
void scale_inplace(float* x, float f, i64 n) {
  if (n == 0) return;
  scale_kernel<<<blocks_for(n), kThreads>>>(x, f, x, n);
  G4_CUDA_CHECK_LAUNCH();
}
void scale_copy(const float* x, float f, float* y, i64 n) {
  if (n == 0) return;
  scale_kernel<<<blocks_for(n), kThreads>>>(x, f, y, n);
  G4_CUDA_CHECK_LAUNCH();
}
void copy(const float* x, float* y, i64 n) {
  if (n > 0) G4_CUDA_CHECK(cudaMemcpyAsync(y, x, n * sizeof(float), cudaMemcpyDeviceToDevice, nullptr));
}
void gather_rows(const float* table, const i64* ids, i64 count, i64 width, float scale, float* out) {
  if (count * width == 0) return;
  const auto d_ids = upload(ids, count);
  gather_rows_kernel<<<blocks_for(count * width), kThreads>>>(
      table, reinterpret_cast<const i64*>(d_ids.get()), count, width, scale, out);
  G4_CUDA_CHECK_LAUNCH();
}
void scatter_add_rows(const float* d, const i64* ids, i64 count, i64 width, float scale, float* table) {
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
      d, reinterpret_cast<const i64*>(d_tokens.get()), reinterpret_cast<const i64*>(d_first.get()),
      reinterpret_cast<const i64*>(d_rows.get()), width, scale, table);
  G4_CUDA_CHECK_LAUNCH();
}

// Row-major GEMMs through column-major cuBLAS: a row-major [R, C] matrix is a column-major [C, R] one.
void linear_forward(const float* x, const float* w, float* y, i64 M, i64 N, i64 K, bool accumulate) {
  if (M * N == 0) return;
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  G4_CUBLAS_CHECK(cublasSgemm(cublas(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(M),
                              static_cast<int>(K), &one, w, static_cast<int>(K), x, static_cast<int>(K),
                              &beta, y, static_cast<int>(N)));
}
void matmul_nn(const float* a, const float* b, float* c, i64 M, i64 N, i64 K, bool accumulate) {
  if (M * N == 0) return;
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  G4_CUBLAS_CHECK(cublasSgemm(cublas(), CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(M),
                              static_cast<int>(K), &one, b, static_cast<int>(N), a, static_cast<int>(K),
                              &beta, c, static_cast<int>(N)));
}
void matmul_tn(const float* a, const float* b, float* c, i64 M, i64 N, i64 K, bool accumulate) {
  if (M * N == 0) return;
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  G4_CUBLAS_CHECK(cublasSgemm(cublas(), CUBLAS_OP_N, CUBLAS_OP_T, static_cast<int>(N), static_cast<int>(M),
                              static_cast<int>(K), &one, b, static_cast<int>(N), a, static_cast<int>(M),
                              &beta, c, static_cast<int>(N)));
}

void rms_norm_forward(const float* x, const float* w, float* y, i64 rows, i64 dim, float eps) {
  if (rows == 0) return;
  rms_norm_kernel<<<static_cast<unsigned>(rows), kThreads>>>(x, w, y, dim, eps);
  G4_CUDA_CHECK_LAUNCH();
}
void rms_norm_backward(const float* x, const float* w, const float* dy, float* dx, float* dweight, i64 rows,
                       i64 dim, float eps) {
  if (rows == 0) return;
  const std::shared_ptr<std::byte[]> inv = cuda_allocator().allocate(rows * sizeof(double));
  auto* inv_rows = reinterpret_cast<double*>(inv.get());
  rms_norm_backward_kernel<<<static_cast<unsigned>(rows), kThreads>>>(x, w, dy, dx, inv_rows, dim, eps);
  G4_CUDA_CHECK_LAUNCH();
  if (w && dweight) {
    rms_norm_weight_grad_kernel<<<blocks_for(dim), kThreads>>>(x, dy, inv_rows, rows, dim, dweight);
    G4_CUDA_CHECK_LAUNCH();
  }
}

void rope_run(float* x, const RopeTable& table, i64 tokens, int heads, bool backward) {
  const i64 n = tokens * heads * (table.head_dim / 2);
  if (n == 0) return;
  const auto c = upload(table.cos.data(), static_cast<i64>(table.cos.size()));
  const auto sn = upload(table.sin.data(), static_cast<i64>(table.sin.size()));
  rope_kernel<<<blocks_for(n), kThreads>>>(x, reinterpret_cast<const float*>(c.get()),
                                           reinterpret_cast<const float*>(sn.get()), tokens, heads,
                                           table.head_dim, backward);
  G4_CUDA_CHECK_LAUNCH();
}
void rope_apply(float* x, const RopeTable& table, i64 tokens, int heads) {
  rope_run(x, table, tokens, heads, false);
}
void rope_backward(float* dx, const RopeTable& table, i64 tokens, int heads) {
  rope_run(dx, table, tokens, heads, true);
}

LossResult causal_lm_loss(const float* logits, const i64* labels, i64 B, i64 S, i64 V) {
  LossResult r;
  const i64 positions = B * S;
  if (positions == 0) return r;
  const auto d_labels = upload(labels, positions);
  const std::shared_ptr<std::byte[]> loss = cuda_allocator().allocate(positions * sizeof(double));
  loss_kernel<<<static_cast<unsigned>(positions), kThreads>>>(
      logits, reinterpret_cast<const i64*>(d_labels.get()), S, V, reinterpret_cast<double*>(loss.get()),
      nullptr, 1.0);
  G4_CUDA_CHECK_LAUNCH();
  std::vector<double> host(static_cast<std::size_t>(positions));
  G4_CUDA_CHECK(cudaMemcpy(host.data(), loss.get(), positions * sizeof(double), cudaMemcpyDeviceToHost));
  for (i64 p = 0; p < positions; ++p)
    if (p % S + 1 < S && labels[p + 1] != kIgnore) {
      r.loss_sum += host[p];
      r.num_tokens += 1;
    }
  return r;
}

void causal_lm_loss_backward(const float* logits, const i64* labels, float* dlogits, i64 B, i64 S, i64 V,
                             double normaliser) {
  const i64 positions = B * S;
  if (positions == 0) return;
  const auto d_labels = upload(labels, positions);
  loss_kernel<<<static_cast<unsigned>(positions), kThreads>>>(
      logits, reinterpret_cast<const i64*>(d_labels.get()), S, V, nullptr, dlogits, normaliser);
  G4_CUDA_CHECK_LAUNCH();
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

constexpr int kAttentionThreads = 128;

void attention_forward(const float* q, const float* k, const float* v, const AttentionVisibility& visibility,
                       float* out, int Nq, int Nkv, int D) {
  if (visibility.queries == 0) return;
  const DeviceRows rows = device_rows(visibility);
  attention_forward_kernel<<<dim3(static_cast<unsigned>(visibility.queries), Nq), kAttentionThreads>>>(
      q, k, v, rows.view, Nq, Nkv, D, out);
  G4_CUDA_CHECK_LAUNCH();
}

void attention_backward(const float* q, const float* k, const float* v, const AttentionVisibility& visibility,
                        const float* dout, float* dq, float* dk, float* dv, int Nq, int Nkv, int D) {
  if (visibility.queries == 0) return;
  const DeviceRows rows = device_rows(visibility);
  const std::shared_ptr<std::byte[]> stats =
      cuda_allocator().allocate(static_cast<std::uint64_t>(visibility.queries) * Nq * 3 * sizeof(float));
  auto* st = reinterpret_cast<float*>(stats.get());
  attention_dq_kernel<<<dim3(static_cast<unsigned>(visibility.queries), Nq), kAttentionThreads>>>(
      q, k, v, dout, rows.view, Nq, Nkv, D, dq, st);
  G4_CUDA_CHECK_LAUNCH();
  if (visibility.keys == 0) return;
  attention_dkv_kernel<<<dim3(static_cast<unsigned>(visibility.keys), Nkv), kAttentionThreads>>>(
      q, k, v, dout, rows.view, visibility.queries, Nq, Nkv, D, st, dk, dv);
  G4_CUDA_CHECK_LAUNCH();
}

void geglu_forward(const float* gate, const float* up, float* out, i64 n) {
  if (n == 0) return;
  geglu_kernel<<<blocks_for(n), kThreads>>>(gate, up, out, n);
  G4_CUDA_CHECK_LAUNCH();
}
void geglu_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup, i64 n) {
  if (n == 0) return;
  geglu_backward_kernel<<<blocks_for(n), kThreads>>>(gate, up, dout, dgate, dup, n);
  G4_CUDA_CHECK_LAUNCH();
}
void middle_slice_copy(const float* x, i64 A, i64 M, i64 B, i64 index, float* out) {
  if (A * B == 0) return;
  middle_slice_kernel<<<blocks_for(A * B), kThreads>>>(x, A, M, B, index, out, false);
  G4_CUDA_CHECK_LAUNCH();
}
void middle_slice_add(float* x, i64 A, i64 M, i64 B, i64 index, const float* d) {
  if (A * B == 0) return;
  middle_slice_kernel<<<blocks_for(A * B), kThreads>>>(x, A, M, B, index, const_cast<float*>(d), true);
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

void install_cuda_kernels() {
  static std::once_flag once;
  std::call_once(once, [] {
    Kernels& k = cuda_kernels();
    k.add_inplace = add_inplace;
    k.scale_inplace = scale_inplace;
    k.scale_copy = scale_copy;
    k.copy = copy;
    k.gather_rows = gather_rows;
    k.scatter_add_rows = scatter_add_rows;
    k.linear_forward = linear_forward;
    k.matmul_nn = matmul_nn;
    k.matmul_tn = matmul_tn;
    k.rms_norm_forward = rms_norm_forward;
    k.rms_norm_backward = rms_norm_backward;
    k.rope_apply = rope_apply;
    k.rope_backward = rope_backward;
    k.causal_lm_loss = causal_lm_loss;
    k.causal_lm_loss_backward = causal_lm_loss_backward;
    k.attention_forward = attention_forward;
    k.attention_backward = attention_backward;
    k.geglu_forward = geglu_forward;
    k.geglu_backward = geglu_backward;
    k.middle_slice_copy = middle_slice_copy;
    k.middle_slice_add = middle_slice_add;
    k.softcap_forward = softcap_forward;
    k.softcap_backward = softcap_backward;
    k.adamw_update = adamw_update;
    k.sum_of_squares = sum_of_squares;
    set_default_activation_allocator(cuda_allocator());
  });
}

}  // namespace g4::cuda
