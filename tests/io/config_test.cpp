#include <gtest/gtest.h>

#include "core/error.h"
#include "io/config.h"
#include "test_paths.h"

namespace g4 {
namespace {

Json tiny_text() {
  return Json::parse(R"({"model_type":"gemma4_text","vocab_size":96,"hidden_size":32,"intermediate_size":20,
    "num_hidden_layers":4,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"sliding_window":4})");
}

std::string error_of(const Json& doc) {
  try {
    parse_config(doc, "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Config, DefaultsFollowTransformers517) {
  Json doc = tiny_text();
  doc["num_hidden_layers"] = 8;
  const ModelConfig m = parse_config(doc, "cfg.json");
  const TextConfig& t = m.text;
  EXPECT_EQ(m.architecture, "Gemma4ForCausalLM");
  EXPECT_EQ(m.text_prefix, "model.");
  // Default pattern: full where (i+1) % 6 == 0, and the last layer forced to full.
  std::vector<AttentionKind> expected(8, AttentionKind::sliding);
  expected[5] = AttentionKind::full;
  expected[7] = AttentionKind::full;
  EXPECT_EQ(t.layer_types, expected);
  // global head dim 512 when absent; full layers keep num_key_value_heads without k_eq_v.
  EXPECT_EQ(t.layers[5].head_dim, 512);
  EXPECT_EQ(t.layers[5].num_kv_heads, 2);
  EXPECT_EQ(t.layers[0].head_dim, 16);
  EXPECT_EQ(t.layers[0].rope.type, "default");
  EXPECT_EQ(t.layers[0].rope.theta, 10000.0);
  EXPECT_EQ(t.layers[0].rope.rotated_pairs, 8);
  EXPECT_EQ(t.layers[5].rope.type, "proportional");
  EXPECT_EQ(t.layers[5].rope.theta, 1e6);
  EXPECT_EQ(t.layers[5].rope.rotated_pairs, 64);  // int(0.25 * 512 // 2)
  EXPECT_EQ(t.layers[0].window, 4);
  EXPECT_EQ(t.layers[5].window, 0);
  EXPECT_EQ(t.hidden_size_per_layer_input, 256);  // PLE on by default, as in transformers
  EXPECT_EQ(t.rms_norm_eps, 1e-6);
  EXPECT_TRUE(t.tie_word_embeddings);
  EXPECT_FALSE(t.final_logit_softcapping.has_value());
}

TEST(Config, LastLayerIsForcedToFullAttention) {
  Json doc = tiny_text();
  doc["layer_types"] = {"sliding_attention", "sliding_attention", "full_attention", "sliding_attention"};
  const ModelConfig m = parse_config(doc, "cfg.json");
  EXPECT_EQ(m.text.layer_types[3], AttentionKind::full);
  EXPECT_EQ(m.text.layer_types[2], AttentionKind::full);
}

TEST(Config, BothHeadDimFormsResolveTheSame) {
  Json released = tiny_text();
  released["attention_k_eq_v"] = true;
  released["global_head_dim"] = 32;
  released["num_global_key_value_heads"] = 1;
  Json saved = tiny_text();
  saved["attention_k_eq_v"] = true;
  saved["per_layer_config"] = {{"3", {{"head_dim", 32}, {"num_key_value_heads", 1}}}};
  const TextConfig a = parse_config(released, "a").text;
  const TextConfig b = parse_config(saved, "b").text;
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (std::size_t i = 0; i < a.layers.size(); ++i) {
    EXPECT_EQ(a.layers[i].head_dim, b.layers[i].head_dim) << i;
    EXPECT_EQ(a.layers[i].num_kv_heads, b.layers[i].num_kv_heads) << i;
    EXPECT_EQ(a.layers[i].k_eq_v, b.layers[i].k_eq_v) << i;
  }
  EXPECT_EQ(a.layers[3].head_dim, 32);
  EXPECT_EQ(a.layers[3].num_kv_heads, 1);
  EXPECT_TRUE(a.layers[3].k_eq_v);
  EXPECT_FALSE(a.layers[0].k_eq_v);
}

TEST(Config, GlobalKvHeadsApplyOnlyWithKEqV) {
  Json doc = tiny_text();
  doc["num_global_key_value_heads"] = 1;
  EXPECT_EQ(parse_config(doc, "c").text.layers[3].num_kv_heads, 2);
}

TEST(Config, NestedConditionalGenerationLayout) {
  Json doc = {
      {"model_type", "gemma4"}, {"text_config", tiny_text()}, {"vision_config", {{"hidden_size", 8}}}};
  const ModelConfig m = parse_config(doc, "c");
  EXPECT_TRUE(m.nested);
  EXPECT_EQ(m.text_prefix, "model.language_model.");
  EXPECT_EQ(m.architecture, "Gemma4ForConditionalGeneration");
  EXPECT_TRUE(m.has_vision_config);
  EXPECT_FALSE(m.has_audio_config);
}

TEST(Config, VisionConfigResolvedAndChecked) {
  Json doc = {{"model_type", "gemma4"},
              {"text_config", tiny_text()},
              {"vision_config",
               {{"hidden_size", 16},
                {"num_attention_heads", 4},
                {"num_key_value_heads", 2},
                {"head_dim", 8},
                {"standardize", true},
                {"rope_parameters", {{"rope_type", "axial"}, {"rope_theta", 50.0}}}}}};
  const ModelConfig m = parse_config(doc, "c");
  ASSERT_TRUE(m.vision.has_value());
  EXPECT_EQ(m.vision->hidden_size, 16);
  EXPECT_EQ(m.vision->num_key_value_heads, 2);
  EXPECT_EQ(m.vision->intermediate_size, 3072);  // transformers' default
  EXPECT_EQ(m.vision->pooling_kernel_size, 3);
  EXPECT_EQ(m.vision->rope_theta, 50.0);
  EXPECT_TRUE(m.vision->standardize);
  doc["vision_config"]["head_dim"] = 6;
  EXPECT_NE(error_of(doc).find("vision_config.head_dim must be a positive multiple of 4"), std::string::npos);
  doc["vision_config"]["head_dim"] = 8;
  doc["vision_config"]["num_key_value_heads"] = 3;
  EXPECT_NE(error_of(doc).find("must be a multiple of num_key_value_heads"), std::string::npos);
  doc["vision_config"]["num_key_value_heads"] = 2;
  doc["vision_config"]["patch_size"] = 0;
  EXPECT_NE(error_of(doc).find("vision_config.patch_size must be >= 1"), std::string::npos);
  doc["vision_config"]["patch_size"] = "16";
  EXPECT_NE(error_of(doc).find("patch_size"), std::string::npos);
}

TEST(Config, OlderExpertWidthName) {
  Json doc = tiny_text();
  doc["enable_moe_block"] = true;
  doc["num_experts"] = 8;
  doc["top_k_experts"] = 2;
  doc["expert_intermediate_size"] = 12;
  EXPECT_EQ(parse_config(doc, "c").text.moe_intermediate_size, 12);
}

TEST(Config, KvSharingSourcesAndDoubleWideMlp) {
  Json doc = tiny_text();
  doc["num_hidden_layers"] = 6;
  doc["layer_types"] = {"sliding_attention", "sliding_attention", "full_attention",
                        "sliding_attention", "sliding_attention", "full_attention"};
  doc["num_kv_shared_layers"] = 2;
  doc["use_double_wide_mlp"] = true;
  const TextConfig t = parse_config(doc, "c").text;
  EXPECT_EQ(t.layers[3].kv_source, -1);
  EXPECT_EQ(t.layers[4].kv_source, 3);  // last non-shared sliding layer
  EXPECT_EQ(t.layers[5].kv_source, 2);  // last non-shared full layer
  EXPECT_TRUE(t.layers[3].stores_shared_kv);
  EXPECT_TRUE(t.layers[2].stores_shared_kv);
  EXPECT_FALSE(t.layers[1].stores_shared_kv);
  EXPECT_EQ(t.layers[3].mlp_width, 20);
  EXPECT_EQ(t.layers[4].mlp_width, 40);
}

TEST(Config, ContradictionsAreClearErrors) {
  struct Case {
    const char* key;
    Json value;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"num_key_value_heads", 3, "not divisible"},
      {"layer_types", Json::array({"sliding_attention"}), "layer_types has 1 entries"},
      {"layer_types", Json::array({"sliding_attention", "x", "y", "z"}), "unknown layer type"},
      {"hidden_size", -4, "hidden_size must be positive"},
      {"num_kv_shared_layers", 4, "num_kv_shared_layers must be in"},
      {"hidden_activation", "relu", "unsupported hidden_activation"},
      {"rope_parameters",
       {{"sliding_attention", {{"rope_type", "yarn"}, {"rope_theta", 1.0}}}},
       "unsupported rope_type"},
      {"rope_parameters",
       {{"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 1.0}}}},
       "no entry for full_attention"},
      {"per_layer_config", {{"9", {{"head_dim", 8}}}}, "is not a layer index"},
      {"per_layer_config", {{"1", {{"rope_theta", 8}}}}, "unsupported per-layer override"},
      {"vocab_size", "many", "must be an integer"},
      // Out of int64's range (found by tests/fuzz/fuzz_config: the conversion was undefined behaviour).
      {"vocab_size", 6.66667e48, "must be an integer"},
      {"vocab_size", Json(std::uint64_t{1} << 63), "must be an integer"},
      {"model_type", "llama", "unsupported model_type"},
  };
  for (const Case& c : cases) {
    Json doc = tiny_text();
    doc[c.key] = c.value;
    const std::string message = error_of(doc);
    EXPECT_NE(message.find(c.message), std::string::npos) << c.key << ": " << message;
    EXPECT_NE(message.find("cfg.json"), std::string::npos) << c.key << ": " << message;
  }
  Json moe = tiny_text();
  moe["enable_moe_block"] = true;
  moe["num_experts"] = 4;
  moe["top_k_experts"] = 8;
  moe["moe_intermediate_size"] = 8;
  EXPECT_NE(error_of(moe).find("top_k_experts (8) is larger than num_experts (4)"), std::string::npos);
}

// Sizes from config.json that overflow 64 bits, would be truncated into an int, or are not plausible: each
// a one-line error naming the key (or the tensor) and the file. A vocabulary of 2^57 used to give a negative
// parameter count, one of 2^62 a zero-byte embedding.
TEST(Config, OversizedSizesAreClearErrors) {
  struct Case {
    const char* name;
    Json patch;
    const char* message;
  };
  const std::int64_t big = std::int64_t{1} << 30;
  const std::vector<Case> cases = {
      {"vocab 2^57",
       {{"vocab_size", std::int64_t{1} << 57}},
       "vocab_size 144115188075855872 is larger than 2^31 - 1"},
      {"vocab 2^62", {{"vocab_size", std::int64_t{1} << 62}}, "vocab_size 4611686018427387904 is larger"},
      {"hidden 2^40", {{"hidden_size", std::int64_t{1} << 40}}, "hidden_size 1099511627776 is larger"},
      {"intermediate 2^31",
       {{"intermediate_size", std::int64_t{1} << 31}},
       "intermediate_size 2147483648 is larger"},
      // int fields: 2^32 + 8 experts used to be truncated to 8.
      {"experts 2^32 + 8",
       {{"num_experts", (std::int64_t{1} << 32) + 8}},
       "num_experts 4294967304 is larger"},
      {"layers -2^32",
       {{"num_hidden_layers", -(std::int64_t{1} << 32)}},
       "num_hidden_layers -4294967296 is out of range"},
      {"per-layer head_dim",
       {{"per_layer_config", {{"3", {{"head_dim", std::int64_t{1} << 40}}}}}},
       "head_dim 1099511627776 is larger"},
      {"global head_dim",
       {{"global_head_dim", std::int64_t{1} << 33}},
       "global_head_dim 8589934592 is larger"},
      // Every dimension is in range, but num_experts x 2 x moe_intermediate_size x hidden_size is 2^91.
      {"experts overflow",
       {{"enable_moe_block", true},
        {"num_experts", big},
        {"top_k_experts", 2},
        {"moe_intermediate_size", big},
        {"hidden_size", big}},
       "experts.gate_up_proj [num_experts, 2 x moe_intermediate_size, hidden_size] (cfg.json): element count "
       "overflows"},
      // Fits in 64 bits (2^62 parameters) but is not a plausible model.
      {"implausible total",
       {{"vocab_size", (std::int64_t{1} << 31) - 1}, {"hidden_size", (std::int64_t{1} << 31) - 1}},
       "parameters, more than 2^53: not a plausible Gemma 4 config"},
      // The doubled MLP width of KV-shared layers leaves an int.
      {"double-wide MLP",
       {{"intermediate_size", (std::int64_t{1} << 31) - 1},
        {"num_kv_shared_layers", 2},
        {"use_double_wide_mlp", true}},
       "MLP width 4294967294"},
  };
  for (const Case& c : cases) {
    Json doc = tiny_text();
    doc.update(c.patch);
    const std::string message = error_of(doc);
    EXPECT_NE(message.find(c.message), std::string::npos) << c.name << ": " << message;
    EXPECT_NE(message.find("cfg.json"), std::string::npos) << c.name << ": " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << c.name;
  }
  // The nested layout names text_config.
  Json nested = {{"model_type", "gemma4"}, {"text_config", tiny_text()}};
  nested["text_config"]["vocab_size"] = std::int64_t{1} << 57;
  EXPECT_NE(error_of(nested).find("vocab_size 144115188075855872 is larger than 2^31 - 1: not a plausible "
                                  "Gemma 4 config (cfg.json, text_config)"),
            std::string::npos)
      << error_of(nested);
  // The largest released configurations stay far inside the bounds.
  for (const char* name : {"gemma-4-26b-a4b.json", "gemma-4-31b.json", "gemma-4-e2b.json"})
    EXPECT_NO_THROW(load_config(test::source_path(std::string("tests/data/configs/") + name))) << name;
}

TEST(Config, InvalidJsonNamesTheFile) {
  try {
    parse_json_strict("{\"a\": [1, 2", "x/config.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("invalid JSON (x/config.json)"), std::string::npos) << e.what();
  }
}

TEST(Config, ReleasedConfigsResolve) {
  const ModelConfig m = load_config(test::source_path("tests/data/configs/gemma-4-26b-a4b.json"));
  const TextConfig& t = m.text;
  int full = 0;
  for (const LayerSpec& s : t.layers) {
    if (s.attention == AttentionKind::full) {
      ++full;
      EXPECT_EQ(s.head_dim, 512);
      EXPECT_EQ(s.num_kv_heads, 2);
      EXPECT_TRUE(s.k_eq_v);
      EXPECT_EQ(s.rope.rotated_pairs, 64);
    } else {
      EXPECT_EQ(s.head_dim, 256);
      EXPECT_EQ(s.num_kv_heads, 8);
      EXPECT_EQ(s.window, 1024);
    }
    EXPECT_TRUE(s.moe);
    EXPECT_EQ(s.mlp_width, 2112);
  }
  EXPECT_EQ(full, 5);
  const TextConfig e2b = load_config(test::source_path("tests/data/configs/gemma-4-e2b.json")).text;
  for (int i = 15; i < 35; ++i) {
    EXPECT_EQ(e2b.layers[i].kv_source, e2b.layers[i].attention == AttentionKind::full ? 14 : 13) << i;
    EXPECT_EQ(e2b.layers[i].mlp_width, 12288);
  }
  const TextConfig e4b = load_config(test::source_path("tests/data/configs/gemma-4-e4b.json")).text;
  for (int i = 24; i < 42; ++i)
    EXPECT_EQ(e4b.layers[i].kv_source, e4b.layers[i].attention == AttentionKind::full ? 23 : 22) << i;
}

}  // namespace
}  // namespace g4
