#include "train/recipe.h"

#include <cmath>
#include <functional>
#include <map>
#include <sstream>

#include "core/error.h"
#include "train/recipe_suggest.h"
#include "train/recipe_yaml.h"

namespace g4 {

namespace {

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
                   const double d = json_number(v, key, where);
                   check(std::isfinite(d), "\"", key, "\" must be a finite number, got ", d, " (", where,
                         ")");
                   r.*member = d;
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
            "JSONL file, one {\"text\": ...}, {\"input_ids\": [...]}, {\"messages\": [...]} or {\"prompt\": "
            "..., "
            "\"completion\": ...} per line (only the completion counts in the loss); or a .txt file, or a "
            "directory of .txt files, split into documents at blank lines"),
      field("data.eval_path", &Recipe::eval_data_path,
            "separate eval file (same formats); when set, all of data.path trains and data.eval_fraction is "
            "not used"),
      field("data.seq_len", &Recipe::seq_len, "tokens per packed row"),
      field("data.eval_fraction", &Recipe::eval_fraction,
            "share of documents held out for the eval loss, in [0, 1) (not used with data.eval_path)"),
      field("data.truncate", &Recipe::truncate, "cut documents longer than seq_len (false: error)"),
      field("data.seed", &Recipe::data_seed, "seed of the document shuffle"),
      field("train.steps", &Recipe::steps, "optimizer steps"),
      field("train.batch_size", &Recipe::batch_size, "rows per micro-batch"),
      field("train.grad_accumulation", &Recipe::grad_accumulation, "micro-batches per step"),
      field("train.lr", &Recipe::lr, "peak learning rate (> 0)"),
      field("train.schedule", &Recipe::schedule, "constant | cosine | linear (decay after warm-up)"),
      field("train.warmup_steps", &Recipe::warmup_steps, "linear warm-up steps (at most train.steps)"),
      field("train.warmup_ratio", &Recipe::warmup_ratio,
            "warm-up as a share of train.steps, in [0, 1), rounded up (instead of warmup_steps)"),
      field("train.min_lr_ratio", &Recipe::min_lr_ratio,
            "final lr / peak lr for cosine and linear, in [0, 1]"),
      field("train.weight_decay", &Recipe::weight_decay, "AdamW decoupled weight decay (>= 0)"),
      field("train.beta1", &Recipe::beta1, "AdamW beta1, in [0, 1)"),
      field("train.beta2", &Recipe::beta2, "AdamW beta2, in [0, 1)"),
      field("train.eps", &Recipe::eps, "AdamW epsilon (>= 0)"),
      field("train.max_grad_norm", &Recipe::max_grad_norm, "global gradient-norm clip (0: off)"),
      field("train.recompute", &Recipe::recompute,
            "recompute each layer's activations in the backward (less memory, one more forward)"),
      field("train.device", &Recipe::device,
            "cpu, or cuda: the whole model on one GPU (checkpoints resume on either device)"),
      field("train.dtype", &Recipe::dtype,
            "compute dtype: auto (f32 on cpu, bf16 on cuda), f32, or bf16 (cuda only: bf16 weights and "
            "activations, f32 master weights, gradients and AdamW state)"),
      field("train.freeze", &Recipe::freeze, "regexes of parameter names to freeze, e.g. [\"embed_tokens\"]"),
      field(
          "train.vision", &Recipe::vision,
          "a vision-language model: frozen (the vision tower and embed_vision stay as they are), projection "
          "(embed_vision's projection trains too), tower (the whole vision tower and the projection train)"),
      field("train.eval_every", &Recipe::eval_every, "steps between eval losses (0: never)"),
      field("train.log_every", &Recipe::log_every, "steps between metric lines (> 0)"),
      field("output.dir", &Recipe::output_dir, "run directory: metrics.jsonl, loss.png, checkpoint-*/"),
      field("output.save_every", &Recipe::save_every, "steps between checkpoints (0: at the end only)"),
      field("output.save_total_limit", &Recipe::save_total_limit,
            "checkpoints to keep, the newest (0: keep every one)"),
      field("output.overwrite", &Recipe::overwrite,
            "allow a new run into an output.dir that already holds a run's files"),
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

// Other names of keys, as HF Trainer and NeMo Automodel spell them.
struct Alias {
  const char* alias;
  const char* key;
};
constexpr Alias kAliases[] = {
    {"train.max_steps", "train.steps"},
    {"train.learning_rate", "train.lr"},
    {"train.gradient_accumulation_steps", "train.grad_accumulation"},
    {"train.gradient_checkpointing", "train.recompute"},
    {"train.per_device_train_batch_size", "train.batch_size"},
    {"train.eval_steps", "train.eval_every"},
    {"train.logging_steps", "train.log_every"},
    {"output.output_dir", "output.dir"},
    {"output.save_steps", "output.save_every"},
    {"device", "train.device"},
};

const Field* find_field(const std::string& key) {
  for (const Field& f : fields())
    if (key == f.key) return &f;
  return nullptr;
}

// The canonical key `spelled` names (itself unless it is an alias).
std::string canonical_key(const std::string& spelled) {
  for (const Alias& a : kAliases)
    if (spelled == a.alias) return a.key;
  return spelled;
}

bool is_section(const std::string& name) {
  for (const Field& f : fields())
    if (std::string(f.key).rfind(name + ".", 0) == 0) return true;
  return false;
}

[[noreturn]] void unknown_key(const std::string& key, const std::string& where) {
  std::vector<std::string> known;
  for (const Field& f : fields()) known.push_back(f.key);
  for (const Alias& a : kAliases) known.push_back(a.alias);
  for (const std::string& k : known)
    check(key.rfind(k + ".", 0) != 0, "unknown recipe key \"", key, "\": ", k, " is a value, not a section (",
          where, ")");
  const std::string guess = closest_key(key, known);
  fail("unknown recipe key \"", key, "\"", guess.empty() ? "" : " (did you mean \"" + guess + "\"?)", " (",
       where, "; see g4moe train --help)");
}

// A value given for a canonical key: how it was spelled and where.
struct Setting {
  std::string spelled;
  Json value;
  std::string where;
};
using Settings = std::map<std::string, Setting>;  // by canonical key

void add_setting(Settings& out, const std::string& spelled, const Json& value, const std::string& where) {
  const std::string key = canonical_key(spelled);
  if (!find_field(key)) unknown_key(spelled, where);
  check(!value.is_object(), "\"", spelled, "\" takes a value, not a mapping (", where, ")");
  if (auto it = out.find(key); it != out.end())
    fail("\"", it->second.spelled, "\" and \"", spelled, "\" both set ", key, "; give one (", where, ")");
  out[key] = Setting{spelled, value, where};
}

// The keys of one source: `doc` in sections ({"train": {"steps": 5}}) or dotted ({"train.steps": 5}).
Settings settings_of(const Json& doc, const std::string& where) {
  check(
      doc.is_object() || doc.is_null(),
      "a recipe must be a mapping of sections (model, data, train, output, sample, parallel), each a mapping "
      "of keys, got ",
      json_excerpt(doc), " (", where, ")");
  Settings out;
  if (doc.is_null()) return out;
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    const std::string& name = it.key();
    const Json& value = *it;
    if (is_section(name))
      check(value.is_object() || value.is_null(), "recipe section \"", name,
            "\" must be a mapping of keys (e.g. ", name, ".<key>: value), got ", json_excerpt(value), " (",
            where, ")");
    if (name.find('.') == std::string::npos && value.is_object()) {
      for (auto kv = value.begin(); kv != value.end(); ++kv)
        add_setting(out, name + "." + kv.key(), *kv, where);
    } else if (!(value.is_null() && is_section(name))) {  // an empty section is allowed
      add_setting(out, name, value, where);
    }
  }
  return out;
}

