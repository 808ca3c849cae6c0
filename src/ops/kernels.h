// kernels.h: one backend's kernels behind the op interface (ops.h), as a table of functions on raw buffers
// of that backend's device, with the signatures of ops/cpu's kernels. ops.cpp checks an op's arguments once
// and calls the table of its tensors' device and dtype, so every backend's version of an op runs behind the
// same checks.
//
// A table is typed by the activations' storage S: float (f32 tensors) or Bf16Bits (bf16 tensors: the bits of
// a bfloat16, which device kernels read as their bf16 type). Whatever S, arithmetic inside a kernel is fp32
// (or double where the CPU kernel uses double), parameter gradients (scatter_add_rows' table, matmul_tn's c,
// rms_norm_backward's dweight) are f32, and the loss, soft-cap and optimizer entries take f32 only (they stay
// empty in a bf16 table; the model converts to f32 where the reference computes in f32).
//
// The CPU's f32 table holds ops/cpu's functions and is complete; its bf16 table only converts and copies. The
// CUDA tables are empty until the CUDA backend (ops/cuda/kernels.h, in g4cuda) installs its versions; an op
// whose entry is empty is a g4::Error "op <name> has no <device> <dtype> version". Token ids and labels are
// host arrays on every backend (a device kernel uploads what it needs). Every entry overwrites its outputs,
// except those documented as accumulating (scatter_add_rows, the GEMMs with accumulate, rms_norm_backward's
// dweight, attention_backward's dk and dv, middle_slice_add, add_inplace), exactly as the ops/cpu kernel of
// the same name.
#pragma once

#include <cstdint>

#include "ops/adamw_step.h"
#include "ops/attention_visibility.h"
#include "ops/loss.h"
#include "ops/rope_table.h"

namespace g4 {

using Bf16Bits = std::uint16_t;

template <class S>
struct KernelTable {
  using i64 = std::int64_t;
  void (*add_inplace)(S* x, const S* y, i64 n) = nullptr;
  void (*scale_inplace)(S* x, float factor, i64 n) = nullptr;
  void (*scale_copy)(const S* x, float factor, S* y, i64 n) = nullptr;
  void (*clamp_inplace)(S* x, float lo, float hi, i64 n) = nullptr;
  void (*clamp_backward)(S* dy, const S* x, float lo, float hi, i64 n) = nullptr;
  void (*copy)(const S* x, S* y, i64 n) = nullptr;
  void (*zero)(S* x, i64 n) = nullptr;
  // Conversions between S and f32 (round to nearest even; for S = float, copies).
  void (*to_f32)(const S* x, float* y, i64 n) = nullptr;
  void (*from_f32)(const float* x, S* y, i64 n) = nullptr;
  void (*gather_rows)(const S* table, const i64* ids, i64 count, i64 width, float scale, S* out) = nullptr;
  void (*scatter_add_rows)(const S* d, const i64* ids, i64 count, i64 width, float scale,
                           float* table) = nullptr;
  // y [M, N] (+)= x [M, K] · w [N, K]ᵀ (y in S, or f32 for the _f32 form);  c [M, N] (+)= a [M, K] · b [K,
  // N]; c [M, N] (+)= a [K, M]ᵀ · b [K, N] with c f32 (weight gradients).
  void (*linear_forward)(const S* x, const S* w, S* y, i64 M, i64 N, i64 K, bool accumulate) = nullptr;
  void (*linear_forward_f32)(const S* x, const S* w, float* y, i64 M, i64 N, i64 K) = nullptr;
  void (*matmul_nn)(const S* a, const S* b, S* c, i64 M, i64 N, i64 K, bool accumulate) = nullptr;
  void (*matmul_tn)(const S* a, const S* b, float* c, i64 M, i64 N, i64 K, bool accumulate) = nullptr;
  void (*rms_norm_forward)(const S* x, const S* weight, S* y, i64 rows, i64 dim, float eps) = nullptr;
  void (*rms_norm_backward)(const S* x, const S* weight, const S* dy, S* dx, float* dweight, i64 rows,
                            i64 dim, float eps) = nullptr;
  void (*rope_apply)(S* x, const RopeTable& table, i64 tokens, int heads) = nullptr;
  void (*rope_backward)(S* dx, const RopeTable& table, i64 tokens, int heads) = nullptr;
  void (*attention_forward)(const S* q, const S* k, const S* v, const AttentionVisibility& rows, S* out,
                            int num_q_heads, int num_kv_heads, int head_dim) = nullptr;
  void (*attention_backward)(const S* q, const S* k, const S* v, const AttentionVisibility& rows,
                             const S* dout, S* dq, S* dk, S* dv, int num_q_heads, int num_kv_heads,
                             int head_dim) = nullptr;
  void (*geglu_forward)(const S* gate, const S* up, S* out, i64 n) = nullptr;
  void (*geglu_backward)(const S* gate, const S* up, const S* dout, S* dgate, S* dup, i64 n) = nullptr;
  void (*middle_slice_copy)(const S* x, i64 A, i64 M, i64 B, i64 index, S* out) = nullptr;
  void (*middle_slice_add)(S* x, i64 A, i64 M, i64 B, i64 index, const S* d) = nullptr;
  // f32 only.
  void (*softcap_forward)(float* logits, i64 count, float cap) = nullptr;
  void (*softcap_backward)(const float* capped, float* grad, i64 count, float cap) = nullptr;
  LossResult (*causal_lm_loss)(const float* logits, const i64* labels, i64 B, i64 S_, i64 V) = nullptr;
  void (*causal_lm_loss_backward)(const float* logits, const i64* labels, float* dlogits, i64 B, i64 S_,
                                  i64 V, double normaliser) = nullptr;
  LossResult (*token_loss)(const float* logits, const i64* targets, i64 N, i64 V) = nullptr;
  void (*token_loss_backward)(const float* logits, const i64* targets, float* dlogits, i64 N, i64 V,
                              double normaliser) = nullptr;
  void (*adamw_update)(float* w, const float* g, float* m, float* v, i64 n,
                       const AdamWStepConstants& k) = nullptr;
  double (*sum_of_squares)(const float* x, i64 n) = nullptr;
};

using Kernels = KernelTable<float>;
using Bf16Kernels = KernelTable<Bf16Bits>;

const Kernels& cpu_kernels();
// The CPU's bf16 table: conversions, copies and zeros only (to_f32, from_f32, copy, zero); the CPU computes
// in f32.
const Bf16Kernels& cpu_bf16_kernels();
// The CUDA backend's tables: empty entries until the CUDA backend installs its kernels.
Kernels& cuda_kernels();
Bf16Kernels& cuda_bf16_kernels();

}  // namespace g4
