// cmd_inspect.cpp: `g4moe inspect DIR [--json]`: the resolved architecture, parameter counts, bytes by
// dtype, and a check of the checkpoint's tensors against what the config implies. Exit 2 if any tensor is
// missing, unexpected or of the wrong shape.
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "cli/cli_common.h"
#include "core/checked_math.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "model/kv_cache.h"
#include "model/weight_layout.h"
#include "moe/state_dict_adapter.h"

namespace g4::cli {

namespace {

std::string rope_text(const RopeSpec& r) {
  std::ostringstream out;
  out << r.type << " theta=" << r.theta << " rotated " << 2 * r.rotated_pairs << "/" << r.head_dim;
  if (r.factor != 1.0) out << " factor=" << r.factor;
  return out.str();
}

// Layers with the same signature are shown as one row.
std::string layer_signature(const LayerSpec& s) {
  std::ostringstream out;
  out << attention_kind_name(s.attention) << s.head_dim << '/' << s.num_q_heads << '/' << s.num_kv_heads
      << '/' << s.k_eq_v << '/' << s.window << '/' << rope_text(s.rope) << '/' << (s.kv_source >= 0) << '/'
      << s.mlp_width << '/' << s.moe << '/' << s.ple_width;
  return out.str();
}

std::string ranges(const std::vector<int>& v) {
  std::ostringstream out;
  for (std::size_t i = 0; i < v.size();) {
    std::size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    out << (i ? "," : "") << v[i];
    if (j > i) out << '-' << v[j];
    i = j + 1;
  }
  return out.str();
}

Json layer_rows(const ModelConfig& m) {
  std::map<std::string, std::size_t> row_of;
  Json rows = Json::array();
  std::vector<std::vector<int>> members;
  for (const LayerSpec& s : m.text.layers) {
    const std::string sig = layer_signature(s);
    if (!row_of.count(sig)) {
      row_of[sig] = rows.size();
      members.emplace_back();
      Json r;
      r["attention"] = attention_kind_name(s.attention);
      r["head_dim"] = s.head_dim;
      r["q_heads"] = s.num_q_heads;
      r["kv_heads"] = s.num_kv_heads;
      r["k_eq_v"] = s.k_eq_v;
      r["window"] = s.window;
      r["rope"] = {{"type", s.rope.type},
                   {"theta", s.rope.theta},
                   {"rotated_dims", 2 * s.rope.rotated_pairs},
                   {"head_dim", s.rope.head_dim},
                   {"factor", s.rope.factor}};
      r["kv_shared"] = s.kv_source >= 0;
      r["mlp_width"] = s.mlp_width;
      r["moe"] = s.moe;
      r["ple_width"] = s.ple_width;
      rows.push_back(r);
    }
    members[row_of[sig]].push_back(s.index);
  }
  for (std::size_t i = 0; i < rows.size(); ++i) {
    rows[i]["layers"] = members[i];
    rows[i]["layer_ranges"] = ranges(members[i]);
    Json sources = Json::array();
    for (int l : members[i])
      if (m.text.layers[l].kv_source >= 0) sources.push_back(m.text.layers[l].kv_source);
    if (!sources.empty()) rows[i]["kv_sources"] = sources;
  }
  return rows;
}

struct TensorCheck {
  std::vector<std::string> missing, unexpected, wrong_shape, ignored;
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> bytes_by_dtype;  // dtype -> (bytes, tensors)
  std::int64_t other_modality_params = 0;
  std::int64_t checkpoint_params = 0;
  std::size_t tensors = 0;
};

bool is_other_modality(const std::string& name) {
  for (const char* p :
       {"model.vision_tower.", "model.embed_vision.", "model.audio_tower.", "model.embed_audio."})
    if (name.rfind(p, 0) == 0) return true;
  return false;
}

TensorCheck check_tensors(const ModelConfig& m, const Checkpoint& ckpt) {
  TensorCheck r;
  std::map<std::string, const ExpectedTensor*> expected;
  std::vector<std::string> names;
  for (const std::string& n : ckpt.names())
    if (n.rfind(m.text_prefix, 0) == 0) names.push_back(n);
  const auto layout = expected_text_tensors(m.text, detect_layout(names) == Layout::native);
  auto full_name = [&](const ExpectedTensor& t) {
    return t.name == "lm_head.weight" ? t.name : m.text_prefix + t.name;
  };
  for (const auto& t : layout) expected[full_name(t)] = &t;
  // The vision tower's tensors, checked like the text model's when the config describes the tower.
  std::vector<ExpectedTensor> vision;
  if (m.vision)
    for (auto& [name, shape] : expected_vision_tensors(*m.vision, m.text.hidden_size))
      vision.push_back({name, shape});
  for (const auto& t : vision) expected[t.name] = &t;
  std::set<std::string> seen;
  for (const std::string& name : ckpt.names()) {
    const TensorInfo& info = ckpt.info(name);
    // Header sizes are outside input: the reader checked each tensor, the sums are checked here.
    auto& b = r.bytes_by_dtype[std::string(dtype_name(info.dtype))];
    b.first = checked_add(b.first, static_cast<std::int64_t>(info.end - info.begin), "bytes of ",
                          dtype_name(info.dtype), " tensors (", ckpt.dir(), ")");
    b.second += 1;
    r.checkpoint_params =
        checked_add(r.checkpoint_params, shape_numel(info.shape), "parameter count (", ckpt.dir(), ")");
    ++r.tensors;
    if (is_other_modality(name))
      r.other_modality_params = checked_add(r.other_modality_params, shape_numel(info.shape),
                                            "vision/audio parameter count (", ckpt.dir(), ")");
    auto it = expected.find(name);
    if (it != expected.end()) {
      seen.insert(name);
      if (info.shape != it->second->shape)
        r.wrong_shape.push_back(name + " is " + shape_str(info.shape) + ", expected " +
                                shape_str(it->second->shape));
      continue;
    }
    // Other-modality tensors no config section describes (the audio tower) are counted, not checked.
    const bool described =
        m.vision && (name.rfind("model.vision_tower.", 0) == 0 || name.rfind("model.embed_vision.", 0) == 0);
    if (is_other_modality(name) && m.nested && !described) continue;
    const bool tied_head = name == "lm_head.weight" && m.text.tie_word_embeddings;
    const bool shared_kv = name.rfind(m.text_prefix, 0) == 0 &&
                           ignored_when_unexpected(m.text, name.substr(m.text_prefix.size()));
    if (tied_head || shared_kv) {
      r.ignored.push_back(name);
    } else {
      r.unexpected.push_back(name);
    }
  }
  for (const auto& [name, t] : expected)
    if (!seen.count(name)) r.missing.push_back(name);
  return r;
}

int run_inspect(const std::string& path, bool as_json) {
  namespace fs = std::filesystem;
  const ModelConfig m = load_config(path);
  const std::string dir = fs::is_directory(path) ? path : fs::path(path).parent_path().string();
  const bool has_weights = fs::exists(fs::path(dir) / "model.safetensors") ||
                           fs::exists(fs::path(dir) / "model.safetensors.index.json");
  const ParameterCounts counts = count_parameters(m.text);
  const TextConfig& t = m.text;

  Json report;
  report["path"] = path;
  report["architecture"] = m.architecture;
  report["model_type"] = m.model_type;
  report["text_prefix"] = m.text_prefix;
  report["text"] = {
      {"vocab_size", t.vocab_size},
      {"hidden_size", t.hidden_size},
      {"num_hidden_layers", t.num_hidden_layers},
      {"num_attention_heads", t.num_attention_heads},
      {"intermediate_size", t.intermediate_size},
      {"sliding_window", t.sliding_window},
      {"tie_word_embeddings", t.tie_word_embeddings},
      {"rms_norm_eps", t.rms_norm_eps},
      {"final_logit_softcapping", t.final_logit_softcapping ? Json(*t.final_logit_softcapping) : Json()},
      {"num_kv_shared_layers", t.num_kv_shared_layers}};
  if (t.enable_moe_block)
    report["moe"] = {{"num_experts", t.num_experts},
                     {"top_k", t.top_k_experts},
                     {"moe_intermediate_size", t.moe_intermediate_size}};
  report["has_vision_config"] = m.has_vision_config;
  report["has_audio_config"] = m.has_audio_config;
  report["layers"] = layer_rows(m);
  report["parameters"] = {{"total", counts.total},
                          {"active_per_token", counts.active_per_token},
                          {"embeddings", counts.embeddings},
                          {"per_layer_embeddings", counts.per_layer_embeddings},
                          {"experts", counts.experts}};
  // The KV cache one bf16 sequence needs (model/kv_cache.h: sliding layers keep their window, KV-shared
  // layers nothing), at a few context lengths.
  Json kv = Json::object();
  for (const std::int64_t context : {4096, 32768, 131072})
    kv[std::to_string(context)] = KvCache::bytes_needed(t, {context}, DType::bf16);
  report["kv_cache_bf16_bytes"] = kv;
  int status = 0;
  TensorCheck tc;
  if (has_weights) {
    const Checkpoint ckpt = Checkpoint::open(dir);
    tc = check_tensors(m, ckpt);
    Json by_dtype = Json::object();
    for (const auto& [dtype, b] : tc.bytes_by_dtype)
      by_dtype[dtype] = {{"bytes", b.first}, {"tensors", b.second}};
    report["checkpoint"] = {{"files", ckpt.files().size()},
                            {"tensors", tc.tensors},
                            {"parameters", tc.checkpoint_params},
                            {"other_modality_parameters", tc.other_modality_params},
                            {"bytes_by_dtype", by_dtype},
                            {"missing", tc.missing},
                            {"unexpected", tc.unexpected},
                            {"wrong_shape", tc.wrong_shape},
                            {"ignored", tc.ignored}};
    if (!tc.missing.empty() || !tc.unexpected.empty() || !tc.wrong_shape.empty()) status = 2;
  } else {
    report["checkpoint"] = nullptr;
  }

  if (as_json) {
    std::cout << report.dump(2) << "\n";
  } else {
    std::cout << "model: " << m.architecture << " (model_type " << m.model_type << "), text weights under \""
              << m.text_prefix << "\"\n";
    std::cout << "text: hidden " << t.hidden_size << ", " << t.num_hidden_layers << " layers, vocab "
              << t.vocab_size << ", " << t.num_attention_heads << " query heads, window " << t.sliding_window
              << ", soft-cap "
              << (t.final_logit_softcapping ? Json(*t.final_logit_softcapping).dump() : "none")
              << (t.tie_word_embeddings ? ", tied head" : ", untied head") << "\n";
    if (t.enable_moe_block)
      std::cout << "moe: " << t.num_experts << " experts of width " << t.moe_intermediate_size << ", top-"
                << t.top_k_experts << ", beside the dense MLP in every layer\n";
    std::cout << "layers:\n";
    std::printf("  %-8s %4s %4s %4s %4s %6s %-38s %-10s %6s %-4s %4s  %s\n", "kind", "hdim", "q", "kv", "k=v",
                "window", "rope", "kv_shared", "mlp", "moe", "ple", "layers");
    std::cout.flush();
    for (const Json& r : report["layers"]) {
      std::string kind = r["attention"] == "sliding_attention" ? "sliding" : "full";
      std::string shared = r["kv_shared"].get<bool>() ? "from " + r["kv_sources"][0].dump() : "-";
      const RopeSpec rope{
          r["rope"]["type"],   r["rope"]["theta"],    0,
          r["rope"]["factor"], r["rope"]["head_dim"], r["rope"]["rotated_dims"].get<int>() / 2};
      std::printf("  %-8s %4d %4d %4d %4s %6d %-38s %-10s %6d %-4s %4d  %s\n", kind.c_str(),
                  r["head_dim"].get<int>(), r["q_heads"].get<int>(), r["kv_heads"].get<int>(),
                  r["k_eq_v"].get<bool>() ? "yes" : "no", r["window"].get<int>(), rope_text(rope).c_str(),
                  shared.c_str(), r["mlp_width"].get<int>(), r["moe"].get<bool>() ? "yes" : "no",
                  r["ple_width"].get<int>(), r["layer_ranges"].get<std::string>().c_str());
    }
    std::fflush(stdout);
    std::cout << "parameters: " << human_count(counts.total) << " total (" << counts.total << "), "
              << human_count(counts.active_per_token) << " active per token (" << counts.active_per_token
              << "); embeddings " << human_count(counts.embeddings);
    if (counts.per_layer_embeddings)
      std::cout << ", per-layer embeddings " << human_count(counts.per_layer_embeddings);
    if (counts.experts) std::cout << ", experts " << human_count(counts.experts);
    std::cout << "\nKV cache per sequence (bf16):";
    for (const char* context : {"4096", "32768", "131072"})
      std::cout << " " << context << " tokens " << human_bytes(kv[context].get<double>()) << ";";
    std::cout << "\n";
    if (!has_weights) {
      std::cout << "checkpoint: no weights next to the config (config only)\n";
    } else {
      std::cout << "checkpoint: " << report["checkpoint"]["files"] << " file(s), " << tc.tensors
                << " tensors, " << human_count(tc.checkpoint_params) << " parameters";
      if (tc.other_modality_params)
        std::cout << " (" << human_count(tc.other_modality_params) << " vision/audio)";
      std::cout << "\n  bytes by dtype:";
      for (const auto& [dtype, b] : tc.bytes_by_dtype)
        std::cout << " " << dtype << " " << human_bytes(b.first) << " (" << b.second << " tensors)";
      std::cout << "\n";
      for (const auto& n : tc.missing) std::cout << "  missing: " << n << "\n";
      for (const auto& n : tc.unexpected) std::cout << "  unexpected: " << n << "\n";
      for (const auto& n : tc.wrong_shape) std::cout << "  wrong shape: " << n << "\n";
      if (!tc.ignored.empty())
        std::cout << "  ignored as transformers does: " << tc.ignored.size() << " tensor(s)\n";
      std::cout << "  check: " << tc.missing.size() << " missing, " << tc.unexpected.size() << " unexpected, "
                << tc.wrong_shape.size() << " wrong shape" << (status ? "" : ": OK") << "\n";
    }
  }
  if (status) {
    std::cerr << "g4moe: error: checkpoint does not match its config: " << tc.missing.size() << " missing, "
              << tc.unexpected.size() << " unexpected, " << tc.wrong_shape.size() << " wrong shape (" << dir
              << ")\n";
  }
  return status;
}

}  // namespace

Action register_inspect(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("inspect",
                         "Show a checkpoint's resolved architecture, parameter counts and bytes by dtype, "
                         "and check its tensors against the config (exit 2 on any mismatch).");
  auto path = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  cmd->add_option("DIR", *path, "checkpoint directory (config.json + safetensors), or a config.json alone")
      ->required();
  cmd->add_flag("--json", *as_json, "print the report as JSON");
  return [path, as_json] { return run_inspect(*path, *as_json); };
}

}  // namespace g4::cli