// Cross-key rules and ranges; `where_of(key)` names the source of a key's value.
void validate(Recipe& r, const std::function<std::string(const char*)>& where_of) {
  const auto range = [&](bool ok, const char* key, const char* rule, auto value) {
    check(ok, key, " must be ", rule, ", got ", value, " (", where_of(key), ")");
  };
  range(r.schedule == "constant" || r.schedule == "cosine" || r.schedule == "linear", "train.schedule",
        "constant, cosine or linear", r.schedule);
  range(r.steps > 0, "train.steps", "positive", r.steps);
  range(r.batch_size > 0, "train.batch_size", "positive", r.batch_size);
  range(r.grad_accumulation > 0, "train.grad_accumulation", "positive", r.grad_accumulation);
  range(r.log_every > 0, "train.log_every", "positive", r.log_every);
  range(r.lr > 0, "train.lr", "positive", r.lr);
  range(r.eval_fraction >= 0 && r.eval_fraction < 1, "data.eval_fraction", "in [0, 1)", r.eval_fraction);
  range(r.warmup_ratio >= 0 && r.warmup_ratio < 1, "train.warmup_ratio", "in [0, 1)", r.warmup_ratio);
  range(r.min_lr_ratio >= 0 && r.min_lr_ratio <= 1, "train.min_lr_ratio", "in [0, 1]", r.min_lr_ratio);
  range(r.weight_decay >= 0, "train.weight_decay", "at least 0", r.weight_decay);
  range(r.beta1 >= 0 && r.beta1 < 1, "train.beta1", "in [0, 1)", r.beta1);
  range(r.beta2 >= 0 && r.beta2 < 1, "train.beta2", "in [0, 1)", r.beta2);
  range(r.eps >= 0, "train.eps", "at least 0", r.eps);
  range(r.max_grad_norm >= 0, "train.max_grad_norm", "at least 0 (0: no clipping)", r.max_grad_norm);
  range(r.zero <= 1, "parallel.zero", "0 or 1", r.zero);
  range(r.device == "cpu" || r.device == "cuda", "train.device", "cpu or cuda", r.device);
  range(r.dtype == "auto" || r.dtype == "f32" || r.dtype == "bf16", "train.dtype", "auto, f32 or bf16",
        r.dtype);
  range(r.vision == "frozen" || r.vision == "projection" || r.vision == "tower", "train.vision",
        "frozen, projection or tower", r.vision);
  check(r.dtype != "bf16" || r.device == "cuda",
        "train.dtype bf16 needs train.device cuda (the CPU computes in f32; ", where_of("train.dtype"), ")");
  if (r.warmup_ratio > 0) {
    // warmup_steps may accompany the ratio only as its own result, so that to_json's output reads back.
    const auto from_ratio =
        static_cast<std::int64_t>(std::ceil(r.warmup_ratio * static_cast<double>(r.steps)));
    check(r.warmup_steps == 0 || r.warmup_steps == from_ratio, "train.warmup_steps (", r.warmup_steps,
          ") and train.warmup_ratio (", r.warmup_ratio, ") are both set; give one (",
          where_of("train.warmup_ratio"), ")");
    r.warmup_steps = from_ratio;
  }
  check(r.warmup_steps <= r.steps, "train.warmup_steps must be at most train.steps (", r.steps, "), got ",
        r.warmup_steps, " (", where_of("train.warmup_steps"), ")");
  check(!r.data_path.empty(), "the recipe needs data.path (", where_of("data.path"), ")");
}

