// documents.h: one data source read into tokenised documents, before shuffling and packing
// (packed_dataset.h).
//
// A source is a JSONL file, a .txt file, or a directory (its *.txt files, sorted by name; not recursive).
// JSONL: one document per non-blank line, an object with "text", "input_ids", chat "messages", or "prompt"
// and "completion" (strings, tokenised one after the other). Text files: documents are separated by one or
// more blank (empty or whitespace-only) lines; a document's lines are joined with "\n" (a line's trailing
// "\r" dropped) and tokenised as text; an empty file gives no document.
//
// Invariants: a document is [BOS] + ids + [EOS], with counts[i] = 1 where token i is a target (the label of
// token i - 1); counts[0] is 0. Targets: all of a text or input_ids document and its EOS; the completion and
// the EOS of a prompt/completion line; the model turns after their header (not the EOS) of a chat. A document
// longer than seq_len is truncated (counted in `truncated`) or, without truncation, an error; truncation
// never cuts through an image (an error instead). Every id is below vocab_size. Images are read and sized
// when the document is (a missing or corrupt image is an error naming it, the file and the line). Errors name
// the file and the line a document starts at.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/packed_dataset.h"

namespace g4 {

struct Document {
  std::vector<std::int64_t> ids;
  std::vector<std::uint8_t> counts;
  std::vector<DocumentImage> images;  // in the order of their placeholders in ids
  bool has_target() const;            // some token after the first counts in the loss
};

struct DocumentSource {
  std::vector<Document> documents;
  std::int64_t truncated = 0;
};

DocumentSource read_documents(const std::string& path, const DatasetOptions& options);

}  // namespace g4
