#include "ops/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <cblas.h>

namespace g4 {

namespace {

// Queries are processed in blocks of this many rows; each block only touches the keys some of its queries
// see.
constexpr std::int64_t kQueryBlock = 64;

// [lo, hi): the keys visible to at least one query of a block (lo == hi: none). Keys outside it are invisible
// to every query of the block, so restricting the block's scores to it changes only the length of the sums:
// a sliding window (or a packed segment) costs the window, not the whole sequence.
struct KeyRange {
  std::int64_t lo = 0, hi = 0;
};

// Per block of kQueryBlock queries, the keys [lo, hi) that at least one of them sees.
std::vector<KeyRange> visible_key_ranges(const RowBounds& bounds, std::int64_t Sq, std::int64_t Sk) {
  const std::int64_t blocks = (Sq + kQueryBlock - 1) / kQueryBlock;
  std::vector<KeyRange> ranges(static_cast<std::size_t>(blocks));
  for (std::int64_t b = 0; b < blocks; ++b) {
    std::int64_t lo = Sk, hi = 0;
    for (std::int64_t i = b * kQueryBlock; i < std::min(Sq, (b + 1) * kQueryBlock); ++i) {
      if (bounds.first[i] == Sk) continue;
      lo = std::min(lo, bounds.first[i]);
      hi = std::max(hi, bounds.last[i] + 1);
    }
    ranges[b] = lo < hi ? KeyRange{lo, hi} : KeyRange{0, 0};
  }
  return ranges;
}

// The transpose: for each block of kQueryBlock keys, the queries [lo, hi) that see at least one of them.
std::vector<KeyRange> seeing_query_ranges(const RowBounds& bounds, std::int64_t Sq, std::int64_t Sk) {
  const std::int64_t blocks = (Sk + kQueryBlock - 1) / kQueryBlock;
  std::vector<KeyRange> ranges(static_cast<std::size_t>(blocks));
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::int64_t j0 = b * kQueryBlock, j1 = std::min(Sk, j0 + kQueryBlock);
    std::int64_t lo = Sq, hi = 0;
    for (std::int64_t i = 0; i < Sq; ++i)
      if (bounds.first[i] < j1 && bounds.last[i] >= j0) {
        lo = std::min(lo, i);
        hi = i + 1;
      }
    ranges[b] = lo < hi ? KeyRange{lo, hi} : KeyRange{0, 0};
  }
  return ranges;
}

// probs [rows, w] = masked softmax over keys [lo, lo + w) of scaling · q_rows · kᵀ, for the query rows i0 ..
// i0 + rows - 1 starting at `q` (row stride ldq). Each row is max-subtracted and summed in double; exp of a
// difference below -80 (< 2e-35) is flushed to 0: it cannot change the row at fp32 precision, and denormal
// probabilities would make the P·V product many times slower on x86. With `row_max` and `row_inv` (may be
// null) it also stores each row's max score and 1 / denominator (0 for a row with no visible key), from which
// attention_backward recomputes the probabilities tile by tile.
void block_probs(const float* q, const float* k, const RowBounds& bounds, std::int64_t i0, std::int64_t lo,
                 float* probs, std::int64_t rows, std::int64_t w, int ldq, int ldk, int D, float scaling,
                 float* row_max = nullptr, float* row_inv = nullptr) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(w), D,
              scaling, q, ldq, k, ldk, 0.0f, probs, static_cast<int>(w));
  for (std::int64_t i = 0; i < rows; ++i) {
    float* row = &probs[i * w];
    float max_score = -INFINITY;
    for (std::int64_t j = 0; j < w; ++j)
      if (bounds.visible(i0 + i, lo + j)) max_score = std::max(max_score, row[j]);
    if (max_score == -INFINITY) {  // no visible key: a zero output row
      std::fill(row, row + w, 0.0f);
      if (row_max) row_max[i] = 0.0f, row_inv[i] = 0.0f;
      continue;
    }
    double denom = 0;
    for (std::int64_t j = 0; j < w; ++j) {
      const float diff = row[j] - max_score;
      const float p = (bounds.visible(i0 + i, lo + j) && diff > -80.0f) ? std::exp(diff) : 0.0f;
      row[j] = p;
      denom += p;
    }
    const float inv = static_cast<float>(1.0 / denom);
    for (std::int64_t j = 0; j < w; ++j) row[j] *= inv;
    if (row_max) row_max[i] = max_score, row_inv[i] = inv;
  }
}

}  // namespace

