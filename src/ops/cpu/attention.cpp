#include "ops/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <cblas.h>

namespace g4 {

namespace {

// probs [S, S] = masked softmax of scaling · q_h · k_gᵀ (rows with no visible key are all zero).
void attention_probs(const float* q, const float* k, const std::uint8_t* mask, float* probs, int S, int ldq,
                     int ldk, int D, float scaling) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, S, S, D, scaling, q, ldq, k, ldk, 0.0f, probs, S);
#pragma omp parallel for schedule(static) if (S >= 128)
  for (std::int64_t i = 0; i < S; ++i) {
    float* row = &probs[i * S];
    const std::uint8_t* visible = mask + i * S;
    float max_score = -INFINITY;
    for (std::int64_t j = 0; j < S; ++j)
      if (visible[j]) max_score = std::max(max_score, row[j]);
    if (max_score == -INFINITY) {  // no visible key: a zero output row
      std::fill(row, row + S, 0.0f);
      continue;
    }
    // exp of a difference below -80 (< 2e-35) is flushed to 0: it cannot change the row at fp32 precision,
    // and denormal probabilities would make the P·V product many times slower on x86.
    double denom = 0;
    for (std::int64_t j = 0; j < S; ++j) {
      const float diff = row[j] - max_score;
      const float p = (visible[j] && diff > -80.0f) ? std::exp(diff) : 0.0f;
      row[j] = p;
      denom += p;
    }
    const float inv = static_cast<float>(1.0 / denom);
    for (std::int64_t j = 0; j < S; ++j) row[j] *= inv;
  }
}

// Queries are processed in blocks of this many rows; each block only touches the keys some of its queries
// see.
constexpr std::int64_t kQueryBlock = 64;

// [lo, hi): the keys visible to at least one query of a block (lo == hi: none). Keys outside it are invisible
// to every query of the block, so restricting the block's scores to it changes only the length of the sums:
// a sliding window (or a packed segment) costs the window, not the whole sequence.
struct KeyRange {
  std::int64_t lo = 0, hi = 0;
};

std::vector<KeyRange> visible_key_ranges(const std::uint8_t* mask, std::int64_t S) {
  const std::int64_t blocks = (S + kQueryBlock - 1) / kQueryBlock;
  std::vector<KeyRange> ranges(static_cast<std::size_t>(blocks));
#pragma omp parallel for schedule(static) if (S >= 512)
  for (std::int64_t b = 0; b < blocks; ++b) {
    std::int64_t lo = S, hi = 0;
    for (std::int64_t i = b * kQueryBlock; i < std::min(S, (b + 1) * kQueryBlock); ++i) {
      const std::uint8_t* row = mask + i * S;
      std::int64_t first = 0, last = S - 1;
      while (first < S && !row[first]) ++first;
      if (first == S) continue;
      while (!row[last]) --last;
      lo = std::min(lo, first);
      hi = std::max(hi, last + 1);
    }
    ranges[b] = lo < hi ? KeyRange{lo, hi} : KeyRange{0, 0};
  }
  return ranges;
}

// probs [rows, w] = masked softmax over keys [lo, lo + w) of scaling · q_rows · kᵀ, for the query rows
// starting at `q` (row stride ldq) whose mask rows start at `mask` (row stride S). Same arithmetic as
// attention_probs.
void block_probs(const float* q, const float* k, const std::uint8_t* mask, float* probs, std::int64_t rows,
                 std::int64_t w, std::int64_t S, int ldq, int ldk, int D, float scaling) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(w), D,
              scaling, q, ldq, k, ldk, 0.0f, probs, static_cast<int>(w));
  for (std::int64_t i = 0; i < rows; ++i) {
    float* row = &probs[i * w];
    const std::uint8_t* visible = mask + i * S;
    float max_score = -INFINITY;
    for (std::int64_t j = 0; j < w; ++j)
      if (visible[j]) max_score = std::max(max_score, row[j]);
    if (max_score == -INFINITY) {  // no visible key: a zero output row
      std::fill(row, row + w, 0.0f);
      continue;
    }
    double denom = 0;
    for (std::int64_t j = 0; j < w; ++j) {
      const float diff = row[j] - max_score;
      const float p = (visible[j] && diff > -80.0f) ? std::exp(diff) : 0.0f;
      row[j] = p;
      denom += p;
    }
    const float inv = static_cast<float>(1.0 / denom);
    for (std::int64_t j = 0; j < w; ++j) row[j] *= inv;
  }
}

}  // namespace

