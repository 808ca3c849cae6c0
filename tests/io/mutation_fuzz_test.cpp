// Deterministic mutation fuzzing of the parsers of outside input (safetensors header, config.json). Each
// mutated input must either parse or raise a g4::Error with a one-line message: never crash, never throw
// anything else. Bounded: a fixed number of mutations from a fixed seed (runs in seconds, also under ASan).
#include <gtest/gtest.h>

#include <random>
#include <span>

#include "core/error.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "test_paths.h"

namespace g4 {
namespace {

std::string mutate(const std::string& input, std::mt19937& rng) {
  std::string s = input;
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits && !s.empty(); ++e) {
    const std::size_t at = rng() % s.size();
    switch (rng() % 6) {
      case 0:
        s[at] = static_cast<char>(rng());
        break;  // random byte
      case 1:
        s.erase(at, 1 + rng() % 8);
        break;  // delete a run
      case 2:
        s.insert(at, 1, "{}[]\":,0123456789-e."[rng() % 20]);
        break;  // JSON-ish byte
      case 3:
        s.resize(at);
        break;  // truncate
      case 4:
        s.insert(at, s.substr(rng() % s.size(), 1 + rng() % 16));
        break;  // duplicate a slice
      case 5:
        s[at] = static_cast<char>(s[at] ^ (1 << (rng() % 8)));
        break;  // bit flip
    }
  }
  return s;
}

std::string valid_image() {
  const std::string dir = test::scratch_dir("fuzz_seed");
  write_safetensors(dir + "/seed.safetensors", {{"a.weight", Tensor(DType::bf16, {3, 4})},
                                                {"b", Tensor(DType::f32, {2})},
                                                {"c", Tensor(DType::i64, {1, 1, 2})}});
  std::FILE* f = std::fopen((dir + "/seed.safetensors").c_str(), "rb");
  std::string bytes;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) bytes.append(buf, n);
  std::fclose(f);
  return bytes;
}

TEST(MutationFuzz, SafetensorsHeaderNeverCrashes) {
  const std::string seed = valid_image();
  std::mt19937 rng(12345);
  int accepted = 0, rejected = 0;
  for (int i = 0; i < 20000; ++i) {
    const std::string input = mutate(seed, rng);
    try {
      parse_safetensors_image(std::as_bytes(std::span(input.data(), input.size())), "fuzz", nullptr, nullptr);
      ++accepted;
    } catch (const Error& e) {
      ASSERT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 1000);  // the mutations do reach the error paths
  EXPECT_GT(accepted, 0);     // and some still parse (e.g. edits inside the data section)
}

TEST(MutationFuzz, ConfigParserNeverCrashes) {
  const std::string seed =
      R"({"model_type":"gemma4_text","vocab_size":96,"hidden_size":32,"intermediate_size":20,
    "num_hidden_layers":4,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"sliding_window":4,
    "enable_moe_block":true,"num_experts":8,"top_k_experts":2,"moe_intermediate_size":12,"attention_k_eq_v":true,
    "layer_types":["sliding_attention","sliding_attention","sliding_attention","full_attention"],
    "per_layer_config":{"3":{"head_dim":32,"num_key_value_heads":1}},"num_kv_shared_layers":1,
    "rope_parameters":{"sliding_attention":{"rope_type":"default","rope_theta":10000.0},
    "full_attention":{"rope_type":"proportional","partial_rotary_factor":0.25,"rope_theta":1000000.0}}})";
  std::mt19937 rng(777);
  int accepted = 0, rejected = 0;
  for (int i = 0; i < 20000; ++i) {
    const std::string input = mutate(seed, rng);
    try {
      parse_config(parse_json_strict(input, "fuzz.json"), "fuzz.json");
      ++accepted;
    } catch (const Error& e) {
      ASSERT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 1000);
  EXPECT_GT(accepted, 10);
}

}  // namespace
}  // namespace g4
