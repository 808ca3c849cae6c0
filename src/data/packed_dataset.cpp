#include "data/packed_dataset.h"

#include <algorithm>
#include <random>

#include "core/error.h"
#include "data/documents.h"

namespace g4 {

namespace {

// Documents are not split across rows. With images, each row keeps its documents' images in order and a
// 1 in mm_token_type at each placeholder.
PackedRows pack(const std::vector<Document>& docs, std::int64_t L, std::int64_t pad_id,
                std::int64_t placeholder) {
  PackedRows rows;
  rows.seq_len = L;
  const bool images =
      std::any_of(docs.begin(), docs.end(), [](const Document& d) { return !d.images.empty(); });
  std::int64_t filled = 0;  // tokens in the current row
  auto pad_row = [&] {
    for (; filled > 0 && filled < L; ++filled) {
      rows.input_ids.push_back(pad_id);
      rows.position_ids.push_back(rows.position_ids.back() + 1);
      rows.labels.push_back(-100);
      if (images) rows.mm_token_type.push_back(0);
    }
    filled = 0;
  };
  for (const Document& d : docs) {
    if (filled + static_cast<std::int64_t>(d.ids.size()) > L) pad_row();
    if (images && filled == 0) rows.row_images.emplace_back();
    for (std::size_t i = 0; i < d.ids.size(); ++i) {
      rows.input_ids.push_back(d.ids[i]);
      rows.position_ids.push_back(static_cast<std::int64_t>(i));
      rows.labels.push_back(i == 0 || !d.counts[i] ? -100 : d.ids[i]);
      if (images) rows.mm_token_type.push_back(d.ids[i] == placeholder ? 1 : 0);
    }
    if (images) rows.row_images.back().insert(rows.row_images.back().end(), d.images.begin(), d.images.end());
    filled += static_cast<std::int64_t>(d.ids.size());
    if (filled == L) filled = 0;
  }
  pad_row();
  return rows;
}

bool has_label(const PackedRows& rows) {
  return std::any_of(rows.labels.begin(), rows.labels.end(), [](std::int64_t l) { return l != -100; });
}

}  // namespace

Batch PackedRows::batch(std::int64_t first, std::int64_t count) const {
  Batch b;
  b.batch_size = count;
  b.seq_len = seq_len;
  b.explicit_position_ids = true;
  for (std::int64_t r = 0; r < count; ++r) {
    const std::int64_t row = (first + r) % rows();
    const auto at = [&](const std::vector<std::int64_t>& v) { return v.begin() + row * seq_len; };
    b.input_ids.insert(b.input_ids.end(), at(input_ids), at(input_ids) + seq_len);
    b.position_ids.insert(b.position_ids.end(), at(position_ids), at(position_ids) + seq_len);
    b.labels.insert(b.labels.end(), at(labels), at(labels) + seq_len);
    if (has_images()) {
      const auto mm = mm_token_type.begin() + row * seq_len;
      b.mm_token_type.insert(b.mm_token_type.end(), mm, mm + seq_len);
    }
  }
  return b;
}

std::vector<DocumentImage> PackedRows::images(std::int64_t first, std::int64_t count) const {
  std::vector<DocumentImage> out;
  if (!has_images()) return out;
  for (std::int64_t r = 0; r < count; ++r) {
    const auto& row = row_images[static_cast<std::size_t>((first + r) % rows())];
    out.insert(out.end(), row.begin(), row.end());
  }
  return out;
}

PackedDataset load_packed_dataset(const std::string& path, const DatasetOptions& o) {
  check(o.seq_len >= 2, "data.seq_len must be at least 2");
  PackedDataset out;
  DocumentSource train = read_documents(path, o);
  check(!train.documents.empty(), "no documents in ", path, " (empty dataset)");
  DocumentSource eval;
  if (!o.eval_path.empty()) {
    eval = read_documents(o.eval_path, o);
    check(!eval.documents.empty(), "no documents in eval data ", o.eval_path, " (empty dataset)");
  }
  out.documents = static_cast<std::int64_t>(train.documents.size() + eval.documents.size());
  out.truncated = train.truncated + eval.truncated;
  for (const DocumentSource* s : {&train, &eval})
    out.untrained_documents += std::count_if(s->documents.begin(), s->documents.end(),
                                             [](const Document& d) { return !d.has_target(); });

  std::vector<Document>& docs = train.documents;
  std::mt19937_64 rng(o.seed);
  std::shuffle(docs.begin(), docs.end(), rng);
  if (o.eval_path.empty()) {
    const auto held_out = static_cast<std::size_t>(static_cast<double>(docs.size()) * o.eval_fraction);
    check(held_out < docs.size(), "data.eval_fraction leaves no training documents");
    eval.documents.assign(docs.end() - static_cast<std::ptrdiff_t>(held_out), docs.end());
    docs.resize(docs.size() - held_out);
  }
  out.train = pack(docs, o.seq_len, o.tokenizer.pad, o.images.placeholder);
  check(has_label(out.train), "no token of ", path,
        " counts in the loss: every training document is without a target (a chat needs a model turn, a "
        "prompt line a non-empty completion; or truncation cut the targets)");
  if (!eval.documents.empty())
    out.eval = pack(eval.documents, o.seq_len, o.tokenizer.pad, o.images.placeholder);
  check(o.eval_path.empty() || has_label(out.eval), "no token of ", o.eval_path,
        " counts in the loss: every eval document is without a target");
  return out;
}

}  // namespace g4
