#include "io/config.h"

#include <cmath>
#include <filesystem>
#include <initializer_list>
#include <map>

#include "core/checked_math.h"
#include "core/error.h"

namespace g4 {

namespace {

// Bounds on what a config may ask for. Every integer field is a dimension, a count or a token id; above
// 2^31 - 1 none is plausible (the released models have vocabularies of 262144), and the bound keeps each one
// in an int and every product of two in an int64. The parameter total bound (2^53, about 9e15) keeps counts
// exact in a double and byte sizes far from 2^64.
constexpr std::int64_t kMaxDimension = 2147483647;  // 2^31 - 1
constexpr std::int64_t kMaxParameters = std::int64_t{1} << 53;

// An integer field's value, refused when it is out of the range any field may take (which also rules out a
// silent truncation into an int field).
std::int64_t int_field(const Json& value, const char* key, const std::string& where) {
  const std::int64_t v = json_int(value, key, where);
  check(v <= kMaxDimension, key, " ", v, " is larger than 2^31 - 1: not a plausible Gemma 4 config (", where,
        ")");
  check(v >= -kMaxDimension, key, " ", v, " is out of range (", where, ")");
  return v;
}

// Reads an optional integer field into `out`; null counts as absent (HF writes nulls for unset fields).
template <class Int>
void read_int(const Json& obj, const char* key, Int& out, const std::string& where) {
  auto it = obj.find(key);
  if (it != obj.end() && !it->is_null()) out = static_cast<Int>(int_field(*it, key, where));
}

void read_double(const Json& obj, const char* key, double& out, const std::string& where) {
  auto it = obj.find(key);
  if (it != obj.end() && !it->is_null()) out = json_number(*it, key, where);
}

void read_bool(const Json& obj, const char* key, bool& out, const std::string& where) {
  auto it = obj.find(key);
  if (it != obj.end() && !it->is_null()) out = json_bool(*it, key, where);
}

AttentionKind parse_attention_kind(const Json& value, const std::string& where) {
  const std::string name = json_string(value, "layer_types", where);
  if (name == "sliding_attention") return AttentionKind::sliding;
  if (name == "full_attention") return AttentionKind::full;
  fail("unknown layer type \"", name, "\" in layer_types (", where, ")");
}

RopeSpec parse_rope(const Json& params, AttentionKind kind, const std::string& where) {
  const std::string at = where + ", rope_parameters." + std::string(attention_kind_name(kind));
  check(params.is_object(), "rope parameters must be an object (", at, ")");
  RopeSpec rope;
  rope.type = json_string(json_require(params, "rope_type", at), "rope_type", at);
  check(rope.type == "default" || rope.type == "proportional", "unsupported rope_type \"", rope.type,
        "\" (supported: default, proportional) (", at, ")");
  rope.theta = json_number(json_require(params, "rope_theta", at), "rope_theta", at);
  check(rope.theta > 0, "rope_theta must be positive (", at, ")");
  if (rope.type == "proportional") {
    read_double(params, "partial_rotary_factor", rope.partial_rotary_factor, at);
    read_double(params, "factor", rope.factor, at);
    check(rope.partial_rotary_factor >= 0 && rope.partial_rotary_factor <= 1,
          "partial_rotary_factor must be in [0, 1] (", at, ")");
    check(rope.factor > 0, "rope factor must be positive (", at, ")");
  }
  return rope;
}

void parse_text_fields(const Json& t, TextConfig& c, const std::string& where, ModelConfig& model) {
  check(t.is_object(), "text config must be a JSON object (", where, ")");
  read_int(t, "vocab_size", c.vocab_size, where);
  read_int(t, "hidden_size", c.hidden_size, where);
  read_int(t, "intermediate_size", c.intermediate_size, where);
  read_int(t, "num_hidden_layers", c.num_hidden_layers, where);
  read_int(t, "num_attention_heads", c.num_attention_heads, where);
  read_int(t, "num_key_value_heads", c.num_key_value_heads, where);
  read_int(t, "head_dim", c.head_dim, where);
  if (auto it = t.find("hidden_activation"); it != t.end() && !it->is_null())
    c.hidden_activation = json_string(*it, "hidden_activation", where);
  read_double(t, "rms_norm_eps", c.rms_norm_eps, where);
  read_bool(t, "tie_word_embeddings", c.tie_word_embeddings, where);
  if (auto it = t.find("final_logit_softcapping"); it != t.end() && !it->is_null())
    c.final_logit_softcapping = json_number(*it, "final_logit_softcapping", where);
  read_int(t, "sliding_window", c.sliding_window, where);
  read_bool(t, "attention_k_eq_v", c.attention_k_eq_v, where);
  read_int(t, "num_kv_shared_layers", c.num_kv_shared_layers, where);
  read_bool(t, "enable_moe_block", c.enable_moe_block, where);
  read_bool(t, "use_double_wide_mlp", c.use_double_wide_mlp, where);
  read_int(t, "num_experts", c.num_experts, where);
  read_int(t, "top_k_experts", c.top_k_experts, where);
  read_int(t, "expert_intermediate_size", c.moe_intermediate_size, where);  // older name
  read_int(t, "moe_intermediate_size", c.moe_intermediate_size, where);
  read_int(t, "vocab_size_per_layer_input", c.vocab_size_per_layer_input, where);
  read_int(t, "hidden_size_per_layer_input", c.hidden_size_per_layer_input, where);
  read_int(t, "pad_token_id", c.pad_token_id, where);
  if (auto it = t.find("use_bidirectional_attention"); it != t.end() && !it->is_null())
    c.use_bidirectional_attention = json_string(*it, "use_bidirectional_attention", where);
  if (auto it = t.find("dtype"); it != t.end() && it->is_string())
    model.weights_dtype = it->get<std::string>();
  if (auto it = t.find("torch_dtype"); it != t.end() && it->is_string() && model.weights_dtype.empty())
    model.weights_dtype = it->get<std::string>();

  check(c.num_hidden_layers > 0 && c.num_hidden_layers <= 4096, "num_hidden_layers must be in 1..4096, got ",
        c.num_hidden_layers, " (", where, ")");
  // layer_types: default 5 sliding : 1 full; the last layer is always forced to full attention.
  c.layer_types.clear();
  if (auto it = t.find("layer_types"); it != t.end() && !it->is_null()) {
    check(it->is_array(), "layer_types must be a list (", where, ")");
    check(static_cast<int>(it->size()) == c.num_hidden_layers, "layer_types has ", it->size(),
          " entries but num_hidden_layers is ", c.num_hidden_layers, " (", where, ")");
    for (const Json& v : *it) c.layer_types.push_back(parse_attention_kind(v, where));
  } else {
    for (int i = 0; i < c.num_hidden_layers; ++i)
      c.layer_types.push_back((i + 1) % 6 == 0 ? AttentionKind::full : AttentionKind::sliding);
  }
  c.layer_types.back() = AttentionKind::full;
}

// Per-layer overrides of head_dim / num_key_value_heads, from either config form.
std::map<int, std::pair<int, int>> resolve_overrides(const Json& t, const TextConfig& c,
                                                     const std::string& where) {
  std::map<int, std::pair<int, int>> out;  // layer -> (head_dim, kv_heads)
  auto plc = t.find("per_layer_config");
  if (plc != t.end() && !plc->is_null()) {
    check(plc->is_object(), "per_layer_config must be an object keyed by layer index (", where, ")");
    for (auto it = plc->begin(); it != plc->end(); ++it) {
      int layer = -1;
      try {
        std::size_t used = 0;
        layer = std::stoi(it.key(), &used);
        if (used != it.key().size()) layer = -1;
      } catch (const std::exception&) {
        layer = -1;
      }
      check(layer >= 0 && layer < c.num_hidden_layers, "per_layer_config key \"", it.key(),
            "\" is not a layer index in 0..", c.num_hidden_layers - 1, " (", where, ")");
      const std::string at = where + ", per_layer_config." + it.key();
      check(it->is_object(), "per-layer override must be an object (", at, ")");
      std::pair<int, int> v{c.head_dim, c.num_key_value_heads};
      for (auto f = it->begin(); f != it->end(); ++f) {
        if (f.key() == "head_dim") {
          v.first = static_cast<int>(int_field(*f, "head_dim", at));
        } else if (f.key() == "num_key_value_heads") {
          v.second = static_cast<int>(int_field(*f, "num_key_value_heads", at));
        } else {
          fail("unsupported per-layer override \"", f.key(), "\" (", at, ")");
        }
      }
      out[layer] = v;
    }
    return out;
  }
  int global_head_dim = 512;
  read_int(t, "global_head_dim", global_head_dim, where);
  std::optional<int> global_kv;
  if (auto it = t.find("num_global_key_value_heads"); it != t.end() && !it->is_null())
    global_kv = static_cast<int>(int_field(*it, "num_global_key_value_heads", where));
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    if (c.layer_types[i] != AttentionKind::full) continue;
    const int kv = (c.attention_k_eq_v && global_kv) ? *global_kv : c.num_key_value_heads;
    out[i] = {global_head_dim, kv};
  }
  return out;
}

void resolve_layers(const Json& t, TextConfig& c, const std::string& where) {
  // RoPE per attention kind.
  std::map<AttentionKind, RopeSpec> rope;
  auto rp = t.find("rope_parameters");
  if (rp == t.end() || rp->is_null()) {
    rope[AttentionKind::sliding] = RopeSpec{"default", 10000.0, 1.0, 1.0, 0, 0};
    rope[AttentionKind::full] = RopeSpec{"proportional", 1000000.0, 0.25, 1.0, 0, 0};
  } else {
    check(rp->is_object(), "rope_parameters must be an object keyed by layer type (", where, ")");
    for (AttentionKind kind : c.layer_types) {
      if (rope.count(kind)) continue;
      auto it = rp->find(std::string(attention_kind_name(kind)));
      check(it != rp->end(), "rope_parameters has no entry for ", attention_kind_name(kind), " (", where,
            ")");
      rope[kind] = parse_rope(*it, kind, where);
    }
  }
  const auto overrides = resolve_overrides(t, c, where);
  const int first_shared = c.num_hidden_layers - c.num_kv_shared_layers;
  c.layers.clear();
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    LayerSpec s;
    s.index = i;
    s.attention = c.layer_types[i];
    s.head_dim = c.head_dim;
    s.num_kv_heads = c.num_key_value_heads;
    if (auto it = overrides.find(i); it != overrides.end()) std::tie(s.head_dim, s.num_kv_heads) = it->second;
    s.num_q_heads = c.num_attention_heads;
    s.k_eq_v = c.attention_k_eq_v && s.attention == AttentionKind::full;
    s.window = s.attention == AttentionKind::sliding ? c.sliding_window : 0;
    s.rope = rope[s.attention];
    const bool shared = i >= first_shared;
    const std::int64_t mlp_width =
        c.intermediate_size * ((c.use_double_wide_mlp && shared && first_shared > 0) ? 2 : 1);
    check(mlp_width <= kMaxDimension, "layer ", i, ": MLP width ", mlp_width,
          " (intermediate_size, doubled by use_double_wide_mlp) is larger than 2^31 - 1: not a plausible "
          "Gemma 4 config (",
          where, ")");
    s.mlp_width = static_cast<int>(mlp_width);
    s.moe = c.enable_moe_block;
    s.ple_width = c.hidden_size_per_layer_input;
    if (shared) {
      for (int j = first_shared - 1; j >= 0; --j) {
        if (c.layer_types[j] == s.attention) {
          s.kv_source = j;
          break;
        }
      }
      check(s.kv_source >= 0, "layer ", i, " shares K/V but no earlier non-shared layer has type ",
            attention_kind_name(s.attention), " (", where, ")");
    }
    c.layers.push_back(s);
  }
  for (LayerSpec& s : c.layers)
    if (s.kv_source >= 0) c.layers[s.kv_source].stores_shared_kv = true;
  // The RoPE tables are built once per attention kind from the first layer of that kind (as transformers
  // does).
  for (AttentionKind kind : {AttentionKind::sliding, AttentionKind::full}) {
    int dim = -1;
    for (LayerSpec& s : c.layers) {
      if (s.attention != kind) continue;
      if (dim < 0) dim = s.head_dim;
      check(s.head_dim == dim, "layers of type ", attention_kind_name(kind), " have different head_dim (",
            dim, " and ", s.head_dim, " at layer ", s.index, "); RoPE needs one (", where, ")");
      s.rope.head_dim = dim;
      s.rope.rotated_pairs = s.rope.type == "proportional"
                                 ? static_cast<int>(s.rope.partial_rotary_factor * dim / 2.0)
                                 : dim / 2;
    }
  }
}

