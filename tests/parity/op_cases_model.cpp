// op_cases_model.cpp: the parity cases of ops/ops.h's attention (packed rows with segments, a key mask, a
// window and a KV-cache offset), GEGLU, middle slices, soft-cap, causal-LM loss and optimizer ops. Gradients
// that accumulate (dk, dv) start non-zero.
#include <cmath>

#include "ops/ops.h"
#include "parity/case_util.h"

namespace g4::parity {
namespace {

constexpr const char* kSoftmax = "fp32 softmax (double on the CPU) with sums in another order";
constexpr const char* kTanh = "tanh from another math library (CUDA's tanhf: 2 ulp)";
constexpr const char* kCopy = "a copy, and one fp32 add per element";
constexpr const char* kDoubleSums = "sums in double on the CPU, in another order or precision elsewhere";

constexpr int kNq = 4, kNkv = 2, kHeadDim = 16;
const std::vector<std::int64_t> kSegments{0, 0, 0, 1, 1, 1};
const std::vector<std::uint8_t> kKeyMask{1, 1, 0, 1, 1};

// Three packed rows: two packed sequences under the causal mask, a padded key, and the last 3 queries of 7
// keys under a window of 3.
std::vector<AttentionVisibility> attention_rows() {
  std::vector<AttentionVisibility> rows(3);
  rows[0].queries = rows[0].keys = 6;
  rows[0].segment = kSegments.data();
  rows[1].queries = rows[1].keys = 5;
  rows[1].key_mask = kKeyMask.data();
  rows[2].queries = 3;
  rows[2].keys = 7;
  rows[2].query_offset = 4;
  rows[2].window = 3;
  return rows;
}

// labels [2, 6] with ignored positions.
const std::vector<std::int64_t> kLabels{4, 1, kIgnoreIndex, 10, 0, 7, 2, 2, 9, kIgnoreIndex, 5, 3};

std::vector<OpCase> attention_and_activation() {
  std::vector<OpCase> c;
  c.push_back({"attention", "attention", frobenius(1e-5, kSoftmax), [](const Backend& b) {
                 const Tensor q = on(b, random_tensor({14, kNq, kHeadDim}, 101)),
                              k = on(b, random_tensor({18, kNkv, kHeadDim}, 102)),
                              v = on(b, random_tensor({18, kNkv, kHeadDim}, 103));
                 return Outputs{output("out", ops::attention(q, k, v, attention_rows()))};
               }});
  c.push_back({"attention_backward", "attention_backward", frobenius(1e-5, kSoftmax), [](const Backend& b) {
                 const Tensor q = on(b, random_tensor({14, kNq, kHeadDim}, 104)),
                              k = on(b, random_tensor({18, kNkv, kHeadDim}, 105)),
                              v = on(b, random_tensor({18, kNkv, kHeadDim}, 106)),
                              dout = on(b, random_tensor({14, kNq, kHeadDim}, 107));
                 Tensor dk = on(b, random_tensor({18, kNkv, kHeadDim}, 108)),
                        dv = on(b, random_tensor({18, kNkv, kHeadDim}, 109));
                 const Tensor dq = ops::attention_backward(q, k, v, attention_rows(), dout, dk, dv);
                 return Outputs{output("dq", dq), output("dk", dk), output("dv", dv)};
               }});
  // Gemma 4's head dims (256 sliding, 512 global), which bf16 runs through the flash kernels.
  for (const int D : {256, 512}) {
    const Tolerance t = frobenius(1e-5, kSoftmax, 1e-2,
                                  "flash attention rounds P to bf16 before P·V and Pᵀ·dO (FlashAttention's "
                                  "arithmetic): a few independent 2^-9 roundings per output");
    const std::string suffix = "/head_dim_" + std::to_string(D);
    c.push_back({"attention" + suffix, "attention", t, [D](const Backend& b) {
                   const Tensor q = on(b, random_tensor({14, 4, D}, 130, 0.25f)),
                                k = on(b, random_tensor({18, 2, D}, 131, 0.25f)),
                                v = on(b, random_tensor({18, 2, D}, 132));
                   return Outputs{output("out", ops::attention(q, k, v, attention_rows()))};
                 }});
    c.push_back(
        {"attention_backward" + suffix, "attention_backward", t, [D](const Backend& b) {
           const Tensor q = on(b, random_tensor({14, 4, D}, 133, 0.25f)),
                        k = on(b, random_tensor({18, 2, D}, 134, 0.25f)),
                        v = on(b, random_tensor({18, 2, D}, 135)),
                        dout = on(b, random_tensor({14, 4, D}, 136));
           Tensor dk = on(b, random_tensor({18, 2, D}, 137)), dv = on(b, random_tensor({18, 2, D}, 138));
           const Tensor dq = ops::attention_backward(q, k, v, attention_rows(), dout, dk, dv);
           return Outputs{output("dq", dq), output("dk", dk), output("dv", dv)};
         }});
  }
  c.push_back({"geglu", "geglu", frobenius(1e-6, kTanh), [](const Backend& b) {
                 const Tensor gate = on(b, random_tensor({6, 40}, 110, 2.0f)),
                              up = on(b, random_tensor({6, 40}, 111));
                 return Outputs{output("out", ops::geglu(gate, up))};
               }});
  c.push_back({"geglu_backward", "geglu_backward", frobenius(1e-6, kTanh), [](const Backend& b) {
                 const Tensor gate = on(b, random_tensor({6, 40}, 112, 2.0f)),
                              up = on(b, random_tensor({6, 40}, 113)),
                              dout = on(b, random_tensor({6, 40}, 114));
                 const ops::GegluGrads g = ops::geglu_backward(gate, up, dout);
                 return Outputs{output("dgate", g.gate), output("dup", g.up)};
               }});
  c.push_back({"middle_slice", "middle_slice", exact(kCopy), [](const Backend& b) {
                 return Outputs{output("slice", ops::middle_slice(on(b, random_tensor({3, 4, 5}, 115)), 2))};
               }});
  c.push_back({"middle_slice_add_", "middle_slice_add_", exact(kCopy), [](const Backend& b) {
                 Tensor x = on(b, random_tensor({3, 4, 5}, 116));
                 ops::middle_slice_add_(x, 1, on(b, random_tensor({3, 5}, 117)));
                 return Outputs{output("x", x)};
               }});
  return c;
}

std::vector<OpCase> loss_and_optimizer() {
  std::vector<OpCase> c;
  c.push_back({"softcap_", "softcap_", frobenius(1e-6, kTanh), [](const Backend& b) {
                 Tensor logits = on_f32(b, random_tensor({2, 6, 11}, 118, 40.0f));
                 ops::softcap_(logits, 30.0f);
                 return Outputs{output("logits", logits)};
               }});
  c.push_back({"softcap_backward_", "softcap_backward_", frobenius(1e-6, "d·(1 - (c/cap)²): fma contraction"),
               [](const Backend& b) {
                 Tensor capped = random_tensor({2, 6, 11}, 119, 40.0f);
                 ops::softcap_(capped, 30.0f);  // a real soft-capped input, made on the host
                 Tensor grad = on_f32(b, random_tensor({2, 6, 11}, 120));
                 ops::softcap_backward_(on_f32(b, capped), grad, 30.0f);
                 return Outputs{output("grad", grad)};
               }});
  c.push_back(
      {"causal_lm_loss", "causal_lm_loss", frobenius(1e-6, kDoubleSums), [](const Backend& b) {
         const LossResult r = ops::causal_lm_loss(on_f32(b, random_tensor({2, 6, 11}, 121, 3.0f)), kLabels);
         return Outputs{scalar_output("loss_sum", r.loss_sum),
                        scalar_output("num_tokens", static_cast<double>(r.num_tokens), true)};
       }});
  c.push_back({"causal_lm_loss_backward", "causal_lm_loss_backward", frobenius(1e-6, kDoubleSums),
               [](const Backend& b) {
                 const Tensor logits = on_f32(b, random_tensor({2, 6, 11}, 122, 3.0f));
                 return Outputs{output("dlogits", ops::causal_lm_loss_backward(logits, kLabels, 7.0))};
               }});
  c.push_back({"token_loss", "token_loss", frobenius(1e-6, kDoubleSums), [](const Backend& b) {
                 const LossResult r = ops::token_loss(on_f32(b, random_tensor({12, 11}, 128, 3.0f)), kLabels);
                 return Outputs{scalar_output("loss_sum", r.loss_sum),
                                scalar_output("num_tokens", static_cast<double>(r.num_tokens), true)};
               }});
  c.push_back(
      {"token_loss_backward", "token_loss_backward", frobenius(1e-6, kDoubleSums), [](const Backend& b) {
         const Tensor logits = on_f32(b, random_tensor({12, 11}, 129, 3.0f));
         return Outputs{output("dlogits", ops::token_loss_backward(logits, kLabels, 7.0))};
       }});
  for (const bool shard : {false, true}) {
    c.push_back({shard ? "adamw_/shard" : "adamw_", "adamw_",
                 frobenius(1e-6, "each element's update in double on the CPU (fp32 elsewhere: a few ulp)"),
                 [shard](const Backend& b) {
                   const std::int64_t n = 40, first = shard ? 12 : 0, count = shard ? 16 : n;
                   Tensor param = on_f32(b, random_tensor({n}, 123)),
                          grad = on_f32(b, random_tensor({n}, 124, 0.1f));
                   Tensor m = random_tensor({count}, 125, 0.05f), v = random_tensor({count}, 126, 0.01f);
                   for (std::int64_t i = 0; i < count; ++i) v.f32()[i] = std::abs(v.f32()[i]);
                   Tensor dm = on_f32(b, m), dv = on_f32(b, v);
                   const AdamWStepConstants k = adamw_step_constants({0.9, 0.999, 1e-8, 0.01}, 3, 1e-3);
                   ops::adamw_(param, grad, dm, dv, k, first);
                   return Outputs{output("param", param), output("exp_avg", dm), output("exp_avg_sq", dv)};
                 }});
  }
  c.push_back({"sum_of_squares", "sum_of_squares", frobenius(1e-6, kDoubleSums), [](const Backend& b) {
                 const Tensor x = on_f32(b, random_tensor({300}, 127));
                 return Outputs{scalar_output("whole", ops::sum_of_squares(x)),
                                scalar_output("range", ops::sum_of_squares(x, 37, 101))};
               }});
  return c;
}

}  // namespace

std::vector<OpCase> ops_model_cases() {
  std::vector<OpCase> all = attention_and_activation();
  for (OpCase& c : loss_and_optimizer()) all.push_back(std::move(c));
  return all;
}

}  // namespace g4::parity
