// gate.h: NeMo's generic MoE router `Gate` (the note's §10.1, aux loss §6.7), forward and backward on the
// CPU. Gemma 4 uses ops/cpu/moe_gate.h instead; this one serves the other MoE families and the aux-loss
// machinery.
//
// Forward, x [T, dim], weight [E, dim], optional router bias [E]: logits = x·weightᵀ (+ bias), then
// - softmax, softmax_before_topk = false: top-k on the logits (+ expert_bias for the choice only), weights =
//   softmax over the k chosen logits;
// - softmax, softmax_before_topk = true: p = softmax(logits over E); top-k of p (+ expert_bias for the
//   choice); weights = p at the chosen experts;
// - sigmoid: p = σ(logits); top-k of p (+ expert_bias for the choice); weights = p at the chosen experts;
// then, if norm_topk_prob and k > 1: weights /= (Σ weights + 1e-20); finally weights *= route_scale.
// Top-k is sorted descending, ties to the lower expert id.
//
// Aux loss (only when aux_loss_coeff > 0), over valid tokens (token_mask, nullptr = all valid):
//   T_valid = max(1, #valid), load_i = #(valid slots routed to i), f_i = load_i·E / (K·T_valid),
//   P_i = Σ_{t valid} s[t, i] / T_valid with s = softmax(logits) (softmax) or σ(logits) (sigmoid),
//   aux = Σ_i f_i·P_i   (f carries no gradient). The value returned is the unscaled aux loss; backward takes
//   d(total)/d(aux) (AuxLossAutoScaler::aux_loss_grad(coeff)).
//
// Backward: dx overwritten; dweight and dbias accumulated (+=); the expert bias and the indices get none.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace g4 {

enum class ScoreFunction { softmax, sigmoid };
ScoreFunction score_function_from_name(std::string_view name);  // "softmax" / "sigmoid", else g4::Error

struct GateConfig {
  std::int64_t dim = 0;
  std::int64_t num_experts = 0;
  std::int64_t top_k = 0;
  ScoreFunction score = ScoreFunction::softmax;
  bool softmax_before_topk = false;
  bool norm_topk_prob = false;
  double route_scale = 1.0;
  double aux_loss_coeff = 0.0;
};

template <class T>
struct GateContext {
  std::int64_t tokens = 0;
  std::vector<T> scores;              // [T, E] logits (softmax after top-k) or probabilities
  std::vector<T> full_probs;          // [T, E] s used by the aux loss (empty without aux loss)
  std::vector<std::int64_t> indices;  // [T, K]
  std::vector<T> pre_norm;            // [T, K] weights before the top-k normalisation
  std::vector<T> norm_sum;            // [T]    Σ pre_norm (when normalising)
  std::vector<double> aux_f;          // [E]    f_i (aux loss)
  std::vector<std::uint8_t> valid;    // [T]
  double t_valid = 1.0;
};

// bias, expert_bias and token_mask may be nullptr; aux_loss (may be nullptr) receives 0 without aux loss.
template <class T>
void gate_forward(const GateConfig& cfg, const T* x, const T* weight, const T* bias, const T* expert_bias,
                  const std::uint8_t* token_mask, std::int64_t tokens, T* weights, std::int64_t* indices,
                  double* aux_loss, GateContext<T>* ctx);

// aux_loss_grad = d(total loss)/d(aux loss) (ignored without aux loss); dbias may be nullptr.
template <class T>
void gate_backward(const GateConfig& cfg, const T* x, const T* weight, const GateContext<T>& ctx,
                   const T* dweights, double aux_loss_grad, T* dx, T* dweight, T* dbias);

// Routed slots per expert over valid tokens (the load statistics of the bias update and of the aux loss).
std::vector<double> expert_load(const std::int64_t* indices, const std::uint8_t* token_mask,
                                std::int64_t tokens, std::int64_t top_k, std::int64_t num_experts);

// The selection bias update (aux-loss-free balancing): bias[e] += factor · sign(mean(load) − load[e]), in
// fp32.
void update_expert_bias(float* expert_bias, const std::vector<double>& load, double factor);

}  // namespace g4
