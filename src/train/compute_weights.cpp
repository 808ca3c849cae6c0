#include "train/compute_weights.h"

#include "core/error.h"
#include "ops/ops.h"

namespace g4 {

ComputeWeights::ComputeWeights(const Gemma4Model& master, DType dtype)
    : master_(&master), dtype_(dtype), compute_(master) {
  check(dtype == DType::f32 || dtype == DType::bf16, "compute dtype ", dtype_name(dtype),
        " is not f32 or bf16");
  if (dtype == DType::f32) return;
  std::vector<Tensor*> compute;
  for_each_parameter(compute_.config, compute_.weights,
                     [&](const std::string&, Tensor& t) { compute.push_back(&t); });
  std::size_t i = 0;
  Gemma4Weights& masters = const_cast<Gemma4Weights&>(master.weights);  // visited read-only
  for_each_parameter(master.config, masters, [&](const std::string& name, Tensor& m) {
    Tensor* c = compute[i++];
    check(m.dtype() == DType::f32, "master weight ", name, " is ", dtype_name(m.dtype()), ", not f32");
    if (always_f32(compute_.weights, c)) return;  // the master's own tensor, shared
    *c = ops::to_dtype(m, dtype);
    copies_.emplace_back(c, &m);
  });
}

void ComputeWeights::refresh() {
  for (auto& [c, m] : copies_) ops::assign_(*c, *m);
}

}  // namespace g4
