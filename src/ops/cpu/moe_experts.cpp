#include "ops/cpu/moe_experts.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "ops/cpu/grouped_gemm.h"
#include "ops/cpu/weighted_geglu.h"

namespace g4 {

ExpertsBackend experts_backend_from_name(std::string_view name) {
  if (name == "loop") return ExpertsBackend::loop;
  if (name == "grouped") return ExpertsBackend::grouped;
  fail("unknown experts backend \"", std::string(name), "\" (expected loop or grouped)");
}

namespace {

void check_config(const ExpertsConfig& cfg) {
  check(cfg.hidden > 0 && cfg.inter > 0, "experts: hidden and intermediate sizes must be positive");
  check(cfg.n_local >= 0 && cfg.start >= 0 && cfg.start + cfg.n_local <= cfg.num_experts,
        "experts: local range [", cfg.start, ", ", cfg.start + cfg.n_local, ") is not inside [0, ",
        cfg.num_experts, ")");
}

template <class T>
void gather_rows(const T* src, const std::int64_t* row_ids, std::int64_t rows, std::int64_t width, T* dst) {
#pragma omp parallel for schedule(static) if (rows * width > 65536)
  for (std::int64_t r = 0; r < rows; ++r)
    std::memcpy(dst + r * width, src + row_ids[r] * width, sizeof(T) * static_cast<std::size_t>(width));
}

// dst[row_ids[r]] += src[r]; serial so the summation order is fixed (expert-major).
template <class T>
void scatter_add_rows(const T* src, const std::int64_t* row_ids, std::int64_t rows, std::int64_t width,
                      T* dst) {
  for (std::int64_t r = 0; r < rows; ++r) {
    T* d = dst + row_ids[r] * width;
    const T* s = src + r * width;
    for (std::int64_t j = 0; j < width; ++j) d[j] += s[j];
  }
}

// dst[t] += Σ_k src[row of slot (t, k)], k ascending: each token's sum has a fixed order, so tokens can be
// summed in parallel and the result does not depend on the thread count.
template <class T>
void combine_rows_by_token(const T* src, const TokenPermutation& perm, std::int64_t width, T* dst) {
  std::vector<std::int64_t> row_of_slot(static_cast<std::size_t>(perm.tokens * perm.top_k), -1);
  for (std::int64_t r = 0; r < perm.rows(); ++r) row_of_slot[perm.sorted_slot_ids[r]] = r;
#pragma omp parallel for schedule(static) if (perm.tokens * width > 65536)
  for (std::int64_t t = 0; t < perm.tokens; ++t) {
    T* d = dst + t * width;
    for (std::int64_t k = 0; k < perm.top_k; ++k) {
      const std::int64_t r = row_of_slot[t * perm.top_k + k];
      if (r < 0) continue;
      const T* s = src + r * width;
      for (std::int64_t j = 0; j < width; ++j) d[j] += s[j];
    }
  }
}

// The loop backend discovers each expert's slots by scanning the routing table itself, then records them in
// the same expert-major order as moe_permute.h.
void loop_assignments(const ExpertsConfig& cfg, const std::uint8_t* token_mask, const std::int64_t* indices,
                      std::int64_t tokens, std::int64_t top_k, TokenPermutation* perm) {
  perm->tokens = tokens;
  perm->top_k = top_k;
  perm->n_local = cfg.n_local;
  perm->start = cfg.start;
  perm->sorted_token_ids.clear();
  perm->sorted_slot_ids.clear();
  perm->tokens_per_expert.assign(static_cast<std::size_t>(cfg.n_local), 0);
  perm->end_offsets.assign(static_cast<std::size_t>(cfg.n_local), 0);
  for (std::int64_t i = 0; i < cfg.n_local; ++i) {
    const std::int64_t expert = cfg.start + i;
    for (std::int64_t t = 0; t < tokens; ++t) {
      if (token_mask && !token_mask[t]) continue;
      for (std::int64_t k = 0; k < top_k; ++k) {
        if (indices[t * top_k + k] != expert) continue;
        perm->sorted_token_ids.push_back(t);
        perm->sorted_slot_ids.push_back(t * top_k + k);
        ++perm->tokens_per_expert[i];
      }
    }
    check(perm->sorted_token_ids.size() <= 0x7fffffffu, "experts: routed rows do not fit int32 offsets");
    perm->end_offsets[i] = static_cast<std::int32_t>(perm->sorted_token_ids.size());
  }
}

template <class T>
void forward_loop(const ExpertsConfig& cfg, const T* x, const T* gate_and_up, const T* down, T* y,
                  ExpertsContext<T>* ctx) {
  const std::int64_t H = cfg.hidden, I = cfg.inter, W = 2 * I;
  const TokenPermutation& perm = ctx->perm;
  std::int64_t begin = 0;
  for (std::int64_t i = 0; i < cfg.n_local; ++i) {
    const std::int64_t end = perm.end_offsets[i], n = end - begin;
    if (n > 0) {
      std::vector<T> xi(static_cast<std::size_t>(n * H)), oi(static_cast<std::size_t>(n * H));
      gather_rows(x, perm.sorted_token_ids.data() + begin, n, H, xi.data());
      T* hi = ctx->h.data() + begin * W;
      T* ai = ctx->a.data() + begin * I;
      gemm<T>(false, false, n, W, H, xi.data(), gate_and_up + i * H * W, hi, false);
      weighted_geglu_forward<T>(hi, ctx->sorted_weights.data() + begin, n, I, ai);
      gemm<T>(false, false, n, H, I, ai, down + i * I * H, oi.data(), false);
      scatter_add_rows(oi.data(), perm.sorted_token_ids.data() + begin, n, H, y);
    }
    begin = end;
  }
}

template <class T>
void forward_grouped(const ExpertsConfig& cfg, const T* x, const T* gate_and_up, const T* down, T* y,
                     ExpertsContext<T>* ctx) {
  const std::int64_t H = cfg.hidden, I = cfg.inter, W = 2 * I;
  const TokenPermutation& perm = ctx->perm;
  const std::int64_t M = perm.rows();
  ctx->x_sorted.resize(static_cast<std::size_t>(M * H));
  ctx->o.resize(static_cast<std::size_t>(M * H));
  gather_rows(x, perm.sorted_token_ids.data(), M, H, ctx->x_sorted.data());
  grouped_gemm_nn<T>(ctx->x_sorted.data(), gate_and_up, ctx->h.data(), perm.end_offsets.data(), cfg.n_local,
                     H, W);
  weighted_geglu_forward<T>(ctx->h.data(), ctx->sorted_weights.data(), M, I, ctx->a.data());
  grouped_gemm_nn<T>(ctx->a.data(), down, ctx->o.data(), perm.end_offsets.data(), cfg.n_local, I, H);
  combine_rows_by_token(ctx->o.data(), perm, H, y);
}

}  // namespace

template <class T>
void moe_experts_forward(const ExpertsConfig& cfg, const T* x, const std::uint8_t* token_mask,
                         const T* weights, const std::int64_t* indices, std::int64_t tokens,
                         std::int64_t top_k, const T* gate_and_up, const T* down, T* y,
                         ExpertsContext<T>* ctx) {
  check_config(cfg);
  const std::int64_t H = cfg.hidden, I = cfg.inter, W = 2 * I;
  if (cfg.backend == ExpertsBackend::grouped)
    moe_permute(indices, token_mask, tokens, top_k, cfg.n_local, cfg.start, &ctx->perm);
  else
    loop_assignments(cfg, token_mask, indices, tokens, top_k, &ctx->perm);
  const std::int64_t M = ctx->perm.rows();
  ctx->sorted_weights.resize(static_cast<std::size_t>(M));
  gather_sorted_weights(ctx->perm, weights, ctx->sorted_weights.data());
  ctx->h.resize(static_cast<std::size_t>(M * W));
  ctx->a.resize(static_cast<std::size_t>(M * I));
  std::fill(y, y + tokens * H, T(0));
  if (cfg.backend == ExpertsBackend::grouped) {
    forward_grouped(cfg, x, gate_and_up, down, y, ctx);
  } else {
    ctx->x_sorted.clear();
    forward_loop(cfg, x, gate_and_up, down, y, ctx);
  }
}

template <class T>
void moe_experts_backward(const ExpertsConfig& cfg, const T* x, const T* gate_and_up, const T* down,
                          ExpertsContext<T>& ctx, const T* dy, T* dx, T* dweights, T* dgate_and_up,
                          T* ddown) {
  check_config(cfg);
  const std::int64_t H = cfg.hidden, I = cfg.inter, W = 2 * I;
  const TokenPermutation& perm = ctx.perm;
  const std::int64_t M = perm.rows();
  std::fill(dx, dx + perm.tokens * H, T(0));
  std::fill(dweights, dweights + perm.tokens * perm.top_k, T(0));
  if (M == 0) return;
  if (cfg.backend == ExpertsBackend::grouped) {
    if (static_cast<std::int64_t>(ctx.x_sorted.size()) != M * H) {
      ctx.x_sorted.resize(static_cast<std::size_t>(M * H));
      gather_rows(x, perm.sorted_token_ids.data(), M, H, ctx.x_sorted.data());
    }
    ctx.d_o.resize(static_cast<std::size_t>(M * H));
    ctx.d_a.resize(static_cast<std::size_t>(M * I));
    ctx.d_h.resize(static_cast<std::size_t>(M * W));
    ctx.d_x.resize(static_cast<std::size_t>(M * H));
    std::vector<T>& dp = ctx.d_p;
    dp.resize(static_cast<std::size_t>(M));
    const std::int32_t* offs = perm.end_offsets.data();
    gather_rows(dy, perm.sorted_token_ids.data(), M, H, ctx.d_o.data());
    grouped_gemm_tn_accumulate<T>(ctx.a.data(), ctx.d_o.data(), ddown, offs, cfg.n_local, I, H);
    grouped_gemm_nt<T>(ctx.d_o.data(), down, ctx.d_a.data(), offs, cfg.n_local, I, H);
    weighted_geglu_backward<T>(ctx.h.data(), ctx.sorted_weights.data(), ctx.d_a.data(), M, I, ctx.d_h.data(),
                               dp.data());
    grouped_gemm_tn_accumulate<T>(ctx.x_sorted.data(), ctx.d_h.data(), dgate_and_up, offs, cfg.n_local, H, W);
    grouped_gemm_nt<T>(ctx.d_h.data(), gate_and_up, ctx.d_x.data(), offs, cfg.n_local, H, W);
    combine_rows_by_token(ctx.d_x.data(), perm, H, dx);
    for (std::int64_t r = 0; r < M; ++r) dweights[perm.sorted_slot_ids[r]] = dp[r];
    return;
  }
  std::int64_t begin = 0;
  for (std::int64_t i = 0; i < cfg.n_local; ++i) {
    const std::int64_t end = perm.end_offsets[i], n = end - begin;
    if (n > 0) {
      const std::int64_t* toks = perm.sorted_token_ids.data() + begin;
      std::vector<T> xi(n * H), doi(n * H), dai(n * I), dhi(n * W), dxi(n * H), dpi(n);
      gather_rows(x, toks, n, H, xi.data());
      gather_rows(dy, toks, n, H, doi.data());
      gemm<T>(true, false, I, H, n, ctx.a.data() + begin * I, doi.data(), ddown + i * I * H, true);
      gemm<T>(false, true, n, I, H, doi.data(), down + i * I * H, dai.data(), false);
      weighted_geglu_backward<T>(ctx.h.data() + begin * W, ctx.sorted_weights.data() + begin, dai.data(), n,
                                 I, dhi.data(), dpi.data());
      gemm<T>(true, false, H, W, n, xi.data(), dhi.data(), dgate_and_up + i * H * W, true);
      gemm<T>(false, true, n, H, W, dhi.data(), gate_and_up + i * H * W, dxi.data(), false);
      scatter_add_rows(dxi.data(), toks, n, H, dx);
      for (std::int64_t r = 0; r < n; ++r) dweights[perm.sorted_slot_ids[begin + r]] = dpi[r];
    }
    begin = end;
  }
}

#define G4_INSTANTIATE(T)                                                                                   \
  template void moe_experts_forward<T>(const ExpertsConfig&, const T*, const std::uint8_t*, const T*,       \
                                       const std::int64_t*, std::int64_t, std::int64_t, const T*, const T*, \
                                       T*, ExpertsContext<T>*);                                             \
  template void moe_experts_backward<T>(const ExpertsConfig&, const T*, const T*, const T*,                 \
                                        ExpertsContext<T>&, const T*, T*, T*, T*, T*);
G4_INSTANTIATE(float)
G4_INSTANTIATE(double)
#undef G4_INSTANTIATE

}  // namespace g4
