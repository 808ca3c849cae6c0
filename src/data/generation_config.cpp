#include "data/generation_config.h"

#include <filesystem>

#include "core/error.h"

namespace g4 {

namespace {

// eos_token_id: one id or a list of ids (each >= 0).
std::vector<std::int64_t> eos_ids(const Json& value, const std::string& where) {
  std::vector<std::int64_t> ids;
  if (value.is_null()) return ids;
  if (value.is_array()) {
    for (const Json& id : value) ids.push_back(json_int(id, "eos_token_id entry", where));
  } else {
    ids.push_back(json_int(value, "eos_token_id", where));
  }
  for (const std::int64_t id : ids) check(id >= 0, "eos_token_id ", id, " is negative (", where, ")");
  return ids;
}

template <class T, class Read>
void optional_field(const Json& doc, const char* key, std::optional<T>& out, Read read) {
  const auto it = doc.find(key);
  if (it != doc.end() && !it->is_null()) out = read(*it, key);
}

}  // namespace

GenerationDefaults parse_generation_config(const Json& doc, const std::string& where) {
  check(doc.is_object(), "a generation config must be a JSON object (", where, ")");
  GenerationDefaults d;
  if (const auto it = doc.find("eos_token_id"); it != doc.end()) d.eos_token_ids = eos_ids(*it, where);
  const auto number = [&](const Json& v, const char* key) { return json_number(v, key, where); };
  optional_field(doc, "do_sample", d.do_sample,
                 [&](const Json& v, const char* key) { return json_bool(v, key, where); });
  optional_field(doc, "temperature", d.temperature, number);
  optional_field(doc, "top_p", d.top_p, number);
  optional_field(doc, "min_p", d.min_p, number);
  optional_field(doc, "repetition_penalty", d.repetition_penalty, number);
  optional_field(doc, "top_k", d.top_k,
                 [&](const Json& v, const char* key) { return json_int(v, key, where); });
  return d;
}

GenerationDefaults read_generation_defaults(const std::string& model_dir) {
  namespace fs = std::filesystem;
  const fs::path generation = fs::path(model_dir) / "generation_config.json";
  if (fs::exists(generation))
    return parse_generation_config(read_json_file(generation.string()), generation.string());
  const fs::path config = fs::path(model_dir) / "config.json";
  const Json doc = read_json_file(config.string());
  GenerationDefaults d;
  if (!doc.is_object()) return d;  // the config reader reports it
  if (const auto it = doc.find("eos_token_id"); it != doc.end()) {
    d.eos_token_ids = eos_ids(*it, config.string());
  } else if (const auto text = doc.find("text_config"); text != doc.end() && text->is_object()) {
    if (const auto eos = text->find("eos_token_id"); eos != text->end())
      d.eos_token_ids = eos_ids(*eos, config.string());
  }
  return d;
}

}  // namespace g4