// Every parameter tensor's element count must fit in an int64 and their total must be plausible, so that the
// shapes weight_layout.cpp derives, the parameter counts and the byte sizes of the weights (8 bytes an
// element at most) cannot overflow. The tensors mirror expected_text_tensors (model/weight_layout.cpp); the
// total is an upper bound of what it lists (it counts the layer scalars and the K/V tensors of shared
// layers).
void check_parameter_sizes(const TextConfig& c, const std::string& where) {
  std::int64_t total = 0;
  auto tensor = [&](const char* name, std::initializer_list<std::int64_t> dims, std::int64_t copies = 1) {
    const std::int64_t numel = checked_numel(dims, name, " (", where, ")");
    total = checked_add(total, checked_mul(numel, copies, name, " (", where, ")"), "parameter count (", where,
                        ")");
  };
  const std::int64_t V = c.vocab_size, H = c.hidden_size, P = c.hidden_size_per_layer_input;
  const std::int64_t LP = checked_mul(std::int64_t{c.num_hidden_layers}, P,
                                      "num_hidden_layers x hidden_size_per_layer_input (", where, ")");
  tensor("embed_tokens [vocab_size, hidden_size]", {V, H});
  if (!c.tie_word_embeddings) tensor("lm_head [vocab_size, hidden_size]", {V, H});
  if (P > 0) {
    tensor(
        "embed_tokens_per_layer [vocab_size_per_layer_input, num_hidden_layers x "
        "hidden_size_per_layer_input]",
        {c.vocab_size_per_layer_input, LP});
    tensor("per_layer_model_projection [num_hidden_layers x hidden_size_per_layer_input, hidden_size]",
           {LP, H});
  }
  tensor("norms [hidden_size + hidden_size_per_layer_input]", {checked_add(H, P, "norms (", where, ")")});
  for (const LayerSpec& s : c.layers) {
    const std::int64_t D = s.head_dim;
    const std::int64_t q =
        checked_mul(std::int64_t{s.num_q_heads}, D, "num_attention_heads x head_dim (", where, ")");
    const std::int64_t kv =
        checked_mul(std::int64_t{s.num_kv_heads}, D, "num_key_value_heads x head_dim (", where, ")");
    tensor("q_proj and o_proj [num_attention_heads x head_dim, hidden_size]", {q, H}, 2);
    tensor("k_proj and v_proj [num_key_value_heads x head_dim, hidden_size]", {kv, H}, 2);
    tensor("layer norms [hidden_size]", {H}, 8);
    tensor("q_norm and k_norm [head_dim]", {D}, 2);
    tensor("MLP projections [intermediate_size, hidden_size]", {s.mlp_width, H}, 3);
    if (s.moe) {
      const std::int64_t E = c.num_experts, I = c.moe_intermediate_size;
      tensor("router [num_experts, hidden_size]", {E, H});
      tensor("router scales [num_experts + hidden_size]", {checked_add(E, H, "router scales (", where, ")")});
      tensor("experts.gate_up_proj [num_experts, 2 x moe_intermediate_size, hidden_size]", {E, 2 * I, H});
      tensor("experts.down_proj [num_experts, hidden_size, moe_intermediate_size]", {E, H, I});
    }
    if (s.ple_width > 0)
      tensor("per-layer input projections [hidden_size_per_layer_input, hidden_size]", {s.ple_width, H}, 2);
    tensor("layer_scalar", {1});
  }
  check(total <= kMaxParameters, "the text model would have ", total,
        " parameters, more than 2^53: not a plausible Gemma 4 config (", where, ")");
  // With total <= 2^53 no byte size of the weights can overflow; checked all the same, at 8 bytes an element.
  checked_nbytes(total, 8, "byte size of the weights (", where, ")");
}

}  // namespace

