// The CPU backend's kernel table (ops/kernels.h): ops/cpu's functions, every entry filled.
#include <cstring>

#include "core/dtype.h"
#include "ops/cpu/adamw.h"
#include "ops/cpu/attention.h"
#include "ops/cpu/cross_entropy.h"
#include "ops/cpu/elementwise.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/rms_norm.h"
#include "ops/cpu/rope.h"
#include "ops/kernels.h"

namespace g4 {

namespace {

Kernels make_cpu_kernels() {
  using i64 = std::int64_t;
  Kernels k;
  k.add_inplace = add_inplace;
  k.scale_inplace = scale_inplace;
  k.scale_copy = scale_copy;
  k.clamp_inplace = clamp_inplace;
  k.clamp_backward = clamp_backward;
  k.copy = [](const float* x, float* y, i64 n) {
    if (n > 0) std::memcpy(y, x, static_cast<std::size_t>(n) * sizeof(float));
  };
  k.zero = [](float* x, i64 n) {
    if (n > 0) std::memset(x, 0, static_cast<std::size_t>(n) * sizeof(float));
  };
  k.to_f32 = k.copy;
  k.from_f32 = k.copy;
  k.gather_rows = gather_rows;
  k.scatter_add_rows = scatter_add_rows;
  k.linear_forward = linear_forward;
  k.linear_forward_f32 = [](const float* x, const float* w, float* y, i64 M, i64 N, i64 K) {
    linear_forward(x, w, y, M, N, K, false);
  };
  k.matmul_nn = matmul_nn;
  k.matmul_tn = matmul_tn;
  k.rms_norm_forward = rms_norm_forward;
  k.rms_norm_backward = rms_norm_backward;
  k.rope_apply = rope_apply;
  k.rope_backward = rope_backward;
  k.attention_forward = [](const float* q, const float* kk, const float* v, const AttentionVisibility& rows,
                           float* out, int nq, int nkv,
                           int d) { attention_forward(q, kk, v, rows, out, nq, nkv, d); };
  k.attention_backward = [](const float* q, const float* kk, const float* v, const AttentionVisibility& rows,
                            const float* dout, float* dq, float* dk, float* dv, int nq, int nkv,
                            int d) { attention_backward(q, kk, v, rows, dout, dq, dk, dv, nq, nkv, d); };
  k.geglu_forward = geglu_forward;
  k.geglu_backward = geglu_backward;
  k.middle_slice_copy = middle_slice_copy;
  k.middle_slice_add = middle_slice_add;
  k.softcap_forward = softcap_forward;
  k.softcap_backward = softcap_backward;
  k.causal_lm_loss = causal_lm_loss;
  k.causal_lm_loss_backward = causal_lm_loss_backward;
  k.token_loss = token_loss;
  k.token_loss_backward = token_loss_backward;
  k.adamw_update = adamw_update;
  k.sum_of_squares = sum_of_squares;
  return k;
}

}  // namespace

const Kernels& cpu_kernels() {
  static const Kernels kernels = make_cpu_kernels();
  return kernels;
}

const Bf16Kernels& cpu_bf16_kernels() {
  static const Bf16Kernels kernels = [] {
    Bf16Kernels k;
    k.to_f32 = [](const Bf16Bits* x, float* y, std::int64_t n) {
      for (std::int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(x[i]);
    };
    k.from_f32 = [](const float* x, Bf16Bits* y, std::int64_t n) {
      for (std::int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i]);
    };
    k.copy = [](const Bf16Bits* x, Bf16Bits* y, std::int64_t n) {
      if (n > 0) std::memcpy(y, x, static_cast<std::size_t>(n) * sizeof(Bf16Bits));
    };
    k.zero = [](Bf16Bits* x, std::int64_t n) {
      if (n > 0) std::memset(x, 0, static_cast<std::size_t>(n) * sizeof(Bf16Bits));
    };
    return k;
  }();
  return kernels;
}

}  // namespace g4
