// generation_input.h: the JSON input of `g4moe generate`: {"input_ids": [[...], ...]}, one prompt per row;
// rows may differ in length.
// Invariant: every returned prompt is non-empty and its ids lie in [0, vocab_size), else a g4::Error names
// the file, the row and the column.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/json.h"

namespace g4 {

std::vector<std::vector<std::int64_t>> parse_generation_input(const Json& doc, std::int64_t vocab_size,
                                                              const std::string& where);
std::vector<std::vector<std::int64_t>> read_generation_input(const std::string& path,
                                                             std::int64_t vocab_size);

}  // namespace g4
