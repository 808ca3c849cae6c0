// moe_block_fixture.h: the committed MoE-block case tests/fixtures/moe_block
// (tools/make_moe_block_fixture.py: transformers 5.17.0's Gemma4TextRouter + Gemma4TextExperts, H 256, I 64,
// 16 experts, top-4, 192 tokens, expert 5 empty) loaded for the CPU path (tests/moe) and the CUDA path
// (tests/cuda).
//
// The weights come in transformers' layout and names; `native` holds them after g4moe's own adapter
// (gemma4_moe_from_hf: gate_up transposed, per_expert_scale folded into down), as fp32. Every expected tensor
// is widened to fp32 ("f64.*": computed in float64, stored rounded once to fp32; "bf16.*": what transformers'
// bf16 module computes).
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"
#include "moe/gemma4_moe.h"
#include "moe/state_dict_adapter.h"

namespace g4::test {

struct MoeBlockFixture {
  static constexpr std::int64_t tokens = 192, hidden = 256, inter = 64, experts = 16, top_k = 4;
  static constexpr int empty_expert = 5;
  StateDict hf;        // "model.layers.0.router.proj.weight", ... (fp32, widened from the bf16 checkpoint)
  StateDict native;    // "model.layers.0.moe.gate.proj.weight", ... (fp32)
  StateDict expected;  // every tensor of expected.safetensors (fp32; f64.indices stays i64)

  const Tensor& hf_weight(const std::string& name) const { return hf.at("model.layers.0." + name); }
  const Tensor& native_weight(const std::string& name) const {
    return native.at("model.layers.0.moe." + name);
  }
  const Tensor& want(const std::string& name) const { return expected.at(name); }

  Gemma4MoeConfig config(ExpertsBackend backend = ExpertsBackend::grouped) const {
    return gemma4_moe_config(hidden, experts, top_k, inter, 1e-6, backend);
  }
};

inline MoeBlockFixture load_moe_block_fixture(const std::string& dir) {
  MoeBlockFixture f;
  auto model = SafetensorsFile::open(dir + "/model.safetensors");
  for (const auto& info : model->tensors()) f.hf["model.layers.0." + info.name] = model->read(info).to_f32();
  f.native = gemma4_moe_from_hf(f.hf);
  auto expected = SafetensorsFile::open(dir + "/expected.safetensors");
  for (const auto& info : expected->tensors()) {
    Tensor t = expected->read(info);
    f.expected[info.name] = t.dtype() == DType::i64 ? t : t.to_f32();
  }
  return f;
}

// ||a - b|| / ||b|| in double; NaN or inf anywhere in `a` gives +inf, so a broken result never passes.
inline double relative_error(const float* a, const float* b, std::int64_t n) {
  double num = 0, den = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}
inline double relative_error(const std::vector<float>& a, const Tensor& b) {
  return a.size() == static_cast<std::size_t>(b.numel()) ? relative_error(a.data(), b.f32(), b.numel())
                                                         : INFINITY;
}
inline double relative_error(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() ? relative_error(a.f32(), b.f32(), b.numel()) : INFINITY;
}

// The routing of the fixture's tokens as per-token (expert id, weight) pairs sorted by expert id, with each
// weight multiplied by scale[expert]; the order of the top-k within a token is not part of the contract (two
// chosen experts may be near a tie; the fixture only guarantees a clear gap between the K-th and (K+1)-th).
// Returns false when a token's experts differ from `want_indices`'s; `weights_out` follows want's order.
template <class Index>
inline bool same_experts_per_token(const Index* got_indices, const float* got_weights,
                                   const Tensor& want_indices, const float* scale, std::int64_t tokens,
                                   std::int64_t k, std::vector<float>* weights_out) {
  weights_out->assign(tokens * k, NAN);
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t j = 0; j < k; ++j) {
      const std::int64_t e = want_indices.i64()[t * k + j];
      std::int64_t found = -1;
      for (std::int64_t m = 0; m < k; ++m)
        if (static_cast<std::int64_t>(got_indices[t * k + m]) == e) found = m;
      if (found < 0) return false;
      (*weights_out)[t * k + j] = got_weights[t * k + found] * scale[e];
    }
  return true;
}

}  // namespace g4::test
