// The CPU backend's kernel table (ops/kernels.h): ops/cpu's functions, every entry filled.
#include <cstring>

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
  k.copy = [](const float* x, float* y, i64 n) {
    if (n > 0) std::memcpy(y, x, static_cast<std::size_t>(n) * sizeof(float));
  };
  k.gather_rows = gather_rows;
  k.scatter_add_rows = scatter_add_rows;
  k.linear_forward = linear_forward;
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
  k.adamw_update = adamw_update;
  k.sum_of_squares = sum_of_squares;
  return k;
}

}  // namespace

const Kernels& cpu_kernels() {
  static const Kernels kernels = make_cpu_kernels();
  return kernels;
}

}  // namespace g4
