#include "data/score_input.h"

#include <filesystem>

#include "core/checked_math.h"
#include "core/error.h"
#include "core/host_memory.h"

namespace g4 {

namespace {

// Reads a rectangular [B, S] integer matrix; `expect` gives the shape when already known (B or S of 0: any).
std::vector<std::int64_t> read_matrix(const Json& value, const char* field, const std::string& where,
                                      std::int64_t& B, std::int64_t& S) {
  check(value.is_array() && !value.empty(), "\"", field, "\" must be a non-empty list of rows (", where, ")");
  if (B == 0) B = static_cast<std::int64_t>(value.size());
  check(static_cast<std::int64_t>(value.size()) == B, "\"", field, "\" has ", value.size(),
        " rows, input_ids has ", B, " (", where, ")");
  std::vector<std::int64_t> out;
  for (std::size_t r = 0; r < value.size(); ++r) {
    const Json& row = value[r];
    check(row.is_array(), "\"", field, "\" row ", r, " is not a list (", where, ")");
    if (S == 0) S = static_cast<std::int64_t>(row.size());
    check(S > 0, "\"", field, "\" row ", r, " is empty (", where, ")");
    check(static_cast<std::int64_t>(row.size()) == S, "\"", field, "\" row ", r, " has ", row.size(),
          " entries, expected ", S, " (ragged rows) (", where, ")");
    for (std::size_t c = 0; c < row.size(); ++c) {
      check(row[c].is_number_integer(), "\"", field, "\"[", r, "][", c,
            "] is not an integer: ", json_excerpt(row[c]), " (", where, ")");
      out.push_back(row[c].get<std::int64_t>());
    }
  }
  return out;
}

}  // namespace

Batch parse_score_input(const Json& doc, std::int64_t vocab_size, const std::string& where) {
  check(doc.is_object(), "input must be a JSON object with \"input_ids\" (", where, ")");
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    const std::string& k = it.key();
    check(k == "input_ids" || k == "attention_mask" || k == "position_ids" || k == "labels" ||
              k == "mm_token_type_ids" || k == "images",
          "unknown field \"", k,
          "\" (expected input_ids, attention_mask, position_ids, labels, mm_token_type_ids, images) (", where,
          ")");
  }
  Batch b;
  b.input_ids =
      read_matrix(json_require(doc, "input_ids", where), "input_ids", where, b.batch_size, b.seq_len);
  // The model holds F32 logits [B, S, vocab_size] for the input: refuse an input whose logits cannot fit in
  // this machine's memory with a clear error, rather than a bad_alloc or the OOM killer later.
  const std::int64_t tokens = checked_mul(b.batch_size, b.seq_len, "input_ids (", where, ")");
  const std::uint64_t logit_bytes =
      checked_nbytes(checked_mul(tokens, vocab_size, "logits of input_ids (", where, ")"), sizeof(float),
                     "logits of input_ids (", where, ")");
  const std::uint64_t memory = physical_memory_bytes();
  check(memory == 0 || logit_bytes <= memory, "input_ids has ", b.batch_size, " x ", b.seq_len,
        " tokens, whose F32 logits (vocab_size ", vocab_size, ") need ", logit_bytes,
        " bytes, more than this machine's memory (", memory, " bytes) (", where, ")");
  for (std::int64_t i = 0; i < b.tokens(); ++i) {
    const std::int64_t id = b.input_ids[i];
    check(id >= 0 && id < vocab_size, "token id ", id, " at input_ids[", i / b.seq_len, "][", i % b.seq_len,
          "] is out of range for vocab_size ", vocab_size, " (", where, ")");
  }
  if (auto it = doc.find("labels"); it != doc.end() && !it->is_null()) {
    b.labels = read_matrix(*it, "labels", where, b.batch_size, b.seq_len);
    for (std::int64_t i = 0; i < b.tokens(); ++i) {
      const std::int64_t id = b.labels[i];
      check(id == -100 || (id >= 0 && id < vocab_size), "label ", id, " at labels[", i / b.seq_len, "][",
            i % b.seq_len, "] is neither -100 nor in [0, ", vocab_size, ") (", where, ")");
    }
  } else {
    b.labels = b.input_ids;
  }
  if (auto it = doc.find("attention_mask"); it != doc.end() && !it->is_null()) {
    const auto mask = read_matrix(*it, "attention_mask", where, b.batch_size, b.seq_len);
    for (std::int64_t i = 0; i < b.tokens(); ++i)
      check(mask[i] == 0 || mask[i] == 1, "attention_mask[", i / b.seq_len, "][", i % b.seq_len,
            "] must be 0 or 1, got ", mask[i], " (", where, ")");
    b.attention_mask.assign(mask.begin(), mask.end());
  }
  if (auto it = doc.find("position_ids"); it != doc.end() && !it->is_null()) {
    b.position_ids = read_matrix(*it, "position_ids", where, b.batch_size, b.seq_len);
    b.explicit_position_ids = true;
    for (std::int64_t i = 0; i < b.tokens(); ++i)
      check(b.position_ids[i] >= 0, "position_ids[", i / b.seq_len, "][", i % b.seq_len, "] is negative (",
            where, ")");
  } else {
    b.position_ids.resize(b.tokens());
    for (std::int64_t i = 0; i < b.tokens(); ++i) b.position_ids[i] = i % b.seq_len;
  }
  return b;
}

