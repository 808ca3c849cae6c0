#include "train/parameter_refs.h"

namespace g4 {

std::vector<Tensor*> gradient_tensors(const ModelConfig& config, Gemma4Weights& grads) {
  std::vector<Tensor*> out;
  for_each_parameter(config, grads, [&](const std::string&, Tensor& g) { out.push_back(&g); });
  return out;
}

std::vector<ParamRef> parameter_refs(const ModelConfig& config, Gemma4Weights& weights,
                                     Gemma4Weights& grads) {
  const std::vector<Tensor*> grad_list = gradient_tensors(config, grads);
  std::vector<ParamRef> refs;
  std::size_t i = 0;
  for_each_parameter(config, weights, [&](const std::string& name, Tensor& p) {
    refs.push_back({name, &p, grad_list[i++]});
  });
  return refs;
}

}  // namespace g4
