// moe_activations.h: the routing-weighted expert activations of NeMo Automodel (moe/megatron/moe_utils.py),
// forward and backward, on the CPU.
//
// Layout: a gated activation reads h [rows, 2I] as two concatenated halves, columns [0, I) the gate (y1) and
// [I, 2I) the up projection (y2); relu2 is not gated and reads h [rows, I]. Every row has one routing weight
// w[row] (nullptr means 1), applied inside the activation: out = act(h)·w, out [rows, I].
//
// Invariants: forward overwrites `out`; backward overwrites `dh` and `dw` (dw may be nullptr). The whole
// expression of a row element is evaluated in double and rounded once to T, for T = float and T = double
// (the float64 instantiation is what the finite-difference tests check). Clamps follow torch.clamp: the
// gradient passes where the input lies inside the closed interval and is zero outside it.
#pragma once

#include <cstdint>
#include <string_view>

namespace g4 {

enum class ExpertActivation {
  swiglu,          // silu(y1)·y2·w
  geglu,           // gelu_tanh(y1)·y2·w                            (Gemma 4)
  quick_geglu,     // y1·σ(α·y1)·(y2 + offset)·w, optional clamp: y1 ≤ L, |y2| ≤ L
  relu2,           // relu(y)²·w, not gated
  clamped_swiglu,  // silu(min(y1, L))·clamp(y2, −L, L)·w          (DeepSeek-V4 style)
};

struct ActivationParams {
  double alpha = 1.702;        // quick_geglu
  double linear_offset = 0.0;  // quick_geglu: the up half is (y2 + offset)
  double limit = 0.0;          // quick_geglu / clamped_swiglu clamp L; 0 means no clamp
};

// "swiglu", "geglu", "quick_geglu", "relu2", "clamped_swiglu"; anything else is a g4::Error.
ExpertActivation expert_activation_from_name(std::string_view name);
std::string_view expert_activation_name(ExpertActivation act);
bool is_gated(ExpertActivation act);
// Width of h for an intermediate size I: 2I when gated, I otherwise.
inline std::int64_t activation_input_width(ExpertActivation act, std::int64_t inter) {
  return is_gated(act) ? 2 * inter : inter;
}

// out[r, j] = act(h[r, :])_j · w[r]
template <class T>
void weighted_activation_forward(ExpertActivation act, const ActivationParams& params, const T* h, const T* w,
                                 std::int64_t rows, std::int64_t inter, T* out);

// Given dout = dL/dout [rows, I]: dh = dL/dh [rows, width], dw[r] = Σ_j act(h[r])_j · dout[r, j].
template <class T>
void weighted_activation_backward(ExpertActivation act, const ActivationParams& params, const T* h,
                                  const T* w, const T* dout, std::int64_t rows, std::int64_t inter, T* dh,
                                  T* dw);

}  // namespace g4
