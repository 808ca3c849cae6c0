#include "data/generation_input.h"

#include "core/error.h"

namespace g4 {

std::vector<std::vector<std::int64_t>> parse_generation_input(const Json& doc, std::int64_t vocab_size,
                                                              const std::string& where) {
  check(doc.is_object(), "input must be a JSON object {\"input_ids\": [[...], ...]} (", where, ")");
  for (auto it = doc.begin(); it != doc.end(); ++it)
    check(it.key() == "input_ids", "unknown field \"", it.key(), "\" (expected input_ids) (", where, ")");
  const Json& rows = json_require(doc, "input_ids", where);
  check(rows.is_array() && !rows.empty(), "\"input_ids\" must be a non-empty list of rows (", where, ")");
  std::vector<std::vector<std::int64_t>> prompts;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const Json& row = rows[r];
    check(row.is_array() && !row.empty(), "\"input_ids\" row ", r, " must be a non-empty list of token ids (",
          where, ")");
    std::vector<std::int64_t>& prompt = prompts.emplace_back();
    for (std::size_t c = 0; c < row.size(); ++c) {
      check(row[c].is_number_integer(), "\"input_ids\"[", r, "][", c,
            "] is not an integer: ", json_excerpt(row[c]), " (", where, ")");
      const std::int64_t id = row[c].get<std::int64_t>();
      check(id >= 0 && id < vocab_size, "token id ", id, " at input_ids[", r, "][", c,
            "] is out of range for vocab_size ", vocab_size, " (", where, ")");
      prompt.push_back(id);
    }
  }
  return prompts;
}

std::vector<std::vector<std::int64_t>> read_generation_input(const std::string& path,
                                                             std::int64_t vocab_size) {
  return parse_generation_input(read_json_file(path), vocab_size, path);
}

}  // namespace g4
