// kernels.h: one backend's kernels behind the op interface (ops.h), as a table of functions on raw f32
// buffers of that backend's device, with the signatures of ops/cpu's kernels. ops.cpp checks an op's
// arguments once and calls the table of its tensors' device, so the CPU and the CUDA version of an op run
// behind the same checks.
//
// The CPU table holds ops/cpu's functions and is complete. The CUDA table is empty until the CUDA backend
// (ops/cuda/kernels.h, in g4cuda) installs its versions; an op whose entry is empty on its tensors' device is
// a g4::Error "op <name> has no <device> version yet". Token ids and labels are host arrays on every backend
// (a device kernel uploads what it needs). Every entry overwrites its outputs, except those documented as
// accumulating (scatter_add_rows, the GEMMs with accumulate, rms_norm_backward's dweight, middle_slice_add,
// add_inplace), exactly as the ops/cpu kernel of the same name.
#pragma once

#include <cstdint>

#include "ops/cpu/adamw.h"
#include "ops/cpu/attention.h"
#include "ops/cpu/cross_entropy.h"
#include "ops/cpu/rope.h"

namespace g4 {

struct Kernels {
  using i64 = std::int64_t;
  void (*add_inplace)(float* x, const float* y, i64 n) = nullptr;
  void (*scale_inplace)(float* x, float factor, i64 n) = nullptr;
  void (*scale_copy)(const float* x, float factor, float* y, i64 n) = nullptr;
  void (*copy)(const float* x, float* y, i64 n) = nullptr;
  void (*gather_rows)(const float* table, const i64* ids, i64 count, i64 width, float scale,
                      float* out) = nullptr;
  void (*scatter_add_rows)(const float* d, const i64* ids, i64 count, i64 width, float scale,
                           float* table) = nullptr;
  // y [M, N] (+)= x [M, K] · w [N, K]ᵀ;  c [M, N] (+)= a [M, K] · b [K, N];  c [M, N] (+)= a [K, M]ᵀ · b [K,
  // N]
  void (*linear_forward)(const float* x, const float* w, float* y, i64 M, i64 N, i64 K,
                         bool accumulate) = nullptr;
  void (*matmul_nn)(const float* a, const float* b, float* c, i64 M, i64 N, i64 K, bool accumulate) = nullptr;
  void (*matmul_tn)(const float* a, const float* b, float* c, i64 M, i64 N, i64 K, bool accumulate) = nullptr;
  void (*rms_norm_forward)(const float* x, const float* weight, float* y, i64 rows, i64 dim,
                           float eps) = nullptr;
  void (*rms_norm_backward)(const float* x, const float* weight, const float* dy, float* dx, float* dweight,
                            i64 rows, i64 dim, float eps) = nullptr;
  void (*rope_apply)(float* x, const RopeTable& table, i64 tokens, int heads) = nullptr;
  void (*rope_backward)(float* dx, const RopeTable& table, i64 tokens, int heads) = nullptr;
  void (*attention_forward)(const float* q, const float* k, const float* v, const AttentionVisibility& rows,
                            float* out, int num_q_heads, int num_kv_heads, int head_dim) = nullptr;
  void (*attention_backward)(const float* q, const float* k, const float* v, const AttentionVisibility& rows,
                             const float* dout, float* dq, float* dk, float* dv, int num_q_heads,
                             int num_kv_heads, int head_dim) = nullptr;
  void (*geglu_forward)(const float* gate, const float* up, float* out, i64 n) = nullptr;
  void (*geglu_backward)(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                         i64 n) = nullptr;
  void (*middle_slice_copy)(const float* x, i64 A, i64 M, i64 B, i64 index, float* out) = nullptr;
  void (*middle_slice_add)(float* x, i64 A, i64 M, i64 B, i64 index, const float* d) = nullptr;
  void (*softcap_forward)(float* logits, i64 count, float cap) = nullptr;
  void (*softcap_backward)(const float* capped, float* grad, i64 count, float cap) = nullptr;
  LossResult (*causal_lm_loss)(const float* logits, const i64* labels, i64 B, i64 S, i64 V) = nullptr;
  void (*causal_lm_loss_backward)(const float* logits, const i64* labels, float* dlogits, i64 B, i64 S, i64 V,
                                  double normaliser) = nullptr;
  void (*adamw_update)(float* w, const float* g, float* m, float* v, i64 n,
                       const AdamWStepConstants& k) = nullptr;
  double (*sum_of_squares)(const float* x, i64 n) = nullptr;
};

const Kernels& cpu_kernels();
// The CUDA backend's table: empty entries until the CUDA backend installs its kernels.
Kernels& cuda_kernels();

}  // namespace g4