void validate_text_config(const TextConfig& c, const std::string& where) {
  auto positive = [&](std::int64_t v, const char* name) {
    check(v > 0, name, " must be positive, got ", v, " (", where, ")");
  };
  positive(c.vocab_size, "vocab_size");
  positive(c.hidden_size, "hidden_size");
  positive(c.intermediate_size, "intermediate_size");
  positive(c.num_attention_heads, "num_attention_heads");
  positive(c.num_key_value_heads, "num_key_value_heads");
  positive(c.head_dim, "head_dim");
  positive(c.sliding_window, "sliding_window");
  check(c.rms_norm_eps > 0, "rms_norm_eps must be positive (", where, ")");
  check(c.hidden_activation == "gelu_pytorch_tanh", "unsupported hidden_activation \"", c.hidden_activation,
        "\" (Gemma 4 uses gelu_pytorch_tanh) (", where, ")");
  check(c.use_bidirectional_attention.empty() || c.use_bidirectional_attention == "vision",
        "use_bidirectional_attention \"", c.use_bidirectional_attention,
        "\" is not supported (only null or \"vision\") (", where, ")");
  if (c.final_logit_softcapping)
    check(*c.final_logit_softcapping > 0, "final_logit_softcapping must be positive (", where, ")");
  check(c.num_kv_shared_layers >= 0 && c.num_kv_shared_layers < c.num_hidden_layers,
        "num_kv_shared_layers must be in 0..", c.num_hidden_layers - 1, ", got ", c.num_kv_shared_layers,
        " (", where, ")");
  check(c.hidden_size_per_layer_input >= 0, "hidden_size_per_layer_input must not be negative (", where, ")");
  if (c.hidden_size_per_layer_input > 0) positive(c.vocab_size_per_layer_input, "vocab_size_per_layer_input");
  if (c.enable_moe_block) {
    positive(c.num_experts, "num_experts");
    positive(c.top_k_experts, "top_k_experts");
    positive(c.moe_intermediate_size, "moe_intermediate_size");
    check(c.top_k_experts <= c.num_experts, "top_k_experts (", c.top_k_experts,
          ") is larger than num_experts (", c.num_experts, ") (", where, ")");
  }
  check(static_cast<int>(c.layer_types.size()) == c.num_hidden_layers, "layer_types has ",
        c.layer_types.size(), " entries but num_hidden_layers is ", c.num_hidden_layers, " (", where, ")");
  for (const LayerSpec& s : c.layers) {
    check(s.head_dim > 0 && s.head_dim % 2 == 0, "layer ", s.index,
          ": head_dim must be positive and even, got ", s.head_dim, " (", where, ")");
    check(s.num_kv_heads > 0, "layer ", s.index, ": num_key_value_heads must be positive (", where, ")");
    check(s.num_q_heads % s.num_kv_heads == 0, "layer ", s.index, ": num_attention_heads (", s.num_q_heads,
          ") is not divisible by its key/value heads (", s.num_kv_heads, ") (", where, ")");
  }
  // A TextConfig built by hand has not been through int_field: bound its 64-bit fields here too.
  for (auto [name, v] : {std::pair<const char*, std::int64_t>{"vocab_size", c.vocab_size},
                         {"hidden_size", c.hidden_size},
                         {"intermediate_size", c.intermediate_size},
                         {"moe_intermediate_size", c.moe_intermediate_size},
                         {"vocab_size_per_layer_input", c.vocab_size_per_layer_input}})
    check(v <= kMaxDimension, name, " ", v, " is larger than 2^31 - 1: not a plausible Gemma 4 config (",
          where, ")");
  check_parameter_sizes(c, where);
}

