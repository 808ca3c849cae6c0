#include "train/recipe.h"

#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <sstream>

#include "core/error.h"

namespace g4 {

namespace {

// Keys and strings must be valid UTF-8: the recipe is echoed into config and metrics files as JSON.
Json yaml_to_json(const YAML::Node& node, const std::string& where) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      Json out = Json::object();
      for (const auto& kv : node)
        out[require_utf8(kv.first.as<std::string>(), where)] = yaml_to_json(kv.second, where);
      return out;
    }
    case YAML::NodeType::Sequence: {
      Json out = Json::array();
      for (const auto& v : node) out.push_back(yaml_to_json(v, where));
      return out;
    }
    case YAML::NodeType::Scalar: {
      const std::string s = require_utf8(node.Scalar(), where);
      if (node.Tag() == "!") return s;  // quoted: a string
      if (s == "true" || s == "false") return s == "true";
      if (s == "null" || s == "~") return nullptr;
      try {
        std::size_t used = 0;
        const long long i = std::stoll(s, &used);
        if (used == s.size()) return i;
      } catch (const std::exception&) {
      }
      try {
        std::size_t used = 0;
        const double d = std::stod(s, &used);
        if (used == s.size()) return d;
      } catch (const std::exception&) {
      }
      return s;
    }
    default:
      return nullptr;
  }
}

struct Field {
  const char* key;
  const char* help;
  std::function<void(Recipe&, const Json&, const std::string&)> set;
  std::function<Json(const Recipe&)> get;
};

template <class T>
Field field(const char* key, T Recipe::*member, const char* help) {
  return Field{key, help,
               [member, key](Recipe& r, const Json& v, const std::string& where) {
                 if constexpr (std::is_same_v<T, std::string>) {
                   r.*member = json_string(v, key, where);
                 } else if constexpr (std::is_same_v<T, bool>) {
                   r.*member = json_bool(v, key, where);
                 } else if constexpr (std::is_same_v<T, double>) {
                   r.*member = json_number(v, key, where);
                 } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
                   check(v.is_array(), "\"", key, "\" must be a list of strings (", where, ")");
                   (r.*member).clear();
                   for (const Json& s : v) (r.*member).push_back(json_string(s, key, where));
                 } else {
                   const std::int64_t i = json_int(v, key, where);
                   check(i >= 0, "\"", key, "\" must not be negative (", where, ")");
                   r.*member = static_cast<T>(i);
                 }
               },
               [member](const Recipe& r) { return Json(r.*member); }};
}

const std::vector<Field>& fields() {
  static const std::vector<Field> f = {
      field("model.preset", &Recipe::model_preset, "built-in model to train from scratch (tiny-moe)"),
      field("model.path", &Recipe::model_path, "HF checkpoint directory to fine-tune instead of a preset"),
      field("model.seed", &Recipe::model_seed, "seed of the preset's random initialisation"),
      field("data.path", &Recipe::data_path,
            "JSONL file, one {\"text\": ...}, {\"input_ids\": [...]} or {\"messages\": [...]} per line"),
      field("data.seq_len", &Recipe::seq_len, "tokens per packed row"),
      field("data.eval_fraction", &Recipe::eval_fraction, "share of documents held out for the eval loss"),
      field("data.truncate", &Recipe::truncate, "cut documents longer than seq_len (false: error)"),
      field("data.seed", &Recipe::data_seed, "seed of the document shuffle"),
      field("train.steps", &Recipe::steps, "optimizer steps"),
      field("train.batch_size", &Recipe::batch_size, "rows per micro-batch"),
      field("train.grad_accumulation", &Recipe::grad_accumulation, "micro-batches per step"),
      field("train.lr", &Recipe::lr, "peak learning rate"),
      field("train.schedule", &Recipe::schedule, "constant | cosine | linear (decay after warm-up)"),
      field("train.warmup_steps", &Recipe::warmup_steps, "linear warm-up steps"),
      field("train.min_lr_ratio", &Recipe::min_lr_ratio, "final lr / peak lr for cosine and linear"),
      field("train.weight_decay", &Recipe::weight_decay, "AdamW decoupled weight decay"),
      field("train.beta1", &Recipe::beta1, "AdamW beta1"),
      field("train.beta2", &Recipe::beta2, "AdamW beta2"),
      field("train.eps", &Recipe::eps, "AdamW epsilon"),
      field("train.max_grad_norm", &Recipe::max_grad_norm, "global gradient-norm clip (0: off)"),
      field("train.recompute", &Recipe::recompute,
            "recompute each layer's activations in the backward (less memory, one more forward)"),
      field("train.freeze", &Recipe::freeze, "regexes of parameter names to freeze, e.g. [\"embed_tokens\"]"),
      field("train.eval_every", &Recipe::eval_every, "steps between eval losses (0: never)"),
      field("train.log_every", &Recipe::log_every, "steps between metric lines"),
      field("output.dir", &Recipe::output_dir, "run directory: metrics.jsonl, loss.png, checkpoint-*/"),
      field("output.save_every", &Recipe::save_every, "steps between checkpoints (0: at the end only)"),
      field("sample.prompt", &Recipe::sample_prompt, "text to continue greedily at the end"),
      field("sample.tokens", &Recipe::sample_tokens, "tokens to generate (0: no sample)"),
      field("parallel.ep", &Recipe::ep,
            "expert-parallel size under mpirun (divides the experts and the ranks; ranks / ep data-parallel "
            "replicas split each micro-batch's rows)"),
      field("parallel.dispatcher", &Recipe::dispatcher,
            "how tokens reach other ranks' experts: alltoall | allgather"),
      field("parallel.zero", &Recipe::zero,
            "ZeRO stage: 0, or 1 to shard the AdamW moments over the data-parallel replicas (gradients "
            "reduce-scattered, updated parameters all-gathered)"),
  };
  return f;
}

