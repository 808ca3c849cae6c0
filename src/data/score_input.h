// score_input.h: the JSON input of `g4moe score`:
//   {"input_ids": [[...]], "attention_mask": [[...]], "position_ids": [[...]], "labels": [[...]]}
// All but input_ids are optional; labels default to input_ids; -100 in labels is ignored by the loss.
// Invariant: the returned Batch satisfies batch.h's invariants for `vocab_size`, else a g4::Error names the
// file, the field and the row/column.
#pragma once

#include <string>

#include "core/batch.h"
#include "io/json.h"

namespace g4 {

Batch parse_score_input(const Json& doc, std::int64_t vocab_size, const std::string& where);
Batch read_score_input(const std::string& path, std::int64_t vocab_size);

}  // namespace g4
