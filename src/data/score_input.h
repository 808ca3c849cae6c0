// score_input.h: the JSON input of `g4moe score`:
//   {"input_ids": [[...]], "attention_mask": [[...]], "position_ids": [[...]], "labels": [[...]]}
// All but input_ids are optional; labels default to input_ids; -100 in labels is ignored by the loss.
// With images (vision-language models), as transformers' processor hands them to the model:
//   "mm_token_type_ids": [[...]] 1 on every image placeholder (<|image|>), 0 elsewhere, and
//   "images": [["a.jpg", ...], ...] per row, the image of each run of placeholders in order (paths relative
//   to the input file); parse_score_images reads them.
// Invariant: the returned Batch satisfies batch.h's invariants for `vocab_size`, else a g4::Error names the
// file, the field and the row/column.
#pragma once

#include <string>
#include <vector>

#include "core/batch.h"
#include "io/json.h"

namespace g4 {

Batch parse_score_input(const Json& doc, std::int64_t vocab_size, const std::string& where);
Batch read_score_input(const std::string& path, std::int64_t vocab_size);
// Fills batch.mm_token_type from "mm_token_type_ids" and returns the image paths of every row, in placeholder
// order (empty without images); the row counts are checked against the runs of placeholders.
std::vector<std::string> parse_score_images(const Json& doc, Batch& batch, const std::string& where,
                                            const std::string& base_dir);

}  // namespace g4
