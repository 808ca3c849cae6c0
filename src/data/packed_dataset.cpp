#include "data/packed_dataset.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>

#include "core/error.h"
#include "data/byte_tokenizer.h"
#include "io/json.h"

namespace g4 {

namespace {

std::vector<std::int64_t> parse_document(const std::string& line, const std::string& where,
                                         const DatasetOptions& o) {
  const Json doc = parse_json_strict(line, where);
  check(doc.is_object(), "a data line must be a JSON object with \"text\" or \"input_ids\" (", where, ")");
  std::vector<std::int64_t> ids{ByteTokenizer::bos_id};
  if (auto it = doc.find("text"); it != doc.end()) {
    check(it->is_string(), "\"text\" must be a string (", where, ")");
    const auto body = ByteTokenizer{}.encode(it->get<std::string>());
    ids.insert(ids.end(), body.begin(), body.end());
  } else if (auto jt = doc.find("input_ids"); jt != doc.end()) {
    check(jt->is_array(), "\"input_ids\" must be a list of integers (", where, ")");
    for (const Json& v : *jt) {
      check(v.is_number_integer(), "\"input_ids\" holds a non-integer ", v.dump(), " (", where, ")");
      const std::int64_t id = v.get<std::int64_t>();
      check(id >= 0 && id < o.vocab_size, "token id ", id, " is out of range for vocab_size ", o.vocab_size,
            " (", where, ")");
      ids.push_back(id);
    }
  } else {
    fail("a data line needs \"text\" or \"input_ids\" (", where, ")");
  }
  ids.push_back(ByteTokenizer::eos_id);
  return ids;
}

PackedRows pack(const std::vector<std::vector<std::int64_t>>& docs, std::int64_t L) {
  PackedRows rows;
  rows.seq_len = L;
  std::int64_t filled = 0;  // tokens in the current row
  auto pad_row = [&] {
    for (; filled > 0 && filled < L; ++filled) {
      rows.input_ids.push_back(ByteTokenizer::pad_id);
      rows.position_ids.push_back(rows.position_ids.back() + 1);
      rows.labels.push_back(-100);
    }
    filled = 0;
  };
  for (const auto& d : docs) {
    if (filled + static_cast<std::int64_t>(d.size()) > L) pad_row();  // documents are not split across rows
    for (std::size_t i = 0; i < d.size(); ++i) {
      rows.input_ids.push_back(d[i]);
      rows.position_ids.push_back(static_cast<std::int64_t>(i));
      rows.labels.push_back(i == 0 ? -100 : d[i]);
    }
    filled += static_cast<std::int64_t>(d.size());
    if (filled == L) filled = 0;
  }
  pad_row();
  return rows;
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
  }
  return b;
}

PackedDataset load_packed_dataset(const std::string& path, const DatasetOptions& o) {
  check(o.seq_len >= 2, "data.seq_len must be at least 2");
  std::ifstream in(path);
  check(in.good(), "cannot open data file ", path, ": ", std::strerror(errno));
  PackedDataset out;
  std::vector<std::vector<std::int64_t>> docs;
  std::string line;
  for (std::int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines are allowed
    auto ids = parse_document(line, path + ":" + std::to_string(number), o);
    if (static_cast<std::int64_t>(ids.size()) > o.seq_len) {
      check(o.truncate, "document at ", path, ":", number, " has ", ids.size(),
            " tokens, more than data.seq_len ", o.seq_len, " (set data.truncate=true to cut it)");
      ids.resize(static_cast<std::size_t>(o.seq_len));
      ++out.truncated;
    }
    docs.push_back(std::move(ids));
  }
  check(!docs.empty(), "no documents in ", path, " (empty dataset)");
  out.documents = static_cast<std::int64_t>(docs.size());
  std::mt19937_64 rng(o.seed);
  std::shuffle(docs.begin(), docs.end(), rng);
  const auto held_out = static_cast<std::size_t>(static_cast<double>(docs.size()) * o.eval_fraction);
  check(held_out < docs.size(), "data.eval_fraction leaves no training documents");
  const std::vector<std::vector<std::int64_t>> eval_docs(docs.end() - static_cast<std::ptrdiff_t>(held_out),
                                                         docs.end());
  docs.resize(docs.size() - held_out);
  out.train = pack(docs, o.seq_len);
  if (!eval_docs.empty()) out.eval = pack(eval_docs, o.seq_len);
  return out;
}

}  // namespace g4