// Per (query head, block of kQueryBlock queries), in parallel: scores over the block's visible key range (one
// GEMM), a masked softmax per row (max-subtracted, accumulated in double), then out = P · v over that range
// (one GEMM). Each block's GEMMs run on one thread (OpenBLAS runs single-threaded inside a parallel region),
// so the result does not depend on the thread count. GEMMs are fp32 with fp32 accumulation.
void attention_forward(const float* q, const float* k, const float* v, const AttentionVisibility& visibility,
                       float* out, int num_q_heads, int num_kv_heads, int head_dim, float scaling) {
  const int group = num_q_heads / num_kv_heads;
  const int D = head_dim;
  const int ldq = num_q_heads * D, ldk = num_kv_heads * D;
  const std::int64_t Sq = visibility.queries, Sk = visibility.keys;
  const RowBounds bounds = visible_row_bounds(visibility);
  const std::vector<KeyRange> ranges = visible_key_ranges(bounds, Sq, Sk);
  const std::int64_t blocks = static_cast<std::int64_t>(ranges.size());
#pragma omp parallel
  {
    std::vector<float> probs(static_cast<std::size_t>(kQueryBlock * Sk));
#pragma omp for collapse(2) schedule(dynamic)
    for (int h = 0; h < num_q_heads; ++h)
      for (std::int64_t b = 0; b < blocks; ++b) {
        const int g = h / group;
        const std::int64_t i0 = b * kQueryBlock, rows = std::min(kQueryBlock, Sq - i0);
        const KeyRange r = ranges[b];
        float* o = out + i0 * ldq + h * D;
        if (r.hi <= r.lo) {
          for (std::int64_t i = 0; i < rows; ++i) std::fill(o + i * ldq, o + i * ldq + D, 0.0f);
          continue;
        }
        const std::int64_t w = r.hi - r.lo;
        block_probs(q + i0 * ldq + h * D, k + r.lo * ldk + g * D, bounds, i0, r.lo, probs.data(), rows, w,
                    ldq, ldk, D, scaling);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), D, static_cast<int>(w),
                    1.0f, probs.data(), static_cast<int>(w), v + r.lo * ldk + g * D, ldk, 0.0f, o, ldq);
      }
  }
}

