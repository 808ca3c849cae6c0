// aux_loss_autoscaler.h: NeMo's MoEAuxLossAutoScaler (the note's §6.7): attaches an auxiliary loss to the
// router output without adding it to the reported loss.
//
// Semantics: forward is the identity on the routing weights; in backward the routing weights' gradient
// passes through unchanged and the auxiliary loss receives the gradient `main_loss_backward_scale` (1.0
// unless set; the recipe sets cp_size / num_microbatches). The gate attaches `aux_loss_coeff · aux_loss`, so
// the gradient that reaches `aux_loss` itself is aux_loss_coeff · main_loss_backward_scale. Unlike NeMo's
// class attribute this is a value: each trainer owns one (no global state).
#pragma once

namespace g4 {

class AuxLossAutoScaler {
 public:
  void set_main_loss_backward_scale(double scale) { main_loss_backward_scale_ = scale; }
  double main_loss_backward_scale() const { return main_loss_backward_scale_; }

  // Forward: the output is returned unchanged (the aux loss is only remembered by the caller).
  template <class Output>
  const Output& forward(const Output& output) const {
    return output;
  }

  // d(total loss)/d(aux_loss) for an aux loss attached with coefficient `coeff`.
  double aux_loss_grad(double coeff) const { return coeff * main_loss_backward_scale_; }

 private:
  double main_loss_backward_scale_ = 1.0;
};

}  // namespace g4
