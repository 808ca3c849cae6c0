// moe_experts.h (CPU twin of ops/cuda/moe_experts.h): the routed experts of a MoE layer (NeMo GroupedExperts,
// the note's §4), forward and backward on the CPU, with two interchangeable backends:
// - loop:    per local expert, find its (token, slot) pairs, gather, GEMM, activation, GEMM, scatter-add
//            (the readable reference; allocates per expert);
// - grouped: one stable expert-major permutation (moe_permute.h), then one GEMM per contiguous expert
//            segment into buffers held by the context (no per-expert allocation; buffers are reused across
//            calls once large enough).
//
// Weights are in the native layout: gate_and_up [n_local, H, 2I] (columns [0, I) the gate, [I, 2I) up) and
// down [n_local, I, H]; local expert i is global expert start + i. For each routed slot (token t, expert e,
// routing weight p): h = x[t]·Wgu[e], a = geglu(h)·p (the weight is applied inside the activation,
// ops/cpu/weighted_geglu.h), y[t] += a·Wd[e]; the combine accumulates in T (fp32 for float).
//
// Invariants: forward overwrites y (rows of masked or unrouted tokens are exactly 0); backward overwrites dx
// and dweights (entries of masked or non-local slots are 0) and accumulates (+=) into dgate_and_up and
// ddown; experts that receive no token get nothing added (zero gradient when the caller zeroed them). A batch
// with every token masked is valid. Both backends produce the same rows in the same order, so backward may
// use either backend's context.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/uninit_vector.h"

#include "ops/cpu/moe_permute.h"

namespace g4 {

enum class ExpertsBackend { loop, grouped };
ExpertsBackend experts_backend_from_name(std::string_view name);  // "loop" / "grouped", else g4::Error

struct ExpertsConfig {
  std::int64_t hidden = 0;       // H
  std::int64_t inter = 0;        // I (moe_intermediate_size)
  std::int64_t num_experts = 0;  // E, global
  std::int64_t n_local = 0;      // experts held here
  std::int64_t start = 0;        // first global expert held here
  ExpertsBackend backend = ExpertsBackend::grouped;
};

// What forward saves for backward. Rows are the routed (token, slot) pairs in expert-major order.
template <class T>
struct ExpertsContext {
  TokenPermutation perm;
  std::vector<T> sorted_weights;  // [rows]
  // Large buffers are uninitialised on resize: each is overwritten completely by the step that fills it.
  UninitVector<T> x_sorted;  // [rows, H]   gathered input (grouped backend)
  UninitVector<T> h;         // [rows, 2I]  gate/up projection
  UninitVector<T> a;         // [rows, I]   weighted activation
  // scratch reused by the grouped backend
  UninitVector<T> o, d_o, d_a, d_h, d_x;
  std::vector<T> d_p;
};

template <class T>
void moe_experts_forward(const ExpertsConfig& cfg, const T* x, const std::uint8_t* token_mask,
                         const T* weights, const std::int64_t* indices, std::int64_t tokens,
                         std::int64_t top_k, const T* gate_and_up, const T* down, T* y,
                         ExpertsContext<T>* ctx);

template <class T>
void moe_experts_backward(const ExpertsConfig& cfg, const T* x, const T* gate_and_up, const T* down,
                          ExpertsContext<T>& ctx, const T* dy, T* dx, T* dweights, T* dgate_and_up, T* ddown);

}  // namespace g4