// Two passes, both over the visible ranges only and parallel over independent outputs, so neither the result
// nor its rounding depends on the thread count:
//  A. per (query head, query block): P (storing each row's max and 1/denominator), dP = dO·Vᵀ, each row's
//     Σ_j P·dP, dS = P ⊙ (dP − Σ P·dP) · scaling, and dQ = dS·K (rows of this block only);
//  B. per (KV head, key block): for every query head of the group and every query that sees a key of the
//  block,
//     P and dS again from the stored row statistics, then dV += Pᵀ·dO and dK += dSᵀ·Q (rows of this key block
//     only). This is FlashAttention's backward order, which needs no atomics and no per-thread copies.
void attention_backward(const float* q, const float* k, const float* v, const AttentionVisibility& visibility,
                        const float* dout, float* dq, float* dk, float* dv, int num_q_heads, int num_kv_heads,
                        int head_dim, float scaling) {
  const int group = num_q_heads / num_kv_heads;
  const int D = head_dim;
  const int ldq = num_q_heads * D, ldk = num_kv_heads * D;
  const std::int64_t Sq = visibility.queries, Sk = visibility.keys;
  const RowBounds bounds = visible_row_bounds(visibility);
  const std::vector<KeyRange> key_ranges = visible_key_ranges(bounds, Sq, Sk);
  const std::vector<KeyRange> query_ranges = seeing_query_ranges(bounds, Sq, Sk);
  const std::int64_t query_blocks = static_cast<std::int64_t>(key_ranges.size());
  const std::int64_t key_blocks = static_cast<std::int64_t>(query_ranges.size());
  const std::size_t stats = static_cast<std::size_t>(num_q_heads) * static_cast<std::size_t>(Sq);
  std::vector<float> row_max(stats), row_inv(stats);
  std::vector<double> row_dot(stats);

#pragma omp parallel
  {
    std::vector<float> probs(static_cast<std::size_t>(kQueryBlock * Sk)), dprobs(probs.size());
#pragma omp for collapse(2) schedule(dynamic)
    for (int h = 0; h < num_q_heads; ++h)
      for (std::int64_t b = 0; b < query_blocks; ++b) {
        const int g = h / group;
        const std::int64_t i0 = b * kQueryBlock, rows = std::min(kQueryBlock, Sq - i0);
        const KeyRange r = key_ranges[b];
        float* dq_rows = dq + i0 * ldq + h * D;
        float* mx = &row_max[h * Sq + i0];
        float* inv = &row_inv[h * Sq + i0];
        double* dot = &row_dot[h * Sq + i0];
        if (r.hi <= r.lo) {
          for (std::int64_t i = 0; i < rows; ++i) {
            std::fill(dq_rows + i * ldq, dq_rows + i * ldq + D, 0.0f);
            mx[i] = inv[i] = 0.0f;
            dot[i] = 0.0;
          }
          continue;
        }
        const std::int64_t w = r.hi - r.lo;
        const int iw = static_cast<int>(w), irows = static_cast<int>(rows);
        block_probs(q + i0 * ldq + h * D, k + r.lo * ldk + g * D, bounds, i0, r.lo, probs.data(), rows, w,
                    ldq, ldk, D, scaling, mx, inv);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, irows, iw, D, 1.0f, dout + i0 * ldq + h * D, ldq,
                    v + r.lo * ldk + g * D, ldk, 0.0f, dprobs.data(), iw);
        for (std::int64_t i = 0; i < rows; ++i) {
          const float* p = &probs[i * w];
          float* d = &dprobs[i * w];
          double sum = 0;
          for (std::int64_t j = 0; j < w; ++j) sum += static_cast<double>(p[j]) * d[j];
          dot[i] = sum;
          for (std::int64_t j = 0; j < w; ++j) d[j] = static_cast<float>(p[j] * (d[j] - sum) * scaling);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, irows, D, iw, 1.0f, dprobs.data(), iw,
                    k + r.lo * ldk + g * D, ldk, 0.0f, dq_rows, ldq);
      }

      // Pass B. Tiles of kQueryBlock queries × kQueryBlock keys.
#pragma omp for collapse(2) schedule(dynamic)
    for (int g = 0; g < num_kv_heads; ++g)
      for (std::int64_t b = 0; b < key_blocks; ++b) {
        const std::int64_t j0 = b * kQueryBlock, bk = std::min(kQueryBlock, Sk - j0);
        const KeyRange qr = query_ranges[b];
        const int ibk = static_cast<int>(bk);
        for (int h = g * group; h < (g + 1) * group; ++h)
          for (std::int64_t c0 = qr.lo; c0 < qr.hi; c0 += kQueryBlock) {
            const std::int64_t rows = std::min(kQueryBlock, qr.hi - c0);
            const int irows = static_cast<int>(rows);
            const float* q_rows = q + c0 * ldq + h * D;
            const float* do_rows = dout + c0 * ldq + h * D;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, irows, ibk, D, scaling, q_rows, ldq,
                        k + j0 * ldk + g * D, ldk, 0.0f, probs.data(), ibk);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, irows, ibk, D, 1.0f, do_rows, ldq,
                        v + j0 * ldk + g * D, ldk, 0.0f, dprobs.data(), ibk);
            for (std::int64_t i = 0; i < rows; ++i) {
              const std::size_t at = static_cast<std::size_t>(h) * Sq + c0 + i;
              float* p = &probs[i * bk];
              float* d = &dprobs[i * bk];
              for (std::int64_t j = 0; j < bk; ++j) {
                const float diff = p[j] - row_max[at];
                p[j] = (bounds.visible(c0 + i, j0 + j) && row_inv[at] != 0.0f && diff > -80.0f)
                           ? std::exp(diff) * row_inv[at]
                           : 0.0f;
                d[j] = static_cast<float>(p[j] * (d[j] - row_dot[at]) * scaling);
              }
            }
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ibk, D, irows, 1.0f, probs.data(), ibk,
                        do_rows, ldq, 1.0f, dv + j0 * ldk + g * D, ldk);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ibk, D, irows, 1.0f, dprobs.data(), ibk,
                        q_rows, ldq, 1.0f, dk + j0 * ldk + g * D, ldk);
          }
      }
  }
}

}  // namespace g4
