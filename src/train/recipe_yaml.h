// recipe_yaml.h: YAML text of a recipe (a file, or the value of a key=value override) as JSON, within bounds.
//
// Invariant: the result has at most kMaxYamlNodes nodes and kMaxYamlDepth levels of nesting, and the file at
// most kMaxRecipeBytes bytes; beyond them, or for invalid YAML or UTF-8, a one-line g4::Error naming `where`.
// Anchors and aliases are expanded, so the node bound is what stops a "billion laughs" file (a few lines of
// nested aliases that expand to gigabytes). Scalars: quoted ones are strings; true/false, null/~, integers
// and numbers as such; anything else a string. A mapping key given twice is an error.
#pragma once

#include <cstdint>
#include <string>

#include "io/json.h"

namespace g4 {

inline constexpr std::int64_t kMaxRecipeBytes = 16 << 20;
inline constexpr std::int64_t kMaxYamlNodes = 100'000;  // a recipe has tens; a freeze list maybe hundreds
inline constexpr int kMaxYamlDepth = 64;

// The recipe file at `path` (null for an empty file).
Json read_yaml_file(const std::string& path);
// One YAML document held in `text`; `where` names it in errors.
Json parse_yaml_text(const std::string& text, const std::string& where);

}  // namespace g4
