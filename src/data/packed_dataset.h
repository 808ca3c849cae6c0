// packed_dataset.h: training data (documents.h: JSONL lines of "text", "input_ids", chat "messages" or
// "prompt"/"completion"; .txt files or a directory of them, split at blank lines), tokenised and packed into
// fixed-length rows.
//
// Chat "messages" are [{"role": "user" | "system" | "model" | "assistant", "content": "..."}] in Gemma 4's
// template: <|turn>{role}\n{content}<turn|>\n per message, "assistant" written as "model"; only model turns
// count in the loss. A content may be a list of parts, {"type": "text", "text": "..."} and {"type": "image",
// "path": "..."} (vision-language models: each image becomes its tokens, ImageTokens below, in place). A
// prompt/completion line is the prompt then the completion, and only the completion (and the EOS) counts
// (TRL's completion-only loss). Text goes through the run's tokenizer (tokenizer.h). A document becomes [BOS]
// + ids + [EOS]. Documents are shuffled with the seed, split into train and eval sets (eval_fraction of the
// documents, or, when eval_path is set, all of `path` trains and eval_path's documents are the eval set), and
// packed greedily into rows of `seq_len` tokens; position ids restart at 0 at each document start (so
// attention stays inside a document, as transformers does for packed sequences), and the label of each
// document's first token is -100 (nothing before it should predict it). A document longer than seq_len is
// truncated or rejected, by option. Errors name the file and the line.
//
// Invariant: the train rows hold at least one label that is not -100 (else an error naming the file: nothing
// would be trained); so do the eval rows when they come from eval_path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/batch.h"
#include "data/image_processor.h"
#include "data/tokenizer.h"

namespace g4 {

// Images in chat messages (vision-language models): an image part becomes `begin`, one `placeholder` per soft
// token of the image as the processor sizes it, and `end`; none of these counts in the loss.
struct ImageTokens {
  std::int64_t begin = -1, placeholder = -1, end = -1;  // -1: the model takes no images
  ImageProcessorConfig processor;
};

struct DatasetOptions {
  std::int64_t seq_len = 128;
  std::int64_t vocab_size = 0;  // ids must be below it
  double eval_fraction = 0.0;   // share of documents held out for the eval loss
  bool truncate = true;         // else a document longer than seq_len is an error
  std::uint64_t seed = 0;
  Tokenizer tokenizer = byte_level_tokenizer();
  std::string eval_path;  // a separate eval source (same formats); when set, eval_fraction is not used
  ImageTokens images;
};

// One image of a document: the file (paths in the data are relative to the data file) and its soft tokens.
struct DocumentImage {
  std::string path;
  std::int64_t soft_tokens = 0;
};

struct PackedRows {
  std::int64_t seq_len = 0;
  std::vector<std::int64_t> input_ids, position_ids, labels;  // [rows, seq_len]
  // With images: 1 at every image placeholder [rows, seq_len], and each row's images in placeholder order.
  std::vector<std::uint8_t> mm_token_type;
  std::vector<std::vector<DocumentImage>> row_images;
  std::int64_t rows() const { return seq_len ? static_cast<std::int64_t>(input_ids.size()) / seq_len : 0; }
  bool has_images() const { return !mm_token_type.empty(); }
  // Rows [first, first + count) (wrapping around) as a Batch with packed position ids and no attention mask
  // (mm_token_type filled when the data has images).
  Batch batch(std::int64_t first, std::int64_t count) const;
  // The images of those rows, in the order of the batch's placeholders.
  std::vector<DocumentImage> images(std::int64_t first, std::int64_t count) const;
};

struct PackedDataset {
  PackedRows train, eval;
  std::int64_t documents = 0, truncated = 0;  // over train and eval
  std::int64_t untrained_documents = 0;       // documents none of whose tokens count in the loss
};

// `path`: the training data (a JSONL file, a .txt file, or a directory of .txt files).
PackedDataset load_packed_dataset(const std::string& path, const DatasetOptions& options);

}  // namespace g4