// vision_config, over transformers' defaults; sizes checked so that the tower's shapes are plausible.
VisionConfig parse_vision_config(const Json& v, const std::string& where) {
  check(v.is_object(), "vision_config must be an object or null (", where, ")");
  VisionConfig c;
  read_int(v, "hidden_size", c.hidden_size, where);
  read_int(v, "intermediate_size", c.intermediate_size, where);
  read_int(v, "num_hidden_layers", c.num_hidden_layers, where);
  read_int(v, "num_attention_heads", c.num_attention_heads, where);
  read_int(v, "num_key_value_heads", c.num_key_value_heads, where);
  read_int(v, "head_dim", c.head_dim, where);
  read_int(v, "patch_size", c.patch_size, where);
  read_int(v, "pooling_kernel_size", c.pooling_kernel_size, where);
  read_int(v, "position_embedding_size", c.position_embedding_size, where);
  read_double(v, "rms_norm_eps", c.rms_norm_eps, where);
  read_bool(v, "standardize", c.standardize, where);
  read_bool(v, "use_clipped_linears", c.use_clipped_linears, where);
  if (auto a = v.find("hidden_activation"); a != v.end() && !a->is_null())
    c.hidden_activation = json_string(*a, "hidden_activation", where);
  if (auto r = v.find("rope_parameters"); r != v.end() && r->is_object())
    read_double(*r, "rope_theta", c.rope_theta, where);
  for (auto [name, value] : {std::pair<const char*, int>{"hidden_size", c.hidden_size},
                             {"intermediate_size", c.intermediate_size},
                             {"num_attention_heads", c.num_attention_heads},
                             {"num_key_value_heads", c.num_key_value_heads},
                             {"patch_size", c.patch_size},
                             {"pooling_kernel_size", c.pooling_kernel_size},
                             {"position_embedding_size", c.position_embedding_size}})
    check(value >= 1, "vision_config.", name, " must be >= 1, got ", value, " (", where, ")");
  check(c.num_hidden_layers >= 0, "vision_config.num_hidden_layers must be >= 0 (", where, ")");
  check(c.head_dim >= 4 && c.head_dim % 4 == 0,
        "vision_config.head_dim must be a positive multiple of 4 (the 2-D RoPE), got ", c.head_dim, " (",
        where, ")");
  check(c.num_attention_heads % c.num_key_value_heads == 0, "vision_config.num_attention_heads (",
        c.num_attention_heads, ") must be a multiple of num_key_value_heads (", c.num_key_value_heads, ") (",
        where, ")");
  check(c.hidden_activation == "gelu_pytorch_tanh", "vision_config.hidden_activation \"", c.hidden_activation,
        "\" is not supported (only gelu_pytorch_tanh) (", where, ")");
  check(std::isfinite(c.rope_theta) && c.rope_theta > 0, "vision_config rope_theta must be > 0 (", where,
        ")");
  check(c.rms_norm_eps > 0 && std::isfinite(c.rms_norm_eps), "vision_config.rms_norm_eps must be > 0 (",
        where, ")");
  return c;
}