Recipe recipe_from_settings(const Settings& settings, const std::string& where) {
  Recipe r;
  for (const auto& [key, s] : settings) find_field(key)->set(r, s.value, s.where);
  validate(r, [&](const char* key) {
    const auto it = settings.find(key);
    return it != settings.end() ? it->second.where : where;
  });
  return r;
}

// The command line's keys: overrides in order, a later one replacing an earlier one of the same spelling.
Settings override_settings(const std::vector<std::string>& overrides) {
  const std::string where = "command line";
  Settings out;
  for (const std::string& o : overrides) {
    const auto eq = o.find('=');
    check(eq != std::string::npos && eq > 0, "override \"", o,
          "\" must look like key=value (e.g. train.steps=50)");
    const std::string key = require_utf8(o.substr(0, eq), "override of a recipe key");
    Json one = Json::object();
    one[key] = parse_yaml_text(o.substr(eq + 1), "override " + key);
    for (auto& [canonical, s] : settings_of(one, where)) {
      if (auto it = out.find(canonical); it != out.end() && it->second.spelled != s.spelled)
        fail("\"", it->second.spelled, "\" and \"", s.spelled, "\" both set ", canonical, "; give one (",
             where, ")");
      out[canonical] = std::move(s);
    }
  }
  return out;
}

}  // namespace

Recipe recipe_from_json(const Json& doc, const std::string& where) {
  return recipe_from_settings(settings_of(doc, where), where);
}

Recipe load_recipe(const std::string& yaml_path, const std::vector<std::string>& overrides) {
  Settings settings;
  if (!yaml_path.empty()) settings = settings_of(read_yaml_file(yaml_path), yaml_path);
  for (auto& [key, s] : override_settings(overrides)) settings[key] = std::move(s);
  return recipe_from_settings(settings, yaml_path.empty() ? "command line" : yaml_path);
}

Json Recipe::to_json() const {
  Json out = Json::object();
  for (const Field& f : fields()) out[f.key] = f.get(*this);
  return out;
}

std::string recipe_keys_help() {
  std::ostringstream out;
  const Recipe defaults;
  for (const Field& f : fields()) {
    out << "  " << f.key << " = " << f.get(defaults).dump();
    const char* sep = "  (alias: ";
    for (const Alias& a : kAliases)
      if (std::string(a.key) == f.key) out << sep << a.alias, sep = ", ";
    if (std::string(sep) == ", ") out << ")";
    out << "\n      " << f.help << "\n";
  }
  return out.str();
}

std::vector<std::string> resume_conflicts(const Json& saved_recipe, const Recipe& current) {
  static const char* const kFixed[] = {
      "model.preset",           "model.path",         "model.seed",    "data.path", "data.eval_path",
      "data.seq_len",           "data.eval_fraction", "data.truncate", "data.seed", "train.batch_size",
      "train.grad_accumulation"};
  if (!saved_recipe.is_object()) return {"recipe"};
  const Json now = current.to_json();
  std::vector<std::string> out;
  for (const char* key : kFixed) {
    const auto it = saved_recipe.find(key);
    if (it != saved_recipe.end() && !(*it == now.at(key))) out.emplace_back(key);
  }
  return out;
}

}  // namespace g4
