#include "ops/cpu/elementwise.h"

#include "ops/gelu.h"

namespace g4 {

namespace {
constexpr std::int64_t kParallelFrom = 65536;  // elements; below this one thread is faster
}

void add_inplace(float* x, const float* y, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelFrom)
  for (std::int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void scale_inplace(float* x, float factor, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelFrom)
  for (std::int64_t i = 0; i < n; ++i) x[i] *= factor;
}

void scale_copy(const float* x, float factor, float* y, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelFrom)
  for (std::int64_t i = 0; i < n; ++i) y[i] = x[i] * factor;
}

void clamp_inplace(float* x, float lo, float hi, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelFrom)
  for (std::int64_t i = 0; i < n; ++i) x[i] = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]);
}

void clamp_backward(float* dy, const float* x, float lo, float hi, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelFrom)
  for (std::int64_t i = 0; i < n; ++i)
    if (!(x[i] >= lo && x[i] <= hi)) dy[i] = 0.0f;
}

void geglu_forward(const float* gate, const float* up, float* out, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelFrom)
  for (std::int64_t i = 0; i < n; ++i) out[i] = gelu_tanh(gate[i]) * up[i];
}

void geglu_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                    std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelFrom)
  for (std::int64_t i = 0; i < n; ++i) {
    dgate[i] = dout[i] * up[i] * gelu_tanh_grad(gate[i]);
    dup[i] = dout[i] * gelu_tanh(gate[i]);
  }
}

void gather_rows(const float* table, const std::int64_t* ids, std::int64_t count, std::int64_t width,
                 float scale, float* out) {
  for (std::int64_t t = 0; t < count; ++t) {
    const float* row = table + ids[t] * width;
    float* o = out + t * width;
    for (std::int64_t i = 0; i < width; ++i) o[i] = row[i] * scale;
  }
}

void scatter_add_rows(const float* d, const std::int64_t* ids, std::int64_t count, std::int64_t width,
                      float scale, float* table) {
  for (std::int64_t t = 0; t < count; ++t) {
    float* row = table + ids[t] * width;
    const float* dt = d + t * width;
    for (std::int64_t i = 0; i < width; ++i) row[i] += dt[i] * scale;
  }
}

void middle_slice_copy(const float* x, std::int64_t A, std::int64_t M, std::int64_t B, std::int64_t index,
                       float* out) {
  for (std::int64_t a = 0; a < A; ++a) {
    const float* src = x + (a * M + index) * B;
    for (std::int64_t b = 0; b < B; ++b) out[a * B + b] = src[b];
  }
}

void middle_slice_add(float* x, std::int64_t A, std::int64_t M, std::int64_t B, std::int64_t index,
                      const float* d) {
  for (std::int64_t a = 0; a < A; ++a) {
    float* dst = x + (a * M + index) * B;
    for (std::int64_t b = 0; b < B; ++b) dst[b] += d[a * B + b];
  }
}

}  // namespace g4