std::vector<std::string> parse_score_images(const Json& doc, Batch& b, const std::string& where,
                                            const std::string& base_dir) {
  const auto images = doc.find("images");
  const auto types = doc.find("mm_token_type_ids");
  const bool has_images = images != doc.end() && !images->is_null();
  const bool has_types = types != doc.end() && !types->is_null();
  if (!has_images && !has_types) return {};
  check(has_images && has_types, "\"images\" and \"mm_token_type_ids\" go together (", where, ")");
  std::int64_t rows = 0, cols = 0;
  const auto mm = read_matrix(*types, "mm_token_type_ids", where, rows, cols);
  check(rows == b.batch_size && cols == b.seq_len, "mm_token_type_ids is ", rows, " x ", cols, ", input_ids ",
        b.batch_size, " x ", b.seq_len, " (", where, ")");
  for (std::int64_t i = 0; i < b.tokens(); ++i)
    check(mm[i] == 0 || mm[i] == 1, "mm_token_type_ids[", i / b.seq_len, "][", i % b.seq_len,
          "] must be 0 or 1 (images; video and audio are not read), got ", mm[i], " (", where, ")");
  b.mm_token_type.assign(mm.begin(), mm.end());
  check(images->is_array() && static_cast<std::int64_t>(images->size()) == b.batch_size,
        "\"images\" must hold one list of image paths per row of input_ids (", where, ")");
  std::vector<std::string> paths;
  for (std::int64_t r = 0; r < b.batch_size; ++r) {
    const Json& row = (*images)[static_cast<std::size_t>(r)];
    check(row.is_array(), "images[", r, "] must be a list of image paths (", where, ")");
    std::int64_t runs = 0;
    for (std::int64_t t = 0; t < b.seq_len; ++t)
      runs += mm[r * b.seq_len + t] && (t == 0 || !mm[r * b.seq_len + t - 1]);
    check(static_cast<std::int64_t>(row.size()) == runs, "images[", r, "] has ", row.size(),
          " images but mm_token_type_ids marks ", runs, " image runs in that row (", where, ")");
    for (const Json& p : row) {
      check(p.is_string() && !p.get<std::string>().empty(), "images[", r, "] holds a non-path ",
            json_excerpt(p), " (", where, ")");
      paths.push_back((std::filesystem::path(base_dir) / p.get<std::string>()).string());
    }
  }
  return paths;
}

Batch read_score_input(const std::string& path, std::int64_t vocab_size) {
  return parse_score_input(read_json_file(path), vocab_size, path);
}

}  // namespace g4
