#include "ops/cpu/grouped_gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

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

namespace {

// Work items of a grouped GEMM: (group, first, count) over the dimension that is split. Splitting lets a few
// large groups keep every thread busy; inside an OpenMP parallel region OpenBLAS (OpenMP build) runs each
// call on one thread, so the items run side by side without oversubscription.
struct Tile {
  std::int64_t group, first, count;
};

std::vector<Tile> make_tiles(const std::int32_t* end_offsets, std::int64_t groups, std::int64_t split_extent,
                             bool split_rows, std::int64_t chunk) {
  std::vector<Tile> tiles;
  std::int64_t begin = 0;
  for (std::int64_t g = 0; g < groups; ++g) {
    const std::int64_t end = end_offsets[g];
    if (end > begin) {
      const std::int64_t extent = split_rows ? end - begin : split_extent;
      for (std::int64_t f = 0; f < extent; f += chunk)
        tiles.push_back({g, (split_rows ? begin : 0) + f, std::min(chunk, extent - f)});
    }
    begin = end;
  }
  return tiles;
}

// Row chunk such that the tiles number a few per thread.
std::int64_t row_chunk(std::int64_t rows) {
  const std::int64_t threads = std::max(1, omp_get_max_threads());
  return std::max<std::int64_t>(32, (rows + 4 * threads - 1) / (4 * threads));
}

}  // namespace

// out_g = in_g · w_g (w_g [K, N]) or, with `transpose_w`, out_g = in_g · w_gᵀ, over row tiles in parallel.
template <class T>
void grouped_rows_times_weight(bool transpose_w, const T* in, const T* w, T* out,
                               const std::int32_t* end_offsets, std::int64_t groups, std::int64_t K,
                               std::int64_t N) {
  const std::int64_t in_width = transpose_w ? N : K, out_width = transpose_w ? K : N;
  const std::int64_t rows = groups ? end_offsets[groups - 1] : 0;
  const auto tiles = make_tiles(end_offsets, groups, 0, true, row_chunk(rows));
#pragma omp parallel for schedule(dynamic)
  for (std::size_t i = 0; i < tiles.size(); ++i) {
    const Tile& t = tiles[i];
    gemm<T>(false, transpose_w, t.count, out_width, in_width, in + t.first * in_width, w + t.group * K * N,
            out + t.first * out_width, false);
  }
}

template <class T>
void grouped_gemm_nn(const T* x, const T* w, T* y, const std::int32_t* end_offsets, std::int64_t groups,
                     std::int64_t K, std::int64_t N) {
  grouped_rows_times_weight(false, x, w, y, end_offsets, groups, K, N);
}

template <class T>
void grouped_gemm_nt(const T* dy, const T* w, T* dx, const std::int32_t* end_offsets, std::int64_t groups,
                     std::int64_t K, std::int64_t N) {
  grouped_rows_times_weight(true, dy, w, dx, end_offsets, groups, K, N);
}

template <class T>
void grouped_gemm_tn_accumulate(const T* x, const T* dy, T* dw, const std::int32_t* end_offsets,
                                std::int64_t groups, std::int64_t K, std::int64_t N) {
  // dw[g] [K, N] += x_gᵀ · dy_g: split the K rows of dw (each tile owns its rows: no write conflicts).
  std::vector<std::int64_t> begins(static_cast<std::size_t>(groups));
  for (std::int64_t g = 0, b = 0; g < groups; ++g) {
    begins[g] = b;
    b = end_offsets[g];
  }
  const auto tiles = make_tiles(end_offsets, groups, K, false, std::max<std::int64_t>(64, K / 8));
#pragma omp parallel for schedule(dynamic)
  for (std::size_t i = 0; i < tiles.size(); ++i) {
    const Tile& t = tiles[i];
    const std::int64_t begin = begins[t.group], n = end_offsets[t.group] - begin;
    // rows t.first .. t.first+count of x_gᵀ are columns of x_g: a strided operand with leading dimension K.
    blas_gemm(CblasTrans, CblasNoTrans, static_cast<int>(t.count), static_cast<int>(N), static_cast<int>(n),
              x + begin * K + t.first, static_cast<int>(K), dy + begin * N, static_cast<int>(N), T(1),
              dw + t.group * K * N + t.first * N, static_cast<int>(N));
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
