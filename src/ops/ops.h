// ops.h: the op interface the model is written against: forward/backward pairs on Tensors.
//
// Every op runs on its tensors' device and dtype. The CPU versions (f32) live in ops/cpu under the same
// names, the CUDA versions (f32 and bf16) in ops/cuda; an op whose tensors sit on a device or in a dtype that
// has no version of it is a g4::Error naming the op, the device and the dtype.
//
// Conventions (every op): inputs are contiguous; activations and weights share one dtype, f32 or bf16 (bf16:
// fp32 arithmetic inside each kernel, one rounding per output element); parameter gradients (`d<weight>`,
// `dtable`) are f32 whatever the activations' dtype; the loss, soft-cap and optimizer ops take f32 only. An
// op returning a Tensor allocates it on the inputs' device, in their dtype, from that device's activation
// allocator (core/allocator.h: a caching allocator while training);
// "_backward" ops that take a parameter gradient `d<weight>` add into it (+=), so that gradients accumulate
// over micro-batches and over layers that share a tensor; the activation gradient they return is fresh. Ops
// ending in "_" work in place on their first argument.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/tensor.h"
#include "ops/adamw_step.h"
#include "ops/attention_visibility.h"
#include "ops/loss.h"
#include "ops/rope_table.h"

namespace g4::ops {

// ---- elementwise
void add_(Tensor& x, const Tensor& y);         // x += y (same shape)
void scale_(Tensor& x, float factor);          // x *= factor
Tensor scaled(const Tensor& x, float factor);  // x · factor
void clamp_(Tensor& x, float lo, float hi);    // x = min(max(x, lo), hi) (the vision tower's clipped linears)
// dy = 0 where the clamp's input x lay outside [lo, hi] (torch.clamp's gradient: 1 on the closed interval)
void clamp_backward_(Tensor& dy, const Tensor& x, float lo, float hi);
Tensor copy(const Tensor& x);  // a copy, from the activation allocator
// zeros from the activation allocator
Tensor zeros(Shape shape, Device device = Device::cpu, DType dtype = DType::f32);
Tensor to_dtype(const Tensor& x, DType dtype);  // f32 <-> bf16 (round to nearest even), a fresh tensor
void assign_(Tensor& dst, const Tensor& src);   // dst = src converted to dst's dtype (same numel and device)
void zero_(Tensor& x);                          // x = 0 (also where x held NaN or Inf)

// ---- embedding: out [T, E] with out[t] = table[ids[t]] · scale; table [rows, E]. An id outside [0, rows) is
// a g4::Error that names `table_name`.
Tensor embedding(const Tensor& table, std::span<const std::int64_t> ids, float scale, const char* table_name);
// dtable[ids[t]] += dout[t] · scale
void embedding_backward(const Tensor& dout, std::span<const std::int64_t> ids, float scale, Tensor& dtable);

// ---- linear, in Hugging Face's layout: weight [N, K], y [..., N] = x [..., K] · weightᵀ.
Tensor linear(const Tensor& x, const Tensor& weight);
// The same product with an f32 output whatever x's dtype (the vocabulary head, whose logits the loss reads).
Tensor linear_to_f32(const Tensor& x, const Tensor& weight);
// dweight += dyᵀ · x
void linear_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dweight);
// dx = dy · weight, fresh; the _add_ form adds into an existing dx (several projections of one input).
Tensor linear_backward_input(const Tensor& dy, const Tensor& weight);
void linear_backward_input_add_(Tensor& dx, const Tensor& dy, const Tensor& weight);

// ---- RMSNorm over the last dimension (ops/cpu/rms_norm.h); an empty weight is the weightless norm.
Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps);
// Returns dx; dweight += Σ dy · x̂ (ignored when weight is empty).
Tensor rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& dy, Tensor& dweight, float eps);

// ---- RoPE in place on x [T, heads, head_dim] with the table's T positions (ops/rope_table.h; kernels in
// ops/cpu/rope.h).
void rope_(Tensor& x, const RopeTable& table);
void rope_backward_(Tensor& dx, const RopeTable& table);

// ---- attention over packed rows: q [Σ queries, Nq, D], k and v [Σ keys, Nkv, D]; row r's queries and keys
// follow row r-1's, and rows[r] says what its queries see (ops/attention_visibility.h). Scaling 1.0 (Gemma
// 4).
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 std::span<const AttentionVisibility> rows);
// Returns dq; dk and dv accumulate (+=), so that KV-shared layers add into their source's gradients.
Tensor attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                          std::span<const AttentionVisibility> rows, const Tensor& dout, Tensor& dk,
                          Tensor& dv);

// ---- GEGLU: gelu_tanh(gate) · up (same shapes).
Tensor geglu(const Tensor& gate, const Tensor& up);
struct GegluGrads {
  Tensor gate, up;
};
GegluGrads geglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dout);

// ---- one slice of the middle axis of x [A, M, B]: x[:, index, :] as [A, B], and its backward.
Tensor middle_slice(const Tensor& x, std::int64_t index);
void middle_slice_add_(Tensor& x, std::int64_t index, const Tensor& dslice);  // x[:, index, :] += dslice

// ---- the final soft-cap and the causal-LM loss (ops/loss.h; CPU kernels in ops/cpu/cross_entropy.h); labels
// [rows · S], unshifted.
void softcap_(Tensor& logits, float cap);
void softcap_backward_(const Tensor& capped, Tensor& grad, float cap);
LossResult causal_lm_loss(const Tensor& logits, std::span<const std::int64_t> labels);  // logits [B, S, V]
Tensor causal_lm_loss_backward(const Tensor& logits, std::span<const std::int64_t> labels, double normaliser);
// The same loss over logits [N, V] against explicit targets [N] (shifted already, -100 ignored), for the head
// in chunks of positions.
LossResult token_loss(const Tensor& logits, std::span<const std::int64_t> targets);
Tensor token_loss_backward(const Tensor& logits, std::span<const std::int64_t> targets, double normaliser);

// ---- optimizer (ops/adamw_step.h): AdamW's step on elements [first, first + exp_avg.numel()) of `param`
// and `grad` (the whole tensor, or a ZeRO-1 shard), in place; the moments hold those elements only.
void adamw_(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq,
            const AdamWStepConstants& k, std::int64_t first = 0);
// Σ x² over elements [first, first + count) (count -1: to the end), accumulated in double.
double sum_of_squares(const Tensor& x, std::int64_t first = 0, std::int64_t count = -1);

}  // namespace g4::ops
