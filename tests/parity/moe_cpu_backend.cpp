// moe_cpu_backend.cpp: the parity harness's MoE ops on the CPU: moe/'s gate, permutation and grouped experts
// in float, the reference every other backend is held to.
#include <cstddef>

#include "ops/cpu/moe_experts.h"
#include "ops/cpu/moe_gate.h"
#include "ops/cpu/moe_permute.h"
#include "parity/moe_backend.h"

namespace g4::parity {
namespace {

std::size_t size(std::int64_t n) {
  return static_cast<std::size_t>(n);
}

class CpuMoeBackend final : public MoeBackend {
 public:
  GateResult gate(const GateInputs& in, bool with_backward) override {
    const Gemma4GateConfig cfg{in.hidden, in.experts, in.top_k, in.eps};
    GateResult r;
    r.weights.resize(size(in.tokens * in.top_k));
    r.indices.resize(size(in.tokens * in.top_k));
    Gemma4GateContext<float> ctx;
    moe_gate_forward<float>(cfg, in.x.data(), in.proj.data(), in.scale.data(), in.tokens, r.weights.data(),
                            r.indices.data(), &ctx);
    if (!with_backward) return r;
    r.dx.resize(size(in.tokens * in.hidden));
    r.d_proj.assign(size(in.experts * in.hidden), 0.0f);
    r.d_scale.assign(size(in.hidden), 0.0f);
    moe_gate_backward<float>(cfg, in.proj.data(), in.scale.data(), ctx, in.d_weights.data(), r.dx.data(),
                             r.d_scale.data(), r.d_proj.data());
    return r;
  }

  PermutationResult permute(const PermutationInputs& in) override {
    TokenPermutation perm;
    moe_permute(in.indices.data(), in.mask.data(), in.tokens, in.top_k, in.experts, 0, &perm);
    PermutationResult r;
    r.offsets.push_back(0);
    for (const std::int32_t end : perm.end_offsets) r.offsets.push_back(end);
    r.row_token = perm.sorted_token_ids;
    r.row_weight.resize(size(perm.rows()));
    gather_sorted_weights<float>(perm, in.weights.data(), r.row_weight.data());
    r.slot_row.assign(size(in.tokens * in.top_k), -1);
    for (std::int64_t row = 0; row < perm.rows(); ++row)
      r.slot_row[size(perm.sorted_slot_ids[size(row)])] = row;
    return r;
  }

  ExpertsResult experts(const ExpertsInputs& in, bool with_backward) override {
    ExpertsConfig cfg;
    cfg.hidden = in.hidden;
    cfg.inter = in.inter;
    cfg.num_experts = in.experts;
    cfg.n_local = in.experts;
    cfg.start = 0;
    cfg.backend = ExpertsBackend::grouped;
    ExpertsResult r;
    r.y.resize(size(in.tokens * in.hidden));
    ExpertsContext<float> ctx;
    moe_experts_forward<float>(cfg, in.x.data(), in.mask.data(), in.weights.data(), in.indices.data(),
                               in.tokens, in.top_k, in.gate_up.data(), in.down.data(), r.y.data(), &ctx);
    if (!with_backward) return r;
    r.dx.resize(size(in.tokens * in.hidden));
    r.d_weights.resize(size(in.tokens * in.top_k));
    r.d_gate_up.assign(in.gate_up.size(), 0.0f);
    r.d_down.assign(in.down.size(), 0.0f);
    moe_experts_backward<float>(cfg, in.x.data(), in.gate_up.data(), in.down.data(), ctx, in.dy.data(),
                                r.dx.data(), r.d_weights.data(), r.d_gate_up.data(), r.d_down.data());
    return r;
  }
};

}  // namespace

MoeBackend& cpu_moe_backend() {
  static CpuMoeBackend backend;
  return backend;
}

}  // namespace g4::parity