// Per (query head, block of kQueryBlock queries), in parallel: scores over the block's visible key range (one
// GEMM), a masked softmax per row (max-subtracted, accumulated in double), then out = P · v over that range
// (one GEMM). Each block's GEMMs run on one thread (OpenBLAS runs single-threaded inside a parallel region),
// so the result does not depend on the thread count. GEMMs are fp32 with fp32 accumulation.
void attention_forward(const float* q, const float* k, const float* v, const std::uint8_t* mask, float* out,
                       std::int64_t S, int num_q_heads, int num_kv_heads, int head_dim, float scaling) {
  const int group = num_q_heads / num_kv_heads;
  const int D = head_dim;
  const int ldq = num_q_heads * D, ldk = num_kv_heads * D;
  const std::vector<KeyRange> ranges = visible_key_ranges(mask, S);
  const std::int64_t blocks = static_cast<std::int64_t>(ranges.size());
#pragma omp parallel
  {
    std::vector<float> probs(static_cast<std::size_t>(kQueryBlock * S));
#pragma omp for collapse(2) schedule(dynamic)
    for (int h = 0; h < num_q_heads; ++h)
      for (std::int64_t b = 0; b < blocks; ++b) {
        const int g = h / group;
        const std::int64_t i0 = b * kQueryBlock, rows = std::min(kQueryBlock, S - i0);
        const KeyRange r = ranges[b];
        float* o = out + i0 * ldq + h * D;
        if (r.hi <= r.lo) {
          for (std::int64_t i = 0; i < rows; ++i) std::fill(o + i * ldq, o + i * ldq + D, 0.0f);
          continue;
        }
        const std::int64_t w = r.hi - r.lo;
        block_probs(q + i0 * ldq + h * D, k + r.lo * ldk + g * D, mask + i0 * S + r.lo, probs.data(), rows, w,
                    S, ldq, ldk, D, scaling);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), D, static_cast<int>(w),
                    1.0f, probs.data(), static_cast<int>(w), v + r.lo * ldk + g * D, ldk, 0.0f, o, ldq);
      }
  }
}

void attention_backward(const float* q, const float* k, const float* v, const std::uint8_t* mask,
                        const float* dout, float* dq, float* dk, float* dv, std::int64_t S, int num_q_heads,
                        int num_kv_heads, int head_dim, float scaling) {
  const int group = num_q_heads / num_kv_heads;
  const int D = head_dim, n = static_cast<int>(S);
  const int ldq = num_q_heads * D, ldk = num_kv_heads * D;
  std::vector<float> probs(static_cast<std::size_t>(S * S)), dprobs(probs.size());
  for (int h = 0; h < num_q_heads; ++h) {
    const int g = h / group;
    attention_probs(q + h * D, k + g * D, mask, probs.data(), n, ldq, ldk, D, scaling);
    // dV_g += Pᵀ · dO_h ;  dP = dO_h · V_gᵀ
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, D, n, 1.0f, probs.data(), n, dout + h * D, ldq,
                1.0f, dv + g * D, ldk);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, D, 1.0f, dout + h * D, ldq, v + g * D, ldk,
                0.0f, dprobs.data(), n);
    // dS = P ⊙ (dP - rowsum(dP ⊙ P)) · scaling
#pragma omp parallel for schedule(static) if (S >= 128)
    for (std::int64_t i = 0; i < S; ++i) {
      const float* p = &probs[i * S];
      float* d = &dprobs[i * S];
      double dot = 0;
      for (std::int64_t j = 0; j < S; ++j) dot += static_cast<double>(p[j]) * d[j];
      for (std::int64_t j = 0; j < S; ++j) d[j] = static_cast<float>(p[j] * (d[j] - dot) * scaling);
    }
    // dQ_h = dS · K_g ;  dK_g += dSᵀ · Q_h
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D, n, 1.0f, dprobs.data(), n, k + g * D, ldk,
                0.0f, dq + h * D, ldq);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, D, n, 1.0f, dprobs.data(), n, q + h * D, ldq,
                1.0f, dk + g * D, ldk);
  }
}

}  // namespace g4
