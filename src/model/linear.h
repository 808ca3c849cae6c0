// linear.h: Linear, one projection of the model, y = x · Wᵀ in Hugging Face's [out, in] layout, bound to the
// tensor its weight gradient accumulates into. Every projection of the model goes through it, so LoRA
// adapters attach here (adding x · Aᵀ · Bᵀ · scale to the forward and their own gradients to the backward)
// without a change to the layers.
//
// Ownership: the weight and the gradient belong to Gemma4Weights (the parameters, and a second Gemma4Weights
// of gradients when training), which checkpoints, ZeRO-1 and expert slicing walk by name; a Linear refers to
// them and must not outlive them. Backward invariants as ops::linear_*: the weight gradient accumulates (+=),
// the input gradient is fresh (or added into the caller's with backward_add).
#pragma once

#include "core/tensor.h"

namespace g4 {

class Linear {
 public:
  explicit Linear(const Tensor& weight, Tensor* grad = nullptr) : weight_(weight), grad_(grad) {}

  Tensor forward(const Tensor& x) const;  // x [..., in] -> [..., out]
  // The same with an f32 output whatever x's dtype (the vocabulary head); its backward takes dy in x's dtype.
  Tensor forward_to_f32(const Tensor& x) const;
  // grad += dyᵀ · x; returns dx = dy · W. A Linear without a gradient tensor is an error here.
  Tensor backward(const Tensor& x, const Tensor& dy) const;
  // The same, adding dy · W into `dx` (several projections of one input).
  void backward_add(const Tensor& x, const Tensor& dy, Tensor& dx) const;

  const Tensor& weight() const { return weight_; }

 private:
  Tensor& grad() const;
  const Tensor& weight_;
  Tensor* grad_;
};

}  // namespace g4