ModelConfig parse_config(const Json& doc, const std::string& where) {
  check(doc.is_object(), "config must be a JSON object (", where, ")");
  ModelConfig m;
  m.path = where;
  m.model_type = json_string(json_require(doc, "model_type", where), "model_type", where);
  const Json* text = &doc;
  if (m.model_type == "gemma4") {
    m.nested = true;
    m.architecture = "Gemma4ForConditionalGeneration";
    m.text_prefix = "model.language_model.";
    auto it = doc.find("text_config");
    check(it != doc.end() && it->is_object(), "model_type gemma4 needs a \"text_config\" object (", where,
          ")");
    text = &*it;
    if (auto v = doc.find("vision_config"); v != doc.end() && !v->is_null()) {
      m.has_vision_config = true;
      m.vision = parse_vision_config(*v, where + ", vision_config");
      // transformers' defaults (Gemma4Config) where the file leaves them out.
      const auto id = [&](const char* key, std::int64_t fallback) {
        const auto it = doc.find(key);
        return it == doc.end() || it->is_null() ? fallback : json_int(*it, key, where);
      };
      m.image_begin_id = id("boi_token_id", 255999);
      m.image_token_id = id("image_token_id", 258880);
      m.image_end_id = id("eoi_token_id", 258882);
    }
    if (auto a = doc.find("audio_config"); a != doc.end()) m.has_audio_config = !a->is_null();
    if (auto d = doc.find("dtype"); d != doc.end() && d->is_string()) m.weights_dtype = d->get<std::string>();
  } else if (m.model_type == "gemma4_text") {
    m.architecture = "Gemma4ForCausalLM";
    m.text_prefix = "model.";
  } else {
    fail("unsupported model_type \"", m.model_type, "\" (expected gemma4 or gemma4_text) (", where, ")");
  }
  if (auto a = doc.find("architectures");
      a != doc.end() && a->is_array() && !a->empty() && (*a)[0].is_string())
    m.architecture = (*a)[0].get<std::string>();
  const std::string text_where = m.nested ? where + ", text_config" : where;
  parse_text_fields(*text, m.text, text_where, m);
  // The tie flag of a nested config lives at the top level too (transformers reads the top-level one).
  if (m.nested) read_bool(doc, "tie_word_embeddings", m.text.tie_word_embeddings, where);
  check(m.text.num_kv_shared_layers >= 0 && m.text.num_kv_shared_layers < m.text.num_hidden_layers,
        "num_kv_shared_layers must be in 0..", m.text.num_hidden_layers - 1, ", got ",
        m.text.num_kv_shared_layers, " (", text_where, ")");
  resolve_layers(*text, m.text, text_where);
  validate_text_config(m.text, text_where);
  return m;
}

ModelConfig load_config(const std::string& path) {
  std::string file = path;
  if (std::filesystem::is_directory(path)) file = (std::filesystem::path(path) / "config.json").string();
  check(std::filesystem::exists(file), "missing config.json: ", file);
  return parse_config(read_json_file(file), file);
}

}  // namespace g4
