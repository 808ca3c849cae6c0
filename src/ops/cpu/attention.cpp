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

}  // namespace

// Per query head: scores = q_h · k_gᵀ (one GEMM over strided rows), a masked softmax per row (max-subtracted,
// accumulated in double), then out_h = P · v_g (one GEMM). GEMMs are fp32 with fp32 accumulation.
void attention_forward(const float* q, const float* k, const float* v, const std::uint8_t* mask, float* out,
                       std::int64_t S, int num_q_heads, int num_kv_heads, int head_dim, float scaling) {
  const int group = num_q_heads / num_kv_heads;
  const int D = head_dim, n = static_cast<int>(S);
  const int ldq = num_q_heads * D, ldk = num_kv_heads * D;
  std::vector<float> probs(static_cast<std::size_t>(S * S));
  for (int h = 0; h < num_q_heads; ++h) {
    const int g = h / group;
    attention_probs(q + h * D, k + g * D, mask, probs.data(), n, ldq, ldk, D, scaling);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D, n, 1.0f, probs.data(), n, v + g * D, ldk,
                0.0f, out + h * D, ldq);
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
