// moe_experts.cu: the launch sequence of the grouped experts, forward and backward (see moe_experts.h).
#include "ops/cuda/moe_experts.h"

#include "core/cuda/cuda_check.h"
#include "ops/cuda/grouped_gemm.h"
#include "ops/cuda/weighted_geglu.h"

namespace g4::cuda {
namespace {

std::size_t planned_bytes(const ExpertShape& s) {
  std::size_t rows = static_cast<std::size_t>(s.tokens) * s.top_k;
  std::size_t e1 = static_cast<std::size_t>(s.experts) + 1;
  auto a = DeviceArena::aligned;
  std::size_t bytes = a(moe_permute_scratch_ints(s.tokens, s.top_k, s.experts) * 4) + 2 * a(e1 * 4) +
                      3 * a(rows * 4) + a(rows * 4);                   // permutation
  bytes += a(rows * s.hidden * 2);                                     // rows (o, dO, dX)
  bytes += a(rows * 2 * s.inter * 2) * 2 + a(rows * s.inter * 2) * 2;  // h, dh, a, da
  bytes += a(rows * 4);                                                // dp
  return bytes;
}

}  // namespace

MoeExpertsCuda::MoeExpertsCuda(CudaContext& ctx, const ExpertShape& shape)
    : ctx_(ctx), shape_(shape), arena_(planned_bytes(shape)) {
  check(shape.hidden % 8 == 0 && shape.inter % 8 == 0, "MoeExpertsCuda: hidden ", shape.hidden, " and inter ",
        shape.inter, " must be multiples of 8");
  std::size_t rows = static_cast<std::size_t>(shape.tokens) * shape.top_k;
  scratch_ = arena_.alloc<int>(moe_permute_scratch_ints(shape.tokens, shape.top_k, shape.experts));
  perm_.offsets = arena_.alloc<int>(shape.experts + 1);
  perm_.tile_offsets = arena_.alloc<int>(shape.experts + 1);
  perm_.row_token = arena_.alloc<int>(rows);
  perm_.row_weight = arena_.alloc<float>(rows);
  perm_.slot_row = arena_.alloc<int>(rows);
  dp_ = arena_.alloc<float>(rows);
  rows_ = arena_.alloc<__nv_bfloat16>(rows * shape.hidden);
  h_ = arena_.alloc<__nv_bfloat16>(rows * 2 * shape.inter);
  dh_ = arena_.alloc<__nv_bfloat16>(rows * 2 * shape.inter);
  a_ = arena_.alloc<__nv_bfloat16>(rows * shape.inter);
  da_ = arena_.alloc<__nv_bfloat16>(rows * shape.inter);
}

void MoeExpertsCuda::forward(std::int64_t tokens, const __nv_bfloat16* x, const float* weights,
                             const int* indices, const std::uint8_t* mask, const ExpertWeights& w,
                             __nv_bfloat16* y) {
  check(tokens >= 0 && tokens <= shape_.tokens, "MoeExpertsCuda::forward: ", tokens, " tokens, planned for ",
        shape_.tokens);
  tokens_ = tokens;
  fused_gather_ = gathers_fused(tokens);
  const int H = shape_.hidden, I = shape_.inter, E = shape_.experts, K = shape_.top_k;
  const std::int64_t max_rows = tokens * K;
  cudaStream_t st = ctx_.stream();
  moe_permute(indices, weights, mask, tokens, K, E, scratch_, perm_, st);
  const int* m_end = perm_.offsets + E;
  // h = X @ gate_up[e]   ([rows, H] x [H, 2I]); X is x gathered by row_token (inside the GEMM's loads, or
  // materialised first when fused_gather_ is off).
  const __nv_bfloat16* xa = x;
  const int* x_rows = perm_.row_token;
  if (!fused_gather_) {
    std::size_t bytes = static_cast<std::size_t>(shape_.tokens) * K * H * 2;
    if (x_perm_buffer_.bytes() < bytes) x_perm_buffer_ = DeviceBuffer(bytes);
    x_perm_ = x_perm_buffer_.as<__nv_bfloat16>();
    moe_gather_rows(x, perm_.row_token, m_end, max_rows, H, x_perm_, st);
    xa = x_perm_;
    x_rows = nullptr;
  }
  x_ = xa;
  x_rows_ = x_rows;
  grouped_gemm_rows({xa, H, x_rows, w.gate_up, static_cast<std::int64_t>(H) * 2 * I, false, h_, 2 * I, H,
                     2 * I, E, max_rows, perm_.offsets, perm_.tile_offsets},
                    st);
  weighted_geglu_forward(h_, perm_.row_weight, m_end, max_rows, I, a_, st);
  // o = a @ down[e]   ([rows, I] x [I, H])
  grouped_gemm_rows({a_, I, nullptr, w.down, static_cast<std::int64_t>(I) * H, false, rows_, H, I, H, E,
                     max_rows, perm_.offsets, perm_.tile_offsets},
                    st);
  moe_combine_rows(rows_, perm_.slot_row, tokens, K, H, y, st);
}

void MoeExpertsCuda::backward(const __nv_bfloat16* dy, const ExpertWeights& w, const ExpertGrads& grads,
                              __nv_bfloat16* dx, float* d_weights) {
  const int H = shape_.hidden, I = shape_.inter, E = shape_.experts, K = shape_.top_k;
  const std::int64_t max_rows = tokens_ * K;
  cudaStream_t st = ctx_.stream();
  const int* m_end = perm_.offsets + E;
  // dO = dy gathered to rows (the routing weight sits inside the activation, so no scaling here)
  const __nv_bfloat16* dO = dy;
  const int* dO_rows = perm_.row_token;
  if (!fused_gather_) {
    moe_gather_rows(dy, perm_.row_token, m_end, max_rows, H, rows_, st);
    dO = rows_;
    dO_rows = nullptr;
  }
  // da = dO @ down[e]^T   (down[e] is [I, H] = [N, K])
  grouped_gemm_rows({dO, H, dO_rows, w.down, static_cast<std::int64_t>(I) * H, true, da_, I, H, I, E,
                     max_rows, perm_.offsets, perm_.tile_offsets},
                    st);
  // d_down[e] (+)= a_e^T dO_e   [I, H]
  grouped_gemm_weight_grad({a_, I, nullptr, dO, H, dO_rows, grads.d_down, grads.fp32_accumulate,
                            grads.fp32_accumulate, I, H, E, perm_.offsets},
                           st);
  weighted_geglu_backward(h_, perm_.row_weight, da_, m_end, max_rows, I, dh_, dp_, st);
  // dX = dh @ gate_up[e]^T   (gate_up[e] is [H, 2I] = [N, K]); written over dO, which is no longer needed
  grouped_gemm_rows({dh_, 2 * I, nullptr, w.gate_up, static_cast<std::int64_t>(H) * 2 * I, true, rows_, H,
                     2 * I, H, E, max_rows, perm_.offsets, perm_.tile_offsets},
                    st);
  // d_gate_up[e] (+)= X_e^T dh_e   [H, 2I]  (X as in the forward: x gathered, or its materialised copy)
  grouped_gemm_weight_grad({x_, H, x_rows_, dh_, 2 * I, nullptr, grads.d_gate_up, grads.fp32_accumulate,
                            grads.fp32_accumulate, H, 2 * I, E, perm_.offsets},
                           st);
  moe_combine_rows(rows_, perm_.slot_row, tokens_, K, H, dx, st);
  moe_scatter_slot_values(dp_, perm_.slot_row, tokens_ * K, d_weights, st);
}

}  // namespace g4::cuda
