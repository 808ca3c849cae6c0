// generation_config.h: the generation defaults a checkpoint directory carries, as transformers reads them:
// generation_config.json when present (eos_token_id, do_sample, temperature, top_k, top_p, min_p,
// repetition_penalty), else config.json's eos_token_id. Command-line options override them.
// Invariant: a field present with the wrong type or out of range is a g4::Error naming the file and the key;
// null and absent fields are left unset.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/json.h"

namespace g4 {

struct GenerationDefaults {
  std::vector<std::int64_t> eos_token_ids;
  std::optional<bool> do_sample;
  std::optional<double> temperature, top_p, min_p, repetition_penalty;
  std::optional<std::int64_t> top_k;
};

GenerationDefaults parse_generation_config(const Json& doc, const std::string& where);
GenerationDefaults read_generation_defaults(const std::string& model_dir);

}  // namespace g4
