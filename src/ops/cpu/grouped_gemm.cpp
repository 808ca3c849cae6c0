#include "ops/cpu/grouped_gemm.h"

#include <cblas.h>

namespace g4 {

namespace {

void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, const float* a, int lda,
               const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, 1.0f, a, lda, b, ldb, beta, c, ldc);
}
void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, const double* a, int lda,
               const double* b, int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, 1.0, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, const T* a, const T* b,
          T* c, bool accumulate) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!accumulate)
      for (std::int64_t i = 0; i < M * N; ++i) c[i] = T(0);
    return;
  }
  const int lda = static_cast<int>(trans_a ? M : K);
  const int ldb = static_cast<int>(trans_b ? K : N);
  blas_gemm(trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(M),
            static_cast<int>(N), static_cast<int>(K), a, lda, b, ldb, accumulate ? T(1) : T(0), c,
            static_cast<int>(N));
}

template <class T>
void grouped_gemm_nn(const T* x, const T* w, T* y, const std::int32_t* end_offsets, std::int64_t groups,
                     std::int64_t K, std::int64_t N) {
  std::int64_t begin = 0;
  for (std::int64_t g = 0; g < groups; ++g) {
    const std::int64_t end = end_offsets[g];
    if (end > begin)
      gemm<T>(false, false, end - begin, N, K, x + begin * K, w + g * K * N, y + begin * N, false);
    begin = end;
  }
}

template <class T>
void grouped_gemm_nt(const T* dy, const T* w, T* dx, const std::int32_t* end_offsets, std::int64_t groups,
                     std::int64_t K, std::int64_t N) {
  std::int64_t begin = 0;
  for (std::int64_t g = 0; g < groups; ++g) {
    const std::int64_t end = end_offsets[g];
    if (end > begin)
      gemm<T>(false, true, end - begin, K, N, dy + begin * N, w + g * K * N, dx + begin * K, false);
    begin = end;
  }
}

template <class T>
void grouped_gemm_tn_accumulate(const T* x, const T* dy, T* dw, const std::int32_t* end_offsets,
                                std::int64_t groups, std::int64_t K, std::int64_t N) {
  std::int64_t begin = 0;
  for (std::int64_t g = 0; g < groups; ++g) {
    const std::int64_t end = end_offsets[g];
    if (end > begin)
      gemm<T>(true, false, K, N, end - begin, x + begin * K, dy + begin * N, dw + g * K * N, true);
    begin = end;
  }
}

#define G4_INSTANTIATE(T)                                                                                    \
  template void gemm<T>(bool, bool, std::int64_t, std::int64_t, std::int64_t, const T*, const T*, T*, bool); \
  template void grouped_gemm_nn<T>(const T*, const T*, T*, const std::int32_t*, std::int64_t, std::int64_t,  \
                                   std::int64_t);                                                            \
  template void grouped_gemm_nt<T>(const T*, const T*, T*, const std::int32_t*, std::int64_t, std::int64_t,  \
                                   std::int64_t);                                                            \
  template void grouped_gemm_tn_accumulate<T>(const T*, const T*, T*, const std::int32_t*, std::int64_t,     \
                                              std::int64_t, std::int64_t);
G4_INSTANTIATE(float)
G4_INSTANTIATE(double)
#undef G4_INSTANTIATE

}  // namespace g4
