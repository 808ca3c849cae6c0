// gemma4_config.h: a Gemma 4 model's configuration, resolved: one LayerSpec per layer, every default applied.
//
// Plain data, read by every layer of g4moe; io/config.h fills it from a config.json. Invariant: a ModelConfig
// that io's parse_config returns is self-consistent (every check of validate_text_config holds).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace g4 {

enum class AttentionKind { sliding, full };
std::string_view attention_kind_name(AttentionKind kind);  // "sliding_attention" / "full_attention"

struct RopeSpec {
  std::string type = "default";  // "default" or "proportional"
  double theta = 10000.0;
  double partial_rotary_factor = 1.0;  // proportional only
  double factor = 1.0;                 // divides inv_freq (proportional only)
  int head_dim = 0;                    // the exponent's denominator
  int rotated_pairs = 0;  // inv_freq entries that are non-zero; the other head_dim/2 - this are 0
};

struct LayerSpec {
  int index = 0;
  AttentionKind attention = AttentionKind::sliding;
  int head_dim = 0;
  int num_q_heads = 0;
  int num_kv_heads = 0;
  bool k_eq_v = false;  // full layer of a k_eq_v model: no v_proj, V is the raw K projection
  int window = 0;       // sliding layers: key j visible to query i iff i - window < j <= i; 0 = unlimited
  RopeSpec rope;
  int kv_source = -1;             // KV-shared layer: the layer whose K/V it reads; -1 = computes its own
  bool stores_shared_kv = false;  // the last non-shared layer of its kind, read by shared layers
  int mlp_width = 0;  // dense GEGLU MLP width (doubled on KV-shared layers with use_double_wide_mlp)
  bool moe = false;
  int ple_width = 0;  // hidden_size_per_layer_input, 0 = no per-layer input
};

struct TextConfig {
  std::int64_t vocab_size = 262144;
  std::int64_t hidden_size = 2304;
  std::int64_t intermediate_size = 9216;
  int num_hidden_layers = 30;
  int num_attention_heads = 8;
  int num_key_value_heads = 4;
  int head_dim = 256;
  std::string hidden_activation = "gelu_pytorch_tanh";
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = true;
  std::optional<double> final_logit_softcapping;
  int sliding_window = 512;
  bool attention_k_eq_v = false;
  int num_kv_shared_layers = 0;
  bool enable_moe_block = false;
  bool use_double_wide_mlp = false;
  int num_experts = 0;
  int top_k_experts = 0;
  std::int64_t moe_intermediate_size = 0;
  std::int64_t vocab_size_per_layer_input = 262144;
  int hidden_size_per_layer_input = 256;
  std::string use_bidirectional_attention;  // "", "vision" or "all"
  std::int64_t pad_token_id = 0;
  std::vector<AttentionKind> layer_types;
  std::vector<LayerSpec> layers;
};

// The vision tower (Gemma4VisionConfig; hf_transformers_gemma4.md §4.3), resolved with transformers'
// defaults.
struct VisionConfig {
  int hidden_size = 768;
  int intermediate_size = 3072;
  int num_hidden_layers = 16;
  int num_attention_heads = 12;
  int num_key_value_heads = 12;
  int head_dim = 64;  // a multiple of 4: the 2-D RoPE rotates head_dim/2 channels per axis
  int patch_size = 16;
  int pooling_kernel_size = 3;
  int position_embedding_size = 10 * 1024;
  double rms_norm_eps = 1e-6;
  double rope_theta = 100.0;
  bool standardize = false;
  bool use_clipped_linears = false;
  std::string hidden_activation = "gelu_pytorch_tanh";
};

struct ModelConfig {
  std::string path;           // where it was read from (for messages)
  std::string model_type;     // "gemma4" or "gemma4_text"
  std::string architecture;   // "Gemma4ForConditionalGeneration" or "Gemma4ForCausalLM"
  bool nested = false;        // text fields live under "text_config"
  std::string text_prefix;    // weight-name prefix of the text model: "model.language_model." or "model."
  std::string weights_dtype;  // "bfloat16", "float32", ... as the config says, or ""
  TextConfig text;
  bool has_vision_config = false;  // the audio tower is not read yet; its presence is reported
  bool has_audio_config = false;
  std::optional<VisionConfig> vision;  // when the config has a vision_config
  // An image's tokens (Gemma4Config: boi_token_id, image_token_id, eoi_token_id): <|image>, one <|image|>
  // placeholder per soft token, <image|>. Read with the vision_config (-1 without one), each below
  // vocab_size.
  std::int64_t image_begin_id = -1, image_token_id = -1, image_end_id = -1;
};

}  // namespace g4
