#include "train/presets.h"

#include <algorithm>
#include <limits>
#include <map>
#include <random>

#include "core/error.h"
#include "io/config.h"
#include "model/weight_layout.h"

namespace g4 {

std::vector<std::string> preset_names() {
  return {"tiny-moe", "gemma-4-26b-a4b"};
}

namespace {

// google/gemma-4-26b-a4b's text model: 30 layers (5 sliding, then 1 full, five times), 128 experts top-8.
Json gemma4_26b_a4b() {
  Json layer_types = Json::array();
  for (int l = 0; l < 30; ++l) layer_types.push_back(l % 6 == 5 ? "full_attention" : "sliding_attention");
  return Json{{"architectures", {"Gemma4ForCausalLM"}},
              {"model_type", "gemma4_text"},
              {"vocab_size", 262144},
              {"hidden_size", 2816},
              {"intermediate_size", 2112},
              {"num_hidden_layers", 30},
              {"num_attention_heads", 16},
              {"num_key_value_heads", 8},
              {"head_dim", 256},
              {"global_head_dim", 512},
              {"num_global_key_value_heads", 2},
              {"attention_k_eq_v", true},
              {"layer_types", layer_types},
              {"sliding_window", 1024},
              {"enable_moe_block", true},
              {"num_experts", 128},
              {"top_k_experts", 8},
              {"moe_intermediate_size", 704},
              {"hidden_size_per_layer_input", 0},
              {"final_logit_softcapping", 30.0},
              {"rms_norm_eps", 1e-6},
              {"tie_word_embeddings", true},
              {"max_position_embeddings", 262144},
              {"pad_token_id", 0},
              {"eos_token_id", 1},
              {"bos_token_id", 2},
              {"hidden_activation", "gelu_pytorch_tanh"},
              {"dtype", "bfloat16"}};
}

}  // namespace

Json preset_config(const std::string& name) {
  if (name == "gemma-4-26b-a4b") return gemma4_26b_a4b();
  check(name == "tiny-moe", "unknown model preset \"", name, "\" (known: tiny-moe, gemma-4-26b-a4b)");
  return Json{
      {"architectures", {"Gemma4ForCausalLM"}},
      {"model_type", "gemma4_text"},
      {"vocab_size", 264},
      {"hidden_size", 64},
      {"intermediate_size", 96},
      {"num_hidden_layers", 4},
      {"num_attention_heads", 4},
      {"num_key_value_heads", 2},
      {"head_dim", 16},
      {"global_head_dim", 32},
      {"num_global_key_value_heads", 1},
      {"attention_k_eq_v", true},
      {"layer_types", {"sliding_attention", "sliding_attention", "sliding_attention", "full_attention"}},
      {"sliding_window", 32},
      {"enable_moe_block", true},
      {"num_experts", 8},
      {"top_k_experts", 2},
      {"moe_intermediate_size", 48},
      {"hidden_size_per_layer_input", 0},
      {"final_logit_softcapping", 30.0},
      {"rms_norm_eps", 1e-6},
      {"tie_word_embeddings", true},
      {"max_position_embeddings", 4096},
      {"pad_token_id", 0},
      {"eos_token_id", 1},
      {"bos_token_id", 2},
      {"hidden_activation", "gelu_pytorch_tanh"},
      {"dtype", "float32"}};
}

// Tensors of at least this many elements are initialised in parallel chunks (every tensor of the tiny
// presets is smaller, so their values are the sequential stream's).
constexpr std::int64_t kParallelInitElements = std::int64_t{1} << 24;
constexpr std::int64_t kInitChunk = std::int64_t{1} << 20;

namespace {

// The vision tower and embed_vision of a vision-language config, in the checkpoint's names (carried, f32):
// matrices and the position table normal(0, range), norm weights and std_scale one, std_bias zero, clipping
// bounds infinite (nothing clipped).
void init_vision_tensors(Gemma4Model& m, std::mt19937_64& rng, double range) {
  std::normal_distribution<float> normal(0.0f, static_cast<float>(range));
  const auto ends_with = [](const std::string& s, const char* tail) {
    const std::string t(tail);
    return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
  };
  for (const auto& [name, shape] : expected_vision_tensors(*m.config.vision, m.config.text.hidden_size)) {
    Tensor t(DType::f32, shape);
    float fill = 0.0f;
    bool random = false;
    if (ends_with(name, "_min"))
      fill = -std::numeric_limits<float>::infinity();
    else if (ends_with(name, "_max"))
      fill = std::numeric_limits<float>::infinity();
    else if (ends_with(name, "std_scale") || (shape.size() == 1 && ends_with(name, "norm.weight")))
      fill = 1.0f;
    else
      random = !ends_with(name, "std_bias");
    float* values = t.f32();
    for (std::int64_t j = 0; j < t.numel(); ++j) values[j] = random ? normal(rng) : fill;
    m.carried.emplace_back(name, std::move(t));
  }
}

}  // namespace

Gemma4Model init_gemma4_model(const Json& doc, std::uint64_t seed, double initializer_range) {
  Gemma4Model m;
  m.config = parse_config(doc, "model config");
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, static_cast<float>(initializer_range));
  const TextConfig& c = m.config.text;
  m.weights.layers.resize(c.layers.size());
  // Shapes come from the native layout's visitor; norms and scales (1-D tensors) start at one.
  std::map<std::string, Shape> shapes;
  for (const ExpectedTensor& t : expected_text_tensors(c, /*native_moe=*/true))
    if (t.trainable) shapes[t.name == "lm_head.weight" ? t.name : m.config.text_prefix + t.name] = t.shape;
  for_each_parameter(m.config, m.weights, [&](const std::string& name, Tensor& t) {
    check(shapes.count(name) == 1, "init: no shape for parameter ", name);
    t = Tensor(DType::f32, shapes.at(name));
    const bool ones = t.rank() == 1;
    if (ones || t.numel() < kParallelInitElements) {
      float* values = t.f32();
      for (std::int64_t j = 0; j < t.numel(); ++j) values[j] = ones ? 1.0f : normal(rng);
      return;
    }
    // A large tensor: chunks drawn in parallel from generators seeded by one draw of the model's stream and
    // the chunk's index (the same values whatever the thread count).
    const std::uint64_t tensor_seed = rng();
    const std::int64_t chunks = (t.numel() + kInitChunk - 1) / kInitChunk;
    float* data = t.f32();
#pragma omp parallel for schedule(dynamic)
    for (std::int64_t chunk = 0; chunk < chunks; ++chunk) {
      std::mt19937_64 chunk_rng(tensor_seed + static_cast<std::uint64_t>(chunk));
      std::normal_distribution<float> chunk_normal(0.0f, static_cast<float>(initializer_range));
      const std::int64_t end = std::min(t.numel(), (chunk + 1) * kInitChunk);
      for (std::int64_t j = chunk * kInitChunk; j < end; ++j) data[j] = chunk_normal(chunk_rng);
    }
  });
  if (m.config.vision) init_vision_tensors(m, rng, initializer_range);
  return m;
}

}  // namespace g4
