// op_cases.cpp: the parity cases of ops/ops.h's elementwise, embedding, linear, RMSNorm and RoPE ops (the
// attention, activation, slicing, loss and optimizer ops are in op_cases_model.cpp). Parameter-gradient ops
// start from non-zero gradients, so that their += is checked too.
#include <cmath>

#include "ops/ops.h"
#include "parity/case_util.h"

namespace g4::parity {

std::vector<OpCase> ops_model_cases();  // op_cases_model.cpp

namespace {

constexpr const char* kOneRounding = "one correctly rounded fp32 operation per element on every backend";
constexpr const char* kGemm = "fp32 GEMM (no TF32): only the summation order may differ";
constexpr const char* kRowSums = "fp32 with row sums in another order";

const std::vector<std::int64_t> kIds{3, 0, 9, 3, 5, 3};  // with repeats: the backward adds rows twice

RopeTable rope_for(std::int64_t tokens, int head_dim) {
  const std::vector<float> inv_freq = rope_inv_freq({10000.0, head_dim, head_dim / 2 - 2, 1.0});
  std::vector<std::int64_t> positions;
  for (std::int64_t t = 0; t < tokens; ++t) positions.push_back(3 * t + 1);
  return rope_table(inv_freq, positions.data(), tokens);
}

std::vector<OpCase> elementwise_and_linear() {
  std::vector<OpCase> c;
  c.push_back({"add_", "add_", exact(kOneRounding), [](const Backend& b) {
                 Tensor x = on(b, random_tensor({4, 33}, 1)), y = on(b, random_tensor({4, 33}, 2));
                 ops::add_(x, y);
                 return Outputs{output("x", x)};
               }});
  c.push_back({"scale_", "scale_", exact(kOneRounding), [](const Backend& b) {
                 Tensor x = on(b, random_tensor({4, 33}, 3));
                 ops::scale_(x, 0.37f);
                 return Outputs{output("x", x)};
               }});
  c.push_back({"copy", "copy", exact("a byte copy: no arithmetic"), [](const Backend& b) {
                 return Outputs{output("y", ops::copy(on(b, random_tensor({3, 17}, 40))))};
               }});
  c.push_back({"zeros", "zeros", exact("zero-filled memory: no arithmetic"), [](const Backend& b) {
                 return Outputs{output("z", ops::zeros({5, 9}, b.allocator->device()))};
               }});
  c.push_back({"to_dtype", "to_dtype", exact("round to nearest even, and widening: no arithmetic"),
               [](const Backend& b) {
                 const Tensor x = on_f32(b, random_tensor({4, 33}, 41));
                 const Tensor narrow = ops::to_dtype(x, DType::bf16);
                 return Outputs{output("bf16", narrow), output("f32", ops::to_dtype(narrow, DType::f32))};
               }});
  c.push_back(
      {"assign_", "assign_", exact("a copy, or one rounding to nearest even"), [](const Backend& b) {
         const Tensor x = on(b, random_tensor({4, 33}, 44)), wide = on_f32(b, random_tensor({4, 33}, 45));
         Tensor same = on(b, random_tensor({4, 33}, 46)), to_wide = on_f32(b, random_tensor({4, 33}, 47)),
                to_narrow = ops::to_dtype(on_f32(b, random_tensor({4, 33}, 48)), DType::bf16);
         ops::assign_(same, x);
         ops::assign_(to_wide, x);
         ops::assign_(to_narrow, wide);
         return Outputs{output("same", same), output("to_wide", to_wide), output("to_narrow", to_narrow)};
       }});
  c.push_back({"zero_", "zero_", exact("zero-filled memory: no arithmetic"), [](const Backend& b) {
                 Tensor x = on(b, random_tensor({3, 17}, 49));
                 ops::scale_(x, NAN);  // NaN everywhere first: zero_ must clear it
                 ops::zero_(x);
                 return Outputs{output("x", x)};
               }});
  c.push_back(
      {"clamp_", "clamp_", exact("a comparison and a copy per element: no arithmetic"), [](const Backend& b) {
         Tensor x = on(b, random_tensor({4, 33}, 50));
         ops::clamp_(x, -0.5f, 0.75f);
         return Outputs{output("x", x)};
       }});
  c.push_back({"clamp_backward_", "clamp_backward_", exact("a comparison per element: no arithmetic"),
               [](const Backend& b) {
                 Tensor dy = on(b, random_tensor({4, 33}, 51));
                 ops::clamp_backward_(dy, on(b, random_tensor({4, 33}, 52)), -0.5f, 0.75f);
                 return Outputs{output("dy", dy)};
               }});
  c.push_back({"scaled", "scaled", exact(kOneRounding), [](const Backend& b) {
                 return Outputs{output("y", ops::scaled(on(b, random_tensor({4, 33}, 4)), -1.75f))};
               }});
  c.push_back(
      {"embedding", "embedding", exact("a row copy and one multiply per element"), [](const Backend& b) {
         const Tensor table = on(b, random_tensor({10, 24}, 5));
         return Outputs{output("out", ops::embedding(table, kIds, std::sqrt(24.0f), "table"))};
       }});
  c.push_back({"embedding_backward", "embedding_backward",
               frobenius(1e-6, "repeated ids add their rows in another order (atomics on a GPU)"),
               [](const Backend& b) {
                 Tensor dtable = on_f32(b, random_tensor({10, 24}, 6));
                 const auto ids = static_cast<std::int64_t>(kIds.size());
                 ops::embedding_backward(on(b, random_tensor({ids, 24}, 7)), kIds, 0.5f, dtable);
                 return Outputs{output("dtable", dtable)};
               }});
  c.push_back({"linear", "linear", frobenius(1e-5, kGemm), [](const Backend& b) {
                 const Tensor x = on(b, random_tensor({2, 7, 48}, 8)), w = on(b, random_tensor({40, 48}, 9));
                 return Outputs{output("y", ops::linear(x, w))};
               }});
  c.push_back(
      {"linear_to_f32", "linear_to_f32", frobenius(1e-5, kGemm), [](const Backend& b) {
         const Tensor x = on(b, random_tensor({2, 7, 48}, 42)), w = on(b, random_tensor({40, 48}, 43));
         return Outputs{output("y", ops::linear_to_f32(x, w))};
       }});
  c.push_back(
      {"linear_backward_weight", "linear_backward_weight", frobenius(1e-5, kGemm), [](const Backend& b) {
         Tensor dw = on_f32(b, random_tensor({40, 48}, 10));
         ops::linear_backward_weight(on(b, random_tensor({2, 7, 40}, 11)),
                                     on(b, random_tensor({2, 7, 48}, 12)), dw);
         return Outputs{output("dweight", dw)};
       }});
  c.push_back(
      {"linear_backward_input", "linear_backward_input", frobenius(1e-5, kGemm), [](const Backend& b) {
         const Tensor dy = on(b, random_tensor({14, 40}, 13)), w = on(b, random_tensor({40, 48}, 14));
         return Outputs{output("dx", ops::linear_backward_input(dy, w))};
       }});
  c.push_back({"linear_backward_input_add_", "linear_backward_input_add_", frobenius(1e-5, kGemm),
               [](const Backend& b) {
                 Tensor dx = on(b, random_tensor({14, 48}, 15));
                 ops::linear_backward_input_add_(dx, on(b, random_tensor({14, 40}, 16)),
                                                 on(b, random_tensor({40, 48}, 17)));
                 return Outputs{output("dx", dx)};
               }});
  return c;
}

std::vector<OpCase> norm_and_rope() {
  std::vector<OpCase> c;
  for (const bool weighted : {true, false}) {
    const std::string suffix = weighted ? "" : "/no_weight";
    c.push_back(
        {"rms_norm" + suffix, "rms_norm", frobenius(1e-6, kRowSums), [weighted](const Backend& b) {
           const Tensor w = weighted ? on(b, random_tensor({64}, 18)) : Tensor();
           return Outputs{output("y", ops::rms_norm(on(b, random_tensor({9, 64}, 19, 3.0f)), w, 1e-6f))};
         }});
    c.push_back({"rms_norm_backward" + suffix, "rms_norm_backward", frobenius(1e-5, kRowSums),
                 [weighted](const Backend& b) {
                   const Tensor w = weighted ? on(b, random_tensor({64}, 20)) : Tensor();
                   Tensor dw = weighted ? on_f32(b, random_tensor({64}, 21)) : Tensor();
                   const Tensor dx = ops::rms_norm_backward(on(b, random_tensor({9, 64}, 22, 3.0f)), w,
                                                            on(b, random_tensor({9, 64}, 23)), dw, 1e-6f);
                   Outputs out{output("dx", dx)};
                   if (weighted) out.push_back(output("dweight", dw));
                   return out;
                 }});
  }
  c.push_back({"rope_", "rope_",
               frobenius(1e-6, "x·cos + rotate_half(x)·sin from the same table: fma contraction"),
               [](const Backend& b) {
                 Tensor x = on(b, random_tensor({7, 3, 32}, 24));
                 ops::rope_(x, rope_for(7, 32));
                 return Outputs{output("x", x)};
               }});
  c.push_back({"rope_backward_", "rope_backward_",
               frobenius(1e-6, "the rotation's transpose: fma contraction"), [](const Backend& b) {
                 Tensor dx = on(b, random_tensor({7, 3, 32}, 25));
                 ops::rope_backward_(dx, rope_for(7, 32));
                 return Outputs{output("dx", dx)};
               }});
  return c;
}

}  // namespace

std::vector<OpCase> ops_cases() {
  std::vector<OpCase> all = elementwise_and_linear();
  for (auto* part : {&norm_and_rope, &ops_model_cases})
    for (OpCase& c : part()) all.push_back(std::move(c));
  return all;
}

}  // namespace g4::parity