// Flattens {"a": {"b": 1}} to {"a.b": 1}.
void flatten(const Json& node, const std::string& prefix, std::map<std::string, Json>& out) {
  if (node.is_object() && !(prefix.empty() && node.empty())) {
    for (auto it = node.begin(); it != node.end(); ++it)
      flatten(*it, prefix.empty() ? it.key() : prefix + "." + it.key(), out);
  } else if (!prefix.empty()) {
    out[prefix] = node;
  }
}

}  // namespace

Recipe recipe_from_json(const Json& doc, const std::string& where) {
  check(doc.is_object() || doc.is_null(), "a recipe must be a mapping of sections (", where, ")");
  std::map<std::string, Json> flat;
  if (doc.is_object()) flatten(doc, "", flat);
  Recipe r;
  for (const auto& [key, value] : flat) {
    const Field* f = nullptr;
    for (const Field& candidate : fields())
      if (key == candidate.key) f = &candidate;
    check(f != nullptr, "unknown recipe key \"", key, "\" (", where, "; see g4moe train --help)");
    f->set(r, value, where);
  }
  check(r.schedule == "constant" || r.schedule == "cosine" || r.schedule == "linear", "train.schedule \"",
        r.schedule, "\" must be constant, cosine or linear (", where, ")");
  check(r.batch_size > 0 && r.grad_accumulation > 0 && r.steps > 0,
        "train.steps, train.batch_size and "
        "train.grad_accumulation must be positive (",
        where, ")");
  check(r.lr > 0 && r.eval_fraction >= 0 && r.eval_fraction < 1,
        "train.lr must be positive and data.eval_fraction "
        "in [0, 1) (",
        where, ")");
  check(!r.data_path.empty(), "the recipe needs data.path (", where, ")");
  check(r.zero <= 1, "parallel.zero must be 0 or 1, got ", r.zero, " (", where, ")");
  return r;
}

Recipe load_recipe(const std::string& yaml_path, const std::vector<std::string>& overrides) {
  Json doc = Json::object();
  if (!yaml_path.empty()) {
    try {
      doc = yaml_to_json(YAML::LoadFile(yaml_path), yaml_path);
    } catch (const YAML::Exception& e) {
      fail("invalid YAML (", yaml_path, "): ", e.what());
    }
    if (doc.is_null()) doc = Json::object();
  }
  for (const std::string& o : overrides) {
    const auto eq = o.find('=');
    check(eq != std::string::npos && eq > 0, "override \"", o,
          "\" must look like key=value (e.g. train.steps=50)");
    const std::string key = require_utf8(o.substr(0, eq), "override of a recipe key");
    Json value;
    try {
      value = yaml_to_json(YAML::Load(o.substr(eq + 1)), "override " + key);
    } catch (const YAML::Exception& e) {
      fail("invalid value in override \"", o, "\": ", e.what());
    }
    Json* node = &doc;
    std::stringstream path(key);
    std::string part;
    std::vector<std::string> parts;
    while (std::getline(path, part, '.')) parts.push_back(part);
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
      if (!(*node)[parts[i]].is_object()) (*node)[parts[i]] = Json::object();
      node = &(*node)[parts[i]];
    }
    (*node)[parts.back()] = value;
  }
  return recipe_from_json(doc, yaml_path.empty() ? "command line" : yaml_path);
}

Json Recipe::to_json() const {
  Json out = Json::object();
  for (const Field& f : fields()) out[f.key] = f.get(*this);
  return out;
}

std::string recipe_keys_help() {
  std::ostringstream out;
  const Recipe defaults;
  for (const Field& f : fields())
    out << "  " << f.key << " = " << f.get(defaults).dump() << "\n      " << f.help << "\n";
  return out.str();
}

}  // namespace g4
