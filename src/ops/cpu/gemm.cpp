#include "ops/cpu/gemm.h"

#include <cblas.h>

namespace g4 {

void linear_forward(const float* x, const float* w, float* y, std::int64_t M, std::int64_t N, std::int64_t K,
                    bool accumulate) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(M), static_cast<int>(N),
              static_cast<int>(K), 1.0f, x, static_cast<int>(K), w, static_cast<int>(K),
              accumulate ? 1.0f : 0.0f, y, static_cast<int>(N));
}

void matmul_nn(const float* a, const float* b, float* c, std::int64_t M, std::int64_t N, std::int64_t K,
               bool accumulate) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(M), static_cast<int>(N),
              static_cast<int>(K), 1.0f, a, static_cast<int>(K), b, static_cast<int>(N),
              accumulate ? 1.0f : 0.0f, c, static_cast<int>(N));
}

void matmul_tn(const float* a, const float* b, float* c, std::int64_t M, std::int64_t N, std::int64_t K,
               bool accumulate) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(M), static_cast<int>(N),
              static_cast<int>(K), 1.0f, a, static_cast<int>(M), b, static_cast<int>(N),
              accumulate ? 1.0f : 0.0f, c, static_cast<int>(N));
}

}  // namespace g4
